"""Shared pieces of the absl command-line scripts: size parsing and the exit-2 boundary."""
import json
import re
import sys

from absl import app


def parse_size(text, flag="input_size"):
    """'HxW' (or a single 'S' for square) -> (height, width); ValueError names the flag."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text or ""))
    if not m:
        raise ValueError(f"--{flag}={text!r} is not a size; write it as HEIGHTxWIDTH, e.g. 224x224.")
    h = int(m.group(1))
    w = int(m.group(2) or h)
    if h < 1 or w < 1:
        raise ValueError(f"--{flag}={text!r} must be positive.")
    return h, w


def print_json(obj):
    """Print one JSON object (numpy scalars made plain)."""
    print(json.dumps(obj, indent=1, sort_keys=True, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def user_errors():
    """Exception classes that are the user's fault: printed as one sentence, exit code 2."""
    from kerasnets.errors import ModelConfigError  # noqa: F401 (ValueError subclass)
    return (ValueError, FileNotFoundError, AssertionError)


def run_main(main, positional=False):
    """``app.run`` around ``main``, turning user errors into one sentence and exit code 2.

    Positional arguments are refused unless ``positional`` (e.g. the files of kerasnets-bench).
    """
    def guarded(argv):
        if len(argv) > 1 and not positional:
            print(f"error: unexpected argument {argv[1]!r}; every option is a --flag.", file=sys.stderr)
            return 2
        try:
            return main(argv)
        except user_errors() as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        app.run(guarded)
    except SystemExit as e:
        # absl exits 1 on an unknown or malformed flag; the scripts promise 2.
        if e.code == 1:
            sys.exit(2)
        raise
