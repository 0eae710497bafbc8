"""`kerasnets-estimate --model=NAME --input_size=HxW --profile=P [--precision=int8|float32] [--threads=N] [--json]`

Predicts how fast a zoo model runs on a hardware profile, layer by layer, with the reason
for each layer's cost and where it runs (the partitioner's ``max_npu`` placement unless
``--policy`` says otherwise). ``--chart=FILE.png`` draws the per-layer cost.

`kerasnets-estimate --calibrate[=full|quick] [--threads=N] [--networks=16] [--profile_out=PATH] [--samples=PATH]
[--validate]`
fits the ``host_cpu`` profile to this machine and writes it (default:
$KERASNETS_PROFILE_DIR/host_cpu.json, else ~/.config/kerasnets/profiles/host_cpu.json; the
profile loader searches both before the shipped profiles). ``--calibrate`` (= ``full``)
micro-benchmarks kernels, random networks and the parameter-cache probe in LiteRT (about 16
minutes on 2 cores; ``--samples`` keeps the timings to refit from later); ``--calibrate=quick``
(alias: ``--calibrate --quick``) times a small fixed set of kernels, four random networks and the
parameter-cache probe (about two and a half minutes) and rescales the shipped predictors per kernel
kind (:mod:`kerasnets.export.hostfit`).

`kerasnets-estimate --validate [--profile=host_cpu] [--validate_models=a,b,...] [--repeats=2] [--threads=N]`
(also after ``--calibrate``, on the profile it wrote) times zoo models together with the anchor
(mobilenet_v2_100 at 224x224, added when the list lacks it) in one run and reports the error
relative to the anchor, the rank correlation, the absolute error and the measurement's spread.
"""
import json
import os
import sys

from absl import flags

from kerasnets.export import calibrate, cost, hostfit, placement
from kerasnets.export.cli import zoo_model
from kerasnets.export.profiles import USER_PROFILE_DIR
from kerasnets.export.report import plot_estimate
from kerasnets.cli import define_flags, model_flags, print_json, run_main
from kerasnets.errors import UsageError
from kerasnets.io import atomic_write

FLAGS = flags.FLAGS
define_flags("model", "spec", "input_size", "profile", "threads", "policy", "classes", "shuffle", "group_conv", "json")
flags.DEFINE_string("precision", None, "int8 or float32; int8 on NPU profiles, float32 on the CPU by default.")
flags.DEFINE_integer("top", 0, "Show only the N most expensive layers (0 = all).", lower_bound=0)
flags.DEFINE_string("chart", None, "Write a PNG chart of per-layer cost to this path.")


class _CalibrationParser(flags.ArgumentParser):
    """``--calibrate`` alone (or ``=full``) is the full fit, ``--calibrate=quick`` the quick one."""

    def parse(self, argument):
        if argument is None or isinstance(argument, bool):
            return "full" if argument else None
        value = str(argument).strip().lower()
        if value in ("true", "1", "full"):
            return "full"
        if value == "quick":
            return "quick"
        if value in ("false", "0", "none", ""):
            return None
        raise ValueError(f"--calibrate={argument} is not full or quick; write --calibrate (the full fit) or "
                         "--calibrate=quick")

    def flag_type(self):
        return "string"


flags.DEFINE_flag(flags.Flag(
    _CalibrationParser(), flags.ArgumentSerializer(), "calibrate", None,
    "Fit the host_cpu profile to this machine: --calibrate (= full: LiteRT micro-benchmarks, about 16 minutes) or "
    "--calibrate=quick (rescale the shipped predictors from a few kernels, networks and the parameter-cache probe, "
    "about two and a half minutes).",
    boolean=True))
flags.DEFINE_bool("quick", False, "With --calibrate: the same as --calibrate=quick.")
flags.DEFINE_bool("validate", False, "Time zoo models and the anchor (mobilenet_v2_100 at 224x224) in LiteRT and "
                  "report the estimate's error relative to the anchor, its rank correlation, its absolute error and "
                  "the measurement's spread; validates --profile (default host_cpu), or the profile --calibrate "
                  "wrote.")
