"""`kerasnets-estimate --model=NAME --input_size=HxW --profile=P [--precision=int8|float32] [--threads=N] [--json]`

Predicts how fast a zoo model runs on a hardware profile, layer by layer, with the reason
for each layer's cost and where it runs (the partitioner's ``max_npu`` placement unless
``--policy`` says otherwise). ``--chart=FILE.png`` draws the per-layer cost.

`kerasnets-estimate --calibrate [--threads=N] [--quick] [--networks=16] [--profile_out=PATH] [--samples=PATH]
[--validate]`
micro-benchmarks kernels and random networks in LiteRT on this machine (about 10 minutes;
``--samples`` keeps the timings to refit from later), fits the ``host_cpu`` profile and
writes it (default: $KERASNETS_PROFILE_DIR/host_cpu.json, else
~/.config/kerasnets/profiles/host_cpu.json; the profile loader searches both before the
shipped profiles); ``--validate`` adds the validation report.
"""
import json
import os
import sys

from absl import flags

from export import calibrate, cost, placement
from export.cli import zoo_model
from export.profiles import USER_PROFILE_DIR, load_profile
from export.report import plot_estimate
from kerasnets.cli import define_flags, print_json, run_main
from kerasnets.errors import UsageError
from kerasnets.io import atomic_write

FLAGS = flags.FLAGS
define_flags("model", "input_size", "profile", "threads", "policy", "classes", "shuffle", "group_conv", "json")
flags.DEFINE_string("precision", None, "int8 or float32; int8 on NPU profiles, float32 on the CPU by default.")
flags.DEFINE_integer("top", 0, "Show only the N most expensive layers (0 = all).", lower_bound=0)
flags.DEFINE_string("chart", None, "Write a PNG chart of per-layer cost to this path.")
flags.DEFINE_bool("calibrate", False, "Fit the host_cpu profile from LiteRT micro-benchmarks on this machine.")
flags.DEFINE_bool("quick", False, "With --calibrate: a third of the kernels and networks (a few minutes).")
flags.DEFINE_bool("validate", False, "With --calibrate: also run the validation report over the zoo.")
flags.DEFINE_string("profile_out", None, "With --calibrate: where to write the fitted host_cpu profile.")
flags.DEFINE_integer("networks", 16, "With --calibrate: how many random networks to time whole and to draw kernels "
                     "from (about 40 s each on 2 cores).", lower_bound=3)
flags.DEFINE_string("samples", None, "With --calibrate: read the timings from this file if it exists (refit without "
                    "measuring again), else measure and save them there.")


# Flags that only mean something with --calibrate, and flags that only mean something without it.
CALIBRATE_FLAGS = ("quick", "validate", "profile_out", "networks", "samples")
ESTIMATE_FLAGS = ("model", "profile", "precision", "top", "chart", "policy", "input_size", "shuffle", "group_conv",
                  "classes")
# A chart is a small PNG; refuse a disk with less free than this.
CHART_BYTES = 4 << 20


def _check_flag_combination():
    """Refuse flags the chosen step ignores: silently ignoring them would hide a mistake."""
    if FLAGS.calibrate:
        given = [f for f in ESTIMATE_FLAGS if FLAGS[f].present]
        if given:
            raise UsageError(f"--{given[0]} does not apply with --calibrate, which fits the host_cpu profile; drop "
                             f"--{given[0]} or --calibrate.")
    else:
        given = [f for f in CALIBRATE_FLAGS if FLAGS[f].present]
        if given:
            raise UsageError(f"--{given[0]} only applies with --calibrate; add --calibrate or drop --{given[0]}.")


def _check_threads(profile):
    if not profile.is_npu and profile["threads"] != FLAGS.threads:
        raise UsageError(f"profile {profile.name} was fitted with {profile['threads']} thread(s), not --threads="
                         f"{FLAGS.threads}; recalibrate with --calibrate --threads={FLAGS.threads} or drop --threads.")


