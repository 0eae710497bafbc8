"""`kerasnets-bench FILE... [--runs=N] [--warmup=N] [--threads=N] [--json]`

Times TFLite files in LiteRT: warm-up, then N invokes per file; median, p90, model size and
op counts. With several files the invokes are interleaved (A, B, A, B, ...) so their ratios
come from one fair run.
"""
import os
import sys

from absl import flags

from kerasnets.export import runtime
from kerasnets.cli import define_flags, print_json, run_main
from kerasnets.errors import PathError, UsageError, path_error

FLAGS = flags.FLAGS
define_flags("runs", "threads", "json")
flags.DEFINE_integer("warmup", 5, "Untimed invokes before timing.", lower_bound=0)


# An ArtifactError longer than this carries a library's own text (LiteRT's); cut its detail.
_MAX_MESSAGE = 300


def check_files(files):
    """Refuse (PathError / UsageError) a file list LiteRT cannot read, before loading any of them."""
    if not files:
        raise UsageError("no TFLite file given; run kerasnets-bench FILE.tflite [FILE2.tflite ...].")
    seen = set()
    for f in files:
        if not f:
            raise UsageError("an empty file name was given; pass TFLite file paths.")
        if f.startswith("-"):
            raise UsageError(f"{f!r} is not a file; flags go before the files as --name=value.")
        if os.path.isdir(f):
            raise PathError(f"cannot read {f!r}: it is a folder; pass a .tflite file.")
        if not os.path.exists(f):
            raise PathError(f"cannot read {f!r}: it does not exist; check the path.")
        try:
            with open(f, "rb"):
                pass
        except OSError as e:
            raise path_error(f, e, "read") from None
        key = os.path.realpath(f)
        if key in seen:
            raise UsageError(f"{f!r} is given twice; list each file once (its runs are interleaved anyway).")
        seen.add(key)


def _short(message):
    if len(message) <= _MAX_MESSAGE:
        return message
    head, _, _ = message.partition(" (")
    return f"{head}; the file is corrupted or uses ops LiteRT cannot run, re-export it."


def main(argv):
    files = list(argv[1:])
    check_files(files)
    try:
        results = runtime.compare({f: f for f in files}, runs=FLAGS.runs, warmup=FLAGS.warmup,
                                  threads=FLAGS.threads)
    except runtime.ArtifactError as e:
        raise runtime.ArtifactError(_short(str(e))) from None
    base = results[files[0]]["median_ms"]
    for r in results.values():
        r["ratio_to_first"] = r["median_ms"] / base
    method = (f"LiteRT, {FLAGS.threads} thread(s), {FLAGS.warmup} warm-up + {FLAGS.runs} timed invokes "
              "per model, interleaved")
    if FLAGS.json:
        print_json({"method": method, "models": list(results.values())})
        return 0
    print(f"{'model':40s} {'median ms':>10s} {'p90 ms':>9s} {'ratio':>6s} {'size KB':>9s} {'ops':>5s}")
    for f, r in results.items():
        print(f"{f[-40:]:40s} {r['median_ms']:10.3f} {r['p90_ms']:9.3f} {r['ratio_to_first']:6.2f} "
              f"{r['size_bytes'] / 1024:9.1f} {r['ops']:5d}")
    print(f"method: {method}", file=sys.stderr)
    return 0


def run():
    run_main(main, positional=True)


if __name__ == "__main__":
    run()