flags.DEFINE_list("validate_models", None, "With --validate: the zoo models (default: one per family, "
                  "kerasnets.export.calibrate.VALIDATION_MODELS); the anchor is added when missing.")
flags.DEFINE_integer("repeats", 2, "With --validate: timing passes over the same loaded models (the later ones "
                     "show the measurement's spread within the run).", lower_bound=1)
flags.DEFINE_string("profile_out", None, "With --calibrate: where to write the fitted host_cpu profile.")
flags.DEFINE_integer("networks", 16, "With --calibrate=full: how many random networks to time whole and to draw "
                     "kernels from (about 40 s each on 2 cores).", lower_bound=3)
flags.DEFINE_string("samples", None, "With --calibrate=full: read the timings from this file if it exists (refit "
                    "without measuring again), else measure and save them there.")


# Flags that only mean something with --calibrate (the full fit), with --validate, and without either.
CALIBRATE_FLAGS = ("quick", "profile_out", "networks", "samples")
FULL_FLAGS = ("networks", "samples")
VALIDATE_FLAGS = ("validate_models", "repeats")
ESTIMATE_FLAGS = ("model", "profile", "precision", "top", "chart", "policy", "input_size", "shuffle", "group_conv",
                  "classes")
# A chart is a small PNG; refuse a disk with less free than this.
CHART_BYTES = 4 << 20


def _calibration():
    """The calibration the flags ask for: None, 'full' or 'quick' (--quick is --calibrate=quick)."""
    if FLAGS.calibrate and FLAGS.quick:
        return "quick"
    return FLAGS.calibrate


def _check_flag_combination():
    """Refuse flags the chosen step ignores: silently ignoring them would hide a mistake."""
    mode = _calibration()
    if mode or FLAGS.validate:
        step = "--calibrate" if mode else "--validate"
        allowed = ("profile",) if not mode else ()
        given = [f for f in ESTIMATE_FLAGS if FLAGS[f].present and f not in allowed]
        if given:
            raise UsageError(f"--{given[0]} does not apply with {step}, which "
                             f"{'fits' if mode else 'validates'} the host_cpu profile; drop --{given[0]} or "
                             f"{step}.")
    if not mode:
        given = [f for f in CALIBRATE_FLAGS if FLAGS[f].present]
        if given:
            raise UsageError(f"--{given[0]} only applies with --calibrate; add --calibrate or drop --{given[0]}.")
    elif mode == "quick":
        given = [f for f in FULL_FLAGS if FLAGS[f].present]
        if given:
            raise UsageError(f"--{given[0]} applies to the full fit only, not --calibrate=quick; drop --{given[0]} "
                             "or use --calibrate.")
    if not FLAGS.validate:
        given = [f for f in VALIDATE_FLAGS if FLAGS[f].present]
        if given:
            raise UsageError(f"--{given[0]} only applies with --validate; add --validate or drop --{given[0]}.")


def _check_threads(profile):
    if not profile.is_npu and profile.threads != FLAGS.threads:
        raise UsageError(f"profile {profile.name} was fitted with {profile.threads} thread(s), not --threads="
                         f"{FLAGS.threads}; recalibrate with --calibrate=quick --threads={FLAGS.threads} (about 2.5 "
                         "minutes) or drop --threads.")


def _log():
    return (lambda m: print(m, file=sys.stderr, flush=True)) if not FLAGS.json else None


