"""`kerasnets-partition --model=NAME --input_size=HxW --profile=P --policy=max_npu|float_head|min_latency --out=DIR [--json]
[--retarget [--retarget_level=function|architecture]]`

Places every layer on the NPU or the CPU with the Edge TPU compiler's reasons, prints the
compiler-style log (or one JSON object), and with ``--out`` writes ``plan.json``,
``partition.log`` and the parts: an int8 TFLite for the NPU part and a float TFLite for
the CPU part (calibrated on random images unless ``--calibration_npz`` gives real ones).
``--out`` has the alias ``--output_dir``; ``--policy`` defaults to ``max_npu``.
``--retarget`` first adapts the model to the profile (:func:`kerasnets.export.retarget.retarget`, the
rules of the profile's ``retarget`` section), partitions the result and shows the mapping
(NPU / CPU layers, latency) before and after; at the function level the weights carry over.

Every input is checked before any work: the flags, the profile (an NPU's), the model at its
size (memory), the weights, the calibration .npz and the output folder (writable, free space
for the parts).
"""
import os
import sys

import numpy as np
from absl import flags

from kerasnets.export import partition, retarget
from kerasnets.export.cli import zoo_model
from kerasnets.cli import define_flags, model_flags, print_json, run_main
from kerasnets.errors import UsageError

FLAGS = flags.FLAGS
define_flags("model", "spec", "input_size", "profile", "policy", "out", "classes", "shuffle", "group_conv", "weights",
             "calibration_count", "json")
flags.DEFINE_string("calibration_npz", None, "An .npz whose first array holds calibration images (N, H, W, 3).")
flags.DEFINE_bool("retarget", False, "Retarget the model to the profile first (export.retarget) and show the mapping "
                  "before and after.")
flags.DEFINE_string("retarget_level", "function", "With --retarget: function (same weights and outputs) or "
                    "architecture (spec changes; the weights start random).")

PLAN_FILES = ("plan.json", "partition.log")


def part_bytes(model, plan):
    """Expected bytes of the parts: NPU layers' weights in int8, CPU layers' in float32, plus overheads."""
    where = {d["name"]: d["placement"] for d in plan.decisions}
    need = 0
    for layer in model.layers:
        mode = "int8" if where.get(layer.name) == "npu" else "float32"
        need += layer.count_params() * zoo_model.BYTES_PER_WEIGHT[mode]
    return int(need * 1.1) + zoo_model.ARTIFACT_OVERHEAD_BYTES * (len(plan.parts) + 1)


def _mapping(plan):
    t = plan.estimate["totals"]
    return {"model": plan.model, "npu_layers": len(plan.npu_layers), "cpu_layers": len(plan.cpu_layers),
            "latency_ms": t["latency_ms"], "fps": t["fps"]}


def mapping_lines(before, after):
    """The mapping before and after a retarget: NPU / CPU layer counts and estimated latency."""
    rows = [("before", _mapping(before)), ("after", _mapping(after))]
    lines = [f"Mapping on {after.profile} (policy {after.policy}):"]
    for label, m in rows:
        lines.append(f"  {label:6s} {m['model']:32s} NPU layers {m['npu_layers']:4d}, CPU layers {m['cpu_layers']:4d}, "
                     f"latency {m['latency_ms']:.3f} ms ({m['fps']:.1f} fps)")
    return "\n".join(lines) + "\n"


def main(argv):
    policy = zoo_model.check_choice(FLAGS.policy or "max_npu", partition.POLICIES, "policy")
    overrides = zoo_model.model_overrides(FLAGS.shuffle, FLAGS.group_conv)
    profile = partition.npu_profile(FLAGS.profile)
    if FLAGS.calibration_npz and not FLAGS.out:
        raise UsageError("--calibration_npz is only used to calibrate the parts written with --out; add --out=DIR "
                         "or drop --calibration_npz.")
    if FLAGS["calibration_count"].present and not FLAGS.out:
        raise UsageError("--calibration_count is only used to calibrate the parts written with --out; add "
                         "--out=DIR or drop --calibration_count.")
    level = None
    if FLAGS.retarget:
        level = zoo_model.check_choice(FLAGS.retarget_level, retarget.RETARGET_LEVELS, "retarget_level")
        retarget.retarget_profile(profile)
        if level == "architecture" and FLAGS.weights:
            raise UsageError("--weights do not fit an architecture-level retarget, which changes the layers; drop "
                             "--weights or use --retarget_level=function.")
    elif FLAGS["retarget_level"].present:
        raise UsageError("--retarget_level only applies with --retarget; add --retarget or drop --retarget_level.")
    if FLAGS.out:
        zoo_model.check_output_folder(FLAGS.out, "out", files=PLAN_FILES)
    name, spec = model_flags()
    h, w = zoo_model.model_size(name, FLAGS.input_size, spec)
    zoo_model.check_weights_file(FLAGS.weights)
    images = None
    if FLAGS.out:
        if FLAGS.calibration_npz:
            images = zoo_model.load_npz_images(FLAGS.calibration_npz, (h, w))
        else:
            zoo_model.check_images_fit_memory(FLAGS.calibration_count, (h, w))
    # With --out the Keras parts run on the whole calibration batch at once (export_partition).
    model, (h, w) = zoo_model.build_model_with_weights(name, FLAGS.input_size, FLAGS.classes, overrides, spec=spec,
                                                       weights=FLAGS.weights,
                                                       batch=FLAGS.calibration_count if FLAGS.out else 1)
    before = result = None
    if level:
        before = partition.partition_for_profile(model, profile, policy=policy)
        result = retarget.retarget(model, profile, level=level, policy=policy)
        model = result.model
    plan = partition.partition_for_profile(model, profile, policy=policy)
    files = None
    if FLAGS.out:
        names = [f"part{i}_{p['device']}_{'int8' if p['device'] == 'npu' else 'float32'}.tflite"
                 for i, p in enumerate(plan.parts)]
        zoo_model.check_output_folder(FLAGS.out, "out", files=names)
        zoo_model.check_space(os.path.join(FLAGS.out, PLAN_FILES[0]), part_bytes(model, plan), "out")
        if images is None:
            images = np.random.default_rng(0).uniform(-1, 1, (FLAGS.calibration_count, h, w, 3)).astype(np.float32)
        files = partition.export_partition(model, plan, FLAGS.out, images, FLAGS.calibration_count,
                                           command=" ".join(sys.argv))
    t = plan.estimate["totals"]
    if FLAGS.json:
        extra = {}
        if result is not None:
            extra["retarget"] = {**result.as_dict(), "before": _mapping(before), "after": _mapping(plan)}
        print_json({"model": model.name, "input_size": [h, w], "profile": plan.profile, "policy": plan.policy,
                    "latency_ms": t["latency_ms"], "fps": t["fps"], "mac_utilization": t["mac_utilization"],
                    "npu_layers": plan.npu_layers, "cpu_layers": plan.cpu_layers, "cut": plan.cut,
                    "layers": plan.decisions, "totals": t, "files": files, "out": FLAGS.out, **extra})
    else:
        if result is not None:
            print(result.table(), end="")
            print(mapping_lines(before, plan))
        print(plan.log, end="")
        if files:
            print(f"wrote plan.json, partition.log and {', '.join(f['file'] for f in files)} to {FLAGS.out}")
    return 0


def run():
    run_main(main)


if __name__ == "__main__":
    run()
