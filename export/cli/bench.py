"""`kerasnets-bench FILE... [--runs=N] [--warmup=N] [--threads=N] [--json]`

Times TFLite files in LiteRT: warm-up, then N invokes per file; median, p90, model size and
op counts. With several files the invokes are interleaved (A, B, A, B, ...) so their ratios
come from one fair run.
"""
import sys

from absl import flags

from export import runtime
from kerasnets.cli import define_flags, print_json, run_main
from kerasnets.errors import UsageError

FLAGS = flags.FLAGS
define_flags("runs", "threads", "json")
flags.DEFINE_integer("warmup", 5, "Untimed invokes before timing.", lower_bound=0)


def main(argv):
    files = list(argv[1:])
    if not files:
        raise UsageError("no TFLite file given; run kerasnets-bench FILE.tflite [FILE2.tflite ...].")
    try:
        results = runtime.compare({f: f for f in files}, runs=FLAGS.runs, warmup=FLAGS.warmup,
                                  threads=FLAGS.threads)
    except runtime.ArtifactError as e:
        raise UsageError(str(e)) from None
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