def _calibrate():
    out = FLAGS.profile_out or os.path.join(os.environ.get("KERASNETS_PROFILE_DIR") or USER_PROFILE_DIR,
                                            "host_cpu.json")
    zoo_model.check_output_file(out, "profile_out", "FILE.json")
    zoo_model.check_space(out, 16 << 20, "profile_out")
    log = _log()
    if _calibration() == "quick":
        data = hostfit.quick_calibrate(threads=FLAGS.threads, log=log)
        zoo_model.writing(out, lambda: atomic_write(out, json.dumps(data, indent=1) + "\n"))
        result = {"profile_out": out, "calibration": "quick", "measured_on": data["measured_on"],
                  "seconds": data["calibration"]["seconds"], "scales": data["calibration"]["scales"],
                  "context_scale": data["calibration"]["context_scale"], "fit": data["fit"],
                  "networks": data["context_fit"], "param_cache_curve": data.get("context_param_cache_curve", {})}
        if not FLAGS.json:
            c = data["calibration"]
            print(f"host_cpu profile quick-calibrated in {c['seconds']} s ({c['kernels']} kernels, {c['networks']} "
                  f"networks, {data['measured_on']['processor']}, {FLAGS.threads} thread(s), LiteRT "
                  f"{data['measured_on']['litert']}), written to {out}")
            for key, v in sorted(data["fit"].items()):
                f = v["scale"]
                source = "" if f["source"] == key.split("/")[0] else f" (from the {f['source']} predictor)"
                print(f"  {key:30s} {v['samples']:2d} kernels, per MAC x{f['mac']:.3g}, fixed x{f['fixed']:.3g}, "
                      f"other terms x{f['rest']:.3g}{source}; mean |error| {v['before_mean_abs_pct_error']:.1f}% -> "
                      f"{v['mean_abs_pct_error']:.1f}%")
            _print_curves(data.get("context_param_cache_curve", {}))
            for n in data["context_fit"]:
                print(f"  network {n['network']} {n['input'][0]}x{n['input'][1]} {n['precision']:8s} measured "
                      f"{n['measured_ms']:.3f} ms, shipped profile {n['shipped_predicted_ms']:.3f} ms, quick "
                      f"calibration {n['fitted_ms']:.3f} ms")
    else:
        if FLAGS.samples:
            if os.path.isdir(FLAGS.samples):
                raise UsageError(f"--samples={FLAGS.samples!r} is a folder; pass a timings file (read when it "
                                 "exists, written after measuring otherwise).")
            if not os.path.exists(FLAGS.samples):
                zoo_model.check_output_file(FLAGS.samples, "samples", "FILE.json")
        if FLAGS.samples and os.path.exists(FLAGS.samples):
            samples, overhead, networks = calibrate.load_timings(FLAGS.samples, threads=FLAGS.threads)
        else:
            samples, overhead, networks = calibrate.run_microbenchmarks(threads=FLAGS.threads,
                                                                      networks=FLAGS.networks, log=log)
            if FLAGS.samples:
                zoo_model.writing(FLAGS.samples, lambda: calibrate.save_timings(FLAGS.samples, samples, overhead,
                                                                                networks, threads=FLAGS.threads))
        data = calibrate.fit_host_profile(samples, overhead, threads=FLAGS.threads, networks=networks)
        zoo_model.writing(out, lambda: atomic_write(out, json.dumps(data, indent=1) + "\n"))
        kernel_samples = sum(s.get("kind") != calibrate.PARAM_CACHE_PROBE_KIND for s in samples)
        curves = data.get("context_param_cache_curve", {})
        result = {"profile_out": out, "calibration": "full", "samples": kernel_samples, "fit": data["fit"],
                  "param_cache_curve": curves}
        if not FLAGS.json:
            print(f"host_cpu profile fitted on {kernel_samples} kernel samples, written to {out}")
            for key, v in sorted(data["fit"].items()):
                print(f"  {key:24s} {v['samples']:3d} samples, mean |error| {v['mean_abs_pct_error']:.1f}%")
            _print_curves(curves)
    if FLAGS.validate:
        result["validation"] = _validate(out)
    if FLAGS.json:
        print_json(result)
    return 0


def _print_curves(curves):
    """The measured parameter-cache curve of each precision, one line each."""
    for p, curve in sorted(curves.items()):
        print(f"  parameter cache {p:8s} {curve[0][0] / 2**20:.0f} MiB fit; over it " + ", ".join(
            f"+{t * 1e3:.2f} ms at {b / 2**20:.0f} MiB" for b, t in curve[1:]))


