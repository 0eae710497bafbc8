"""absl command-line scripts: kerasnets-train, kerasnets-quantize and kerasnets-run (thin wrappers)."""
import json
import sys

from kerasnets.cli import user_errors
from kerasnets.io import plain

__all__ = ["emit", "fail", "user_errors"]


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def emit(summary, as_json):
    if as_json:
        print(json.dumps(summary, sort_keys=True, default=plain))
