"""What the "torch" convention costs after int8 export, against the "tf" convention (prints a table).

    .venv/bin/python benchmarks/convention_benchmark.py                      # 224x224, 50 runs
    .venv/bin/python benchmarks/convention_benchmark.py --input_size=160 --runs=30 \
        --models=mobilenet_v2_100,shufflenet_v1_g3_x1_0

For each model, both conventions are built with the same (randomized-BN) weights, deployed
(BN folded, RepGhost fused) and converted to full-int8 TFLite with ``kerasnets.export.tflite.convert``
(random calibration images). Printed per model and convention: PAD ops and all ops of the
TFLite graph, the host latency in LiteRT (``kerasnets.export.runtime.compare``: both artifacts
interleaved in one run, median of ``--runs``) and the torch/tf ratio, and the estimator's
latency (``kerasnets.export.cost.estimate``, default placement) on every hardware profile.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

flags.DEFINE_list("models", ["mobilenet_v2_100", "shufflenet_v2_x1_0", "shufflenet_v1_g3_x1_0",
                             "efficientnet_edgetpu_s", "repghostnet_100"], "Registry models to compare.")
flags.DEFINE_integer("input_size", 224, "Square input size (pixels).")
flags.DEFINE_integer("runs", 50, "Interleaved timed runs per artifact (after 5 warm-up runs).")
flags.DEFINE_integer("threads", 1, "LiteRT threads.")
flags.DEFINE_integer("calibration", 8, "Random calibration images for int8 conversion.")
flags.DEFINE_list("profiles", ["edgetpu_usb", "edgetpu_devboard", "m55h", "gyrfalcon", "host_cpu"],
                  "Hardware profiles for the estimator.")
flags.DEFINE_bool("json", False, "Print one JSON object instead of the table.")
FLAGS = flags.FLAGS

CONVENTIONS = ("tf", "torch")


def compare_conventions(name, size, profiles, runs, threads, calibration):
    """One model in both conventions: TFLite op counts, interleaved host latency, estimates."""
    import numpy as np

    import kerasnets
    from kerasnets.export import cost, runtime, tflite
    from kerasnets.stats import randomize_batch_norm
    images = np.random.default_rng(0).uniform(-1, 1, (calibration, size, size, 3)).astype("float32")
    artifacts, estimates = {}, {}
    for convention in CONVENTIONS:
        model = kerasnets.get_model(name, input_shape=(size, size, 3), convention=convention)
        randomize_batch_norm(model, seed=0)
        artifacts[convention] = tflite.convert(model, "int8", representative_data=[images],
                                               calibration_count=calibration)
        graph = cost.analyze(kerasnets.deploy(model))
        unmodeled = sorted({op.class_name for op in graph.ops if op.kind == "unknown"})
        estimates[convention] = {}
        for profile in profiles:
            result = cost.estimate(graph, profile)
            cpu = sum(1 for r in result["layers"] if r.placement == "cpu" and r.latency_ms > 0)
            estimates[convention][profile.name] = {"latency_ms": result["totals"]["latency_ms"], "cpu_layers": cpu}
    timed = runtime.compare(artifacts, runs=runs, warmup=5, threads=threads)
    row = {"model": name}
    for convention in CONVENTIONS:
        t = timed[convention]
        row[convention] = {"pad_ops": t["op_counts"].get("PAD", 0), "ops": t["ops"], "host_ms": t["median_ms"],
                           "estimate": estimates[convention]}
    row["unmodeled_layers"] = unmodeled  # of the torch graph (the last built)
    row["host_ratio"] = row["torch"]["host_ms"] / row["tf"]["host_ms"]
    return row


def main(argv):
    from kerasnets.export import profiles as hw_profiles
    profiles = [hw_profiles.load_profile(p) for p in FLAGS.profiles]  # a bad one is refused first
    rows = [compare_conventions(name, FLAGS.input_size, profiles, FLAGS.runs, FLAGS.threads, FLAGS.calibration)
            for name in FLAGS.models]
    command = " ".join(sys.argv)
    if FLAGS.json:
        print(json.dumps({"input_size": FLAGS.input_size, "runs": FLAGS.runs, "threads": FLAGS.threads,
                          "rows": rows, "command": command}, indent=1))
        return 0
    size = FLAGS.input_size
    print(f"int8 TFLite at {size}x{size}; host: LiteRT, {FLAGS.threads} thread(s), median of {FLAGS.runs} runs, "
          "tf and torch artifacts interleaved; estimator: export.cost.estimate (ms; n cpu = layers placed on CPU)")
    print("| model | PAD ops tf / torch | ops tf / torch | host ms tf / torch | torch/tf |"
          + "".join(f" {p.name} ms tf / torch |" for p in profiles))
    print("|---|---|---|---|---|" + "---|" * len(profiles))
    for r in rows:
        tf_, th = r["tf"], r["torch"]
        cells = []
        for p in profiles:
            a, b = tf_["estimate"][p.name], th["estimate"][p.name]
            cells.append(" / ".join(f"{e['latency_ms']:.2f}" + (f" ({e['cpu_layers']} cpu)" if e["cpu_layers"]
                                                                 and p.name != "host_cpu" else "") for e in (a, b)))
        print(f"| {r['model']} | {tf_['pad_ops']} / {th['pad_ops']} | {tf_['ops']} / {th['ops']} | "
              f"{tf_['host_ms']:.2f} / {th['host_ms']:.2f} | {r['host_ratio']:.3f} | " + " | ".join(cells) + " |")
    unmodeled = sorted({c for r in rows for c in r["unmodeled_layers"]})
    if unmodeled:
        print(f"note: the estimator does not model {', '.join(unmodeled)} (op kind 'unknown'): NPU profiles "
              "refuse it, so the torch estimates cost the CPU fallback it causes, not a PAD on the NPU.")
    print("command: " + command)
    return 0


if __name__ == "__main__":
    from kerasnets.cli import run_main  # one-sentence errors, exit 2
    run_main(main)
