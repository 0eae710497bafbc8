"""Float vs PTQ int8 vs QAT int8 top-1 on Fashion-MNIST (not a timed test).

    .venv/bin/python benchmarks/accuracy_benchmark.py --epochs=10 --qat_epochs=2
    .venv/bin/python benchmarks/accuracy_benchmark.py --models=mobilenet_v2_035 --train_subset=512 \
        --val_subset=256 --epochs=1 --qat_epochs=1 --calibration_count=64      (a minutes-long smoke run)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

flags.DEFINE_list("models", ["mobilenet_v2_100", "axspine_small", "repghostnet_050", "shufflenet_v2_x0_5"],
                  "Zoo models.")
flags.DEFINE_integer("input_size", 32, "Input size.")
flags.DEFINE_integer("epochs", 10, "Float epochs.")
flags.DEFINE_integer("qat_epochs", 2, "QAT epochs.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("learning_rate", 0.05, "Peak float learning rate (QAT uses a tenth).")
flags.DEFINE_integer("train_subset", 0, "Training images (0 = all 60000).")
flags.DEFINE_integer("val_subset", 0, "Test images (0 = all 10000).")
flags.DEFINE_integer("calibration_count", 200, "PTQ calibration images.")
flags.DEFINE_string("width_overrides", "{}", "JSON {model: {override: value}} to shrink models for CPU time.")
flags.DEFINE_string("output_dir", "runs/accuracy_benchmark", "Checkpoints (a rerun resumes) and results.json.")
FLAGS = flags.FLAGS


def main(argv):
    from kerasnets.pipelines import benchmark, data
    # A bad flag, model or dataset raises a ValueError: run_main prints it as one sentence, exit 2.
    try:
        overrides = json.loads(FLAGS.width_overrides)
    except json.JSONDecodeError as e:
        raise ValueError(f"--width_overrides={FLAGS.width_overrides!r} is not JSON ({e.msg}); pass an object such as "
                         """'{"axspine_small": {"group_conv": "split"}}'.""") from None
    tr, va = data.load_fashion_mnist("train"), data.load_fashion_mnist("test")
    if FLAGS.train_subset:
        tr = tr.take(FLAGS.train_subset, seed=0)
    if FLAGS.val_subset:
        va = va.take(FLAGS.val_subset)
    rows = []
    for name in FLAGS.models:
        rows.append(benchmark.benchmark_model(
            name, tr, va, FLAGS.output_dir, FLAGS.input_size, FLAGS.epochs, FLAGS.qat_epochs, FLAGS.batch_size,
            FLAGS.learning_rate, FLAGS.calibration_count, overrides.get(name)))
        print(json.dumps(rows[-1]), flush=True)
    header = benchmark.describe({"input_size": FLAGS.input_size, "train": len(tr), "val": len(va),
                                 "epochs": FLAGS.epochs, "qat_epochs": FLAGS.qat_epochs,
                                 "calibration": FLAGS.calibration_count})
    print(benchmark.format_table(rows, header))
    print("command: " + " ".join(sys.argv))
    tmp = os.path.join(FLAGS.output_dir, ".results.json.tmp")
    with open(tmp, "w") as f:
        json.dump({"rows": rows, "method": header, "command": " ".join(sys.argv)}, f, indent=1)
    os.replace(tmp, os.path.join(FLAGS.output_dir, "results.json"))


if __name__ == "__main__":
    from kerasnets.cli import run_main  # one-sentence errors, exit 2
    run_main(main)
