"""How lean our TFLite graphs are (not a timed test: prints figures measured in one run).

    .venv/bin/python benchmarks/export_benchmark.py                 # 224x224, 100 interleaved runs
    .venv/bin/python benchmarks/export_benchmark.py --input_size=96x96 --runs=30

1. Our ``mobilenet_v2_100`` through ``kerasnets.export.tflite.convert`` against
   ``tf_keras.applications.MobileNetV2(weights=None)`` through the plain converter
   (``TFLiteConverter.from_keras_model``): op counts and the latency ratio (target <= 1.0).
2. int8 against float32 of our model: the speed-up.
3. RepGhostNet deployed (branches fused, BN folded) against its train form converted as is.

Each group is timed interleaved (every round runs each model once) with the same thread count,
so the ratios are fair on a shared machine.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

flags.DEFINE_string("input_size", "224x224", "Input size HEIGHTxWIDTH.")
flags.DEFINE_integer("runs", 100, "Timed runs per model (after 10 warm-up runs).")
flags.DEFINE_integer("threads", 1, "LiteRT threads.")
flags.DEFINE_string("repghost", "repghostnet_100", "RepGhostNet variant for the deploy comparison.")
flags.DEFINE_bool("json", False, "Print one JSON object.")
FLAGS = flags.FLAGS


def _plain_convert(model):
    from kerasnets.backend import tf
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _row(stats):
    return {k: stats[k] for k in ("median_ms", "p90_ms", "ops", "size_bytes", "op_counts")}


def main(argv):
    import numpy as np

    import kerasnets
    from kerasnets.export import runtime, tflite
    from kerasnets.backend import keras
    from kerasnets.cli import parse_size
    h, w = parse_size(FLAGS.input_size)
    shape = (h, w, 3)
    rng = np.random.default_rng(0)
    calib = rng.uniform(-1, 1, (32,) + shape).astype("float32")
    timing = dict(runs=FLAGS.runs, warmup=10, threads=FLAGS.threads)

    ours = kerasnets.get_model("mobilenet_v2_100", input_shape=shape)
    kerasnets.stats.randomize_batch_norm(ours, seed=0)
    theirs = keras.applications.MobileNetV2(input_shape=shape, weights=None)
    arts = {"ours_float32": tflite.convert(ours, "float32"),
            "keras_app_float32": _plain_convert(theirs),
            "ours_int8": tflite.convert(ours, "int8", representative_data=calib, calibration_count=32)}
    t1 = runtime.compare({k: arts[k] for k in ("ours_float32", "keras_app_float32")}, **timing)
    t2 = runtime.compare({k: arts[k] for k in ("ours_float32", "ours_int8")}, **timing)

    rep = kerasnets.get_model(FLAGS.repghost, input_shape=shape)
    kerasnets.stats.randomize_batch_norm(rep, seed=0)
    t3 = runtime.compare({"repghost_train_form": tflite.convert(rep, "float32", deploy=False),
                          "repghost_deployed": tflite.convert(rep, "float32")}, **timing)

    result = {
        "input_size": [h, w], "threads": FLAGS.threads, "runs": FLAGS.runs,
        "mobilenet_v2_vs_keras_applications": {
            "ours": _row(t1["ours_float32"]), "keras_app": _row(t1["keras_app_float32"]),
            "op_counts_equal": t1["ours_float32"]["op_counts"] == t1["keras_app_float32"]["op_counts"],
            "latency_ratio": t1["ours_float32"]["median_ms"] / t1["keras_app_float32"]["median_ms"]},
        "int8_vs_float32": {"float32": _row(t2["ours_float32"]), "int8": _row(t2["ours_int8"]),
                            "speedup": t2["ours_float32"]["median_ms"] / t2["ours_int8"]["median_ms"]},
        "repghost_deployed_vs_train": {
            "model": FLAGS.repghost, "train_form": _row(t3["repghost_train_form"]),
            "deployed": _row(t3["repghost_deployed"]),
            "speedup": t3["repghost_train_form"]["median_ms"] / t3["repghost_deployed"]["median_ms"]},
        "command": " ".join(sys.argv),
    }
    if FLAGS.json:
        print(json.dumps(result, indent=1))
        return 0
    m, q, r = (result[k] for k in ("mobilenet_v2_vs_keras_applications", "int8_vs_float32",
                                   "repghost_deployed_vs_train"))
    print(f"input {h}x{w}, {FLAGS.threads} thread(s), median of {FLAGS.runs} interleaved runs (LiteRT)")
    print("| comparison | A | B | A ops | B ops | A median ms | B median ms | ratio A/B |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| MobileNetV2 1.0 float32 | ours | keras.applications (plain converter) | {m['ours']['ops']} | "
          f"{m['keras_app']['ops']} | {m['ours']['median_ms']:.3f} | {m['keras_app']['median_ms']:.3f} | "
          f"{m['latency_ratio']:.3f} |")
    print(f"| MobileNetV2 1.0 | int8 | float32 | {q['int8']['ops']} | {q['float32']['ops']} | "
          f"{q['int8']['median_ms']:.3f} | {q['float32']['median_ms']:.3f} | {1 / q['speedup']:.3f} |")
    print(f"| {r['model']} float32 | deployed | train form | {r['deployed']['ops']} | {r['train_form']['ops']} | "
          f"{r['deployed']['median_ms']:.3f} | {r['train_form']['median_ms']:.3f} | {1 / r['speedup']:.3f} |")
    print(f"op counts equal (ours vs keras.applications): {m['op_counts_equal']}; int8 speed-up over float32: "
          f"{q['speedup']:.2f}x; RepGhost deploy speed-up: {r['speedup']:.2f}x")
    print("command: " + result["command"])
    return 0


if __name__ == "__main__":
    from kerasnets.cli import run_main
    run_main(main)
