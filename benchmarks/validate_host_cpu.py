"""Validation report of the host-CPU cost model: estimate vs LiteRT measurement, same run.

    .venv/bin/python benchmarks/validate_host_cpu.py [--profile=host_cpu] [--threads=1]
        [--resolutions=96,128] [--precisions=int8,float32] [--models=a,b,...] [--repeats=2]
        [--out=runs/host_cpu_validation.json]

For one model per zoo family (or --models=all / a list) at two resolutions, in int8 and float32, and the anchor
(mobilenet_v2_100 at 224x224, added when the list lacks it), converts each model with export.tflite.convert,
loads every case, times them all in interleaved rounds in LiteRT (10th percentile of the medians of 10-invoke
windows, the same measurement the host-CPU fit uses) and compares with export.cost's estimate on the profile:
(a) predicted / measured latency relative to the anchor of the same precision (target: 90% of cases within
+-10%, each precision), (b) Spearman rank correlation (target: 0.97), (c) the absolute error and, with
--repeats >= 2, how far the same models measure in the later passes (the measurement's own spread), and the
worst five. Prints a markdown table; writes the full report as JSON (export.calibrate.validate_host_profile).
The default run (11 models x 2 sizes x 2 precisions + the anchor, 2 passes) takes about 5-6 minutes on 2 cores.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("profile", "host_cpu", "CPU profile to validate; host_cpu means the one kerasnets-estimate uses "
                    "on this machine (a full fit shipped for this CPU or a cached quick calibration when host_cpu "
                    "was fitted elsewhere).")
flags.DEFINE_integer("threads", 1, "LiteRT threads.")
flags.DEFINE_list("resolutions", ["96", "128"], "Square input sizes.")
flags.DEFINE_list("precisions", ["int8", "float32"], "Precisions.")
flags.DEFINE_list("models", None, "Models (default: one per family, export.calibrate.VALIDATION_MODELS); 'all' for "
                  "every zoo model (about 20 minutes on 2 cores).")
flags.DEFINE_integer("repeats", 2, "Time the same loaded models this many times; passes after the first show how "
                     "far the measurement itself moves within the run.", lower_bound=1)
flags.DEFINE_list("probe_mib", [], "Parameter-cache probe sizes (MiB) to time with the cases, e.g. "
                  "2,4,6,8,10,12,14,16,20,24,32,48 (about 2.5 minutes more): the report then also scores the estimate "
                  "with the curve they measure in this run. Default: none.")
flags.DEFINE_string("out", "runs/host_cpu_validation.json", "Where to write the JSON report.")


def main(argv):
    from kerasnets.export import calibrate, hostfit
    import kerasnets
    from kerasnets.errors import UsageError
    from kerasnets.io import atomic_write
    models = kerasnets.list_models() if FLAGS.models == ["all"] else FLAGS.models
    try:
        resolutions = [int(r) for r in FLAGS.resolutions]
    except ValueError:
        raise UsageError(f"--resolutions={','.join(FLAGS.resolutions)} is not a list of pixel sizes; "
                         f"pass whole numbers such as --resolutions=96,128.") from None
    try:
        probe_mib = [int(m) for m in FLAGS.probe_mib]
    except ValueError:
        raise UsageError(f"--probe_mib={','.join(FLAGS.probe_mib)} is not a list of sizes in MiB; pass whole "
                         f"numbers such as --probe_mib=2,4,8,16,32.") from None
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    # host_cpu by name is this machine's host profile, the one kerasnets-run and kerasnets-estimate use here.
    profile = hostfit.profile_for_here(FLAGS.profile, threads=FLAGS.threads, log=lambda m: say(f"host_cpu: {m}"))
    report = calibrate.validate_host_profile(profile.profile, models=models, resolutions=resolutions,
                                             precisions=FLAGS.precisions, threads=FLAGS.threads, repeats=FLAGS.repeats,
                                             probe_mib=probe_mib,
                                             log=say)
    atomic_write(FLAGS.out, json.dumps(report, indent=1) + "\n")
    print(calibrate.format_validation(report))
    print()
    print("| model | input | precision | predicted ms | measured ms | error | relative to the anchor: error |")
    print("|---|---|---|---|---|---|---|")
    for r in report["anchor"]["rows"]:
        print(f"| {r['model']} (anchor) | {r['input']} | {r['precision']} | {r['predicted_ms']:.2f} | "
              f"{r['measured_ms']:.2f} | {r['error_pct']:+.1f}% | - |")
    for r in report["rows"]:
        print(f"| {r['model']} | {r['input']} | {r['precision']} | {r['predicted_ms']:.2f} | {r['measured_ms']:.2f} "
              f"| {r['error_pct']:+.1f}% | {r['relative_error_pct']:+.1f}% |")
    return 0


if __name__ == "__main__":
    from kerasnets.cli import run_main  # one-sentence errors, exit 2
    run_main(main)
