"""Validation report of the host-CPU cost model: estimate vs LiteRT measurement, same run.

    .venv/bin/python benchmarks/validate_host_cpu.py [--profile=host_cpu] [--threads=1]
        [--resolutions=96,128] [--precisions=int8,float32] [--models=a,b,...] [--repeats=1]
        [--out=runs/host_cpu_validation.json]

For one model per zoo family (or --models=all / a list) at two resolutions, in int8 and float32, converts the model
with export.tflite.convert, loads every case, times them all in interleaved rounds in LiteRT (10th percentile of
the medians of 10-invoke windows, the same measurement the host-CPU fit uses) and compares with export.cost's
estimate on the host_cpu profile: share within +-10%, mean absolute % error, Spearman rank correlation, the worst
five with the kinds that dominate their predicted time. Prints a markdown table; writes the full report as JSON.
The default run (11 models x 2 sizes x 2 precisions) takes about 4-5 minutes on 2 cores.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("profile", "host_cpu", "CPU profile to validate.")
flags.DEFINE_integer("threads", 1, "LiteRT threads.")
flags.DEFINE_list("resolutions", ["96", "128"], "Square input sizes.")
flags.DEFINE_list("precisions", ["int8", "float32"], "Precisions.")
DEFAULT_MODELS = ["mobilenet_v2_035", "mobilenet_v2_100", "axspine_middle", "shufflenet_v1_g3_x1_0",
                  "shufflenet_v2_x1_0", "ghostnet_100", "repghostnet_100", "efficientnet_edgetpu_s",
                  "mobilenet_v3_large_100", "mobilenet_v3_small_100", "regnetx_002"]
flags.DEFINE_list("models", DEFAULT_MODELS, "Models; 'all' for every zoo model (about 20 minutes on 2 cores).")
flags.DEFINE_integer("repeats", 1, "Time the same loaded models this many times; passes after the first show how "
                     "far the measurement itself moves within the run.", lower_bound=1)
flags.DEFINE_string("out", "runs/host_cpu_validation.json", "Where to write the JSON report.")


def main(argv):
    from export import calibrate
    from kerasnets.io import atomic_write
    models = None if FLAGS.models == ["all"] else FLAGS.models
    try:
        resolutions = [int(r) for r in FLAGS.resolutions]
    except ValueError:
        raise ValueError(f"--resolutions={','.join(FLAGS.resolutions)} is not a list of pixel sizes; "
                         f"pass whole numbers such as --resolutions=96,128.") from None
    report = calibrate.validate_host_profile(FLAGS.profile, models=models, resolutions=resolutions,
                                             precisions=FLAGS.precisions, threads=FLAGS.threads, repeats=FLAGS.repeats,
                                             log=lambda s: print(s, file=sys.stderr, flush=True))
    atomic_write(FLAGS.out, json.dumps(report, indent=1) + "\n")
    print(calibrate.format_validation(report))
    print()
    print("| model | input | precision | predicted ms | measured ms | error |")
    print("|---|---|---|---|---|---|")
    for r in report["rows"]:
        print(f"| {r['model']} | {r['input']} | {r['precision']} | {r['predicted_ms']:.2f} | {r['measured_ms']:.2f} "
              f"| {r['error_pct']:+.1f}% |")
    return 0


if __name__ == "__main__":
    from kerasnets.cli import run_main  # one-sentence errors, exit 2
    run_main(main)