def _profile(name):
    """``--profile`` as a HostProfile: ``host_cpu`` by name is this machine's (hostfit.profile_for_here)."""
    return hostfit.profile_for_here(name, threads=FLAGS.threads)


def _say_choice(host):
    """Which host profile file was chosen and why, on stderr: only once every input passed its checks, so a bad
    command prints one line."""
    for m in host.messages:
        print(f"host_cpu: {m}", file=sys.stderr, flush=True)


def _validate(profile_name):
    """Run the validation report on ``profile_name`` (a CPU profile); print it unless --json; return its JSON part."""
    host = _profile(profile_name)  # measured with --threads; a mismatch is warned below
    profile = host.profile
    if profile.is_npu:
        raise UsageError(f"--validate measures the host CPU; profile {profile.name} is an NPU profile, pass a CPU "
                         "profile such as --profile=host_cpu.")
    _say_choice(host)
    log = _log()
    diffs = hostfit.profile_mismatches(profile, hostfit.identity(FLAGS.threads))
    if diffs and log and host.source == "as named":  # host_cpu by name has said so already
        log(f"warning: {hostfit.describe_mismatches(profile, diffs)}; the absolute error shows it, "
            "--calibrate=quick fits the profile to this machine.")
    models = FLAGS.validate_models or list(calibrate.VALIDATION_MODELS)
    report = calibrate.validate_host_profile(profile.path or profile_name, models=models, threads=FLAGS.threads,
                                             repeats=FLAGS.repeats, log=log)
    if not FLAGS.json:
        print(calibrate.format_validation(report))
    return {k: report[k] for k in ("summary", "worst", "method", "anchor", "fitted_on", "measured_here", "rows")}


def main(argv):
    _check_flag_combination()
    if _calibration():
        return _calibrate()
    if FLAGS.validate:
        result = _validate(FLAGS.profile if FLAGS["profile"].present else "host_cpu")
        if FLAGS.json:
            print_json({"validation": result})
        return 0
    if FLAGS.precision is not None:
        zoo_model.check_choice(FLAGS.precision, sorted(cost.ELEMENT_BYTES), "precision")
    policy = zoo_model.check_choice(FLAGS.policy or "max_npu", placement.POLICIES, "policy")
    overrides = zoo_model.model_overrides(FLAGS.shuffle, FLAGS.group_conv)
    host = _profile(FLAGS.profile)
    profile = host.profile
    _check_threads(profile)
    precision = FLAGS.precision or profile.default_precision()
    if not profile.is_npu and precision not in profile.predictors:
        raise UsageError(f"--precision={precision} does not fit profile {profile.name}, which has predictors for "
                         f"{', '.join(sorted(profile.predictors))} only; pick one of those or recalibrate.")
    if FLAGS.chart is not None:
        zoo_model.check_output_file(FLAGS.chart, "chart", "FILE.png")
        zoo_model.check_space(FLAGS.chart, CHART_BYTES, "chart")
    name, spec = model_flags()
    model, (h, w) = zoo_model.build_model(name, FLAGS.input_size, FLAGS.classes, overrides, spec=spec)
    _say_choice(host)
    result = cost.estimate(model, profile, precision=precision, policy=policy)
    if FLAGS.chart:
        zoo_model.writing(FLAGS.chart, lambda: plot_estimate(result, FLAGS.chart))
    if FLAGS.json:
        t = result["totals"]
        print_json({"model": model.name, "input_size": [h, w], "profile": profile.name, "precision": precision,
                    "profile_file": profile.path, "profile_source": host.source, "profile_notes": host.messages,
                    "policy": policy, "latency_ms": t["latency_ms"], "fps": t["fps"],
                    "mac_utilization": t["mac_utilization"], "totals": t,
                    "layers": [r.as_dict() for r in result["layers"]]})
    else:
        print(cost.format_table(result, top=FLAGS.top or None))
    return 0


def run():
    run_main(main)


if __name__ == "__main__":
    run()
