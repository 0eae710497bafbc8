"""`kerasnets-partition --model=NAME --input_size=HxW --profile=P --policy=max_npu|float_head|min_latency --out=DIR [--json]`

Places every layer on the NPU or the CPU with the Edge TPU compiler's reasons, prints the
compiler-style log (or one JSON object), and with ``--out`` writes ``plan.json``,
``partition.log`` and the parts: an int8 TFLite for the NPU part and a float TFLite for
the CPU part (calibrated on random images unless ``--calibration_npz`` gives real ones).
``--out`` has the alias ``--output_dir``; ``--policy`` defaults to ``max_npu``.
"""
import os
import sys

import numpy as np
from absl import flags

from export import partition
from export.cli.zoo_model import build_model
from kerasnets.cli import define_flags, print_json, run_main
from kerasnets.errors import UsageError

FLAGS = flags.FLAGS
define_flags("model", "input_size", "profile", "policy", "out", "classes", "shuffle", "group_conv", "weights",
             "calibration_count", "json")
flags.DEFINE_string("calibration_npz", None, "An .npz whose first array holds calibration images (N, H, W, 3).")


def main(argv):
    overrides = {k: getattr(FLAGS, k) for k in ("shuffle", "group_conv") if getattr(FLAGS, k)}
    model, (h, w) = build_model(FLAGS.model, FLAGS.input_size, FLAGS.classes, overrides)
    if FLAGS.weights:
        if not os.path.isfile(FLAGS.weights):
            raise UsageError(f"--weights={FLAGS.weights!r} is not a file; pass a Keras weights file.")
        model.load_weights(FLAGS.weights)
    plan = partition.partition_for_profile(model, FLAGS.profile, policy=FLAGS.policy or "max_npu")
    files = None
    if FLAGS.out:
        if FLAGS.calibration_npz:
            if not os.path.isfile(FLAGS.calibration_npz):
                raise UsageError(f"--calibration_npz={FLAGS.calibration_npz!r} is not a file; check the path.")
            with np.load(FLAGS.calibration_npz) as z:
                images = np.asarray(z[z.files[0]], np.float32)
            if images.shape[1:] != (h, w, 3):
                raise UsageError(f"--calibration_npz images have shape {images.shape[1:]}, the model takes "
                                 f"{(h, w, 3)}; resize them or change --input_size.")
        else:
            images = np.random.default_rng(0).uniform(-1, 1, (FLAGS.calibration_count, h, w, 3)).astype(np.float32)
        files = partition.export_partition(model, plan, FLAGS.out, images, FLAGS.calibration_count,
                                           command=" ".join(sys.argv))
    t = plan.estimate["totals"]
    if FLAGS.json:
        print_json({"model": FLAGS.model, "input_size": [h, w], "profile": plan.profile, "policy": plan.policy,
                    "latency_ms": t["latency_ms"], "fps": t["fps"], "mac_utilization": t["mac_utilization"],
                    "npu_layers": plan.npu_layers, "cpu_layers": plan.cpu_layers, "cut": plan.cut,
                    "layers": plan.decisions, "totals": t, "files": files, "out": FLAGS.out})
    else:
        print(plan.log, end="")
        if files:
            print(f"wrote plan.json, partition.log and {', '.join(f['file'] for f in files)} to {FLAGS.out}")
    return 0


def run():
    run_main(main)


if __name__ == "__main__":
    run()