def _calibrate():
    out = FLAGS.profile_out or os.path.join(os.environ.get("KERASNETS_PROFILE_DIR") or USER_PROFILE_DIR,
                                            "host_cpu.json")
    zoo_model.check_output_file(out, "profile_out", "FILE.json")
    zoo_model.check_space(out, 16 << 20, "profile_out")
    if FLAGS.samples:
        if os.path.isdir(FLAGS.samples):
            raise UsageError(f"--samples={FLAGS.samples!r} is a folder; pass a timings file (read when it exists, "
                             "written after measuring otherwise).")
        if not os.path.exists(FLAGS.samples):
            zoo_model.check_output_file(FLAGS.samples, "samples", "FILE.json")
    log = (lambda s: print(s, file=sys.stderr)) if not FLAGS.json else None
    if FLAGS.samples and os.path.exists(FLAGS.samples):
        samples, overhead, networks = calibrate.load_timings(FLAGS.samples, threads=FLAGS.threads)
    else:
        samples, overhead, networks = calibrate.run_microbenchmarks(threads=FLAGS.threads, quick=FLAGS.quick,
                                                                  networks=FLAGS.networks, log=log)
        if FLAGS.samples:
            zoo_model.writing(FLAGS.samples, lambda: calibrate.save_timings(FLAGS.samples, samples, overhead,
                                                                            networks, threads=FLAGS.threads))
    data = calibrate.fit_host_profile(samples, overhead, threads=FLAGS.threads, networks=networks)
    zoo_model.writing(out, lambda: atomic_write(out, json.dumps(data, indent=1) + "\n"))
    result = {"profile_out": out, "samples": len(samples), "fit": data["fit"]}
    if FLAGS.validate:
        report = calibrate.validate_host_profile(out, threads=FLAGS.threads, log=log)
        result["validation"] = {k: report[k] for k in ("summary", "worst", "method")}
        if not FLAGS.json:
            print(calibrate.format_validation(report))
    if FLAGS.json:
        print_json(result)
    else:
        print(f"host_cpu profile fitted on {len(samples)} kernel samples, written to {out}")
        for key, v in sorted(data["fit"].items()):
            print(f"  {key:24s} {v['samples']:3d} samples, mean |error| {v['mean_abs_pct_error']:.1f}%")
    return 0


def main(argv):
    _check_flag_combination()
    if FLAGS.calibrate:
        return _calibrate()
    if FLAGS.precision is not None:
        zoo_model.check_choice(FLAGS.precision, sorted(cost.ELEMENT_BYTES), "precision")
    policy = zoo_model.check_choice(FLAGS.policy or "max_npu", placement.POLICIES, "policy")
    overrides = zoo_model.model_overrides(FLAGS.shuffle, FLAGS.group_conv)
    profile = load_profile(FLAGS.profile)
    _check_threads(profile)
    precision = FLAGS.precision or profile.default_precision()
    if not profile.is_npu and precision not in profile["predictors"]:
        raise UsageError(f"--precision={precision} does not fit profile {profile.name}, which has predictors for "
                         f"{', '.join(sorted(profile['predictors']))} only; pick one of those or recalibrate.")
    if FLAGS.chart is not None:
        zoo_model.check_output_file(FLAGS.chart, "chart", "FILE.png")
        zoo_model.check_space(FLAGS.chart, CHART_BYTES, "chart")
    model, (h, w) = zoo_model.build_model(FLAGS.model, FLAGS.input_size, FLAGS.classes, overrides)
    result = cost.estimate(model, profile, precision=precision, policy=policy)
    if FLAGS.chart:
        zoo_model.writing(FLAGS.chart, lambda: plot_estimate(result, FLAGS.chart))
    if FLAGS.json:
        t = result["totals"]
        print_json({"model": FLAGS.model, "input_size": [h, w], "profile": profile.name, "precision": precision,
                    "policy": policy, "latency_ms": t["latency_ms"], "fps": t["fps"],
                    "mac_utilization": t["mac_utilization"], "totals": t, "layers": result["layers"]})
    else:
        print(cost.format_table(result, top=FLAGS.top or None))
    return 0


def run():
    run_main(main)


if __name__ == "__main__":
    run()
