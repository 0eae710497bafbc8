"""kerasnets-quantize: int8 models by post-training calibration or quantization-aware training.

    kerasnets-quantize ptq --model=mobilenet_v2_035 --float_weights=runs/mnv2/final.weights.h5 --out=runs/ptq
    kerasnets-quantize qat --float_weights=... --qat_epochs=2 --float_head --out=runs/qat
    kerasnets-quantize staged --epochs=10 --qat_epochs=2 --out=runs/staged     (the paper's 4 steps)
    kerasnets-quantize bitwidth --float_weights=... --target_bits=4 --out=runs/bits

(``--out`` has the alias ``--output_dir``.)
"""
import dataclasses
import os

from absl import flags

from kerasnets.cli import define_flags, run_main
from kerasnets.errors import UsageError
from kerasnets.heads import float_head_layer_names
from kerasnets.pipelines import checks, data, evaluate, ptq, qat, quantizers, staged, train
from kerasnets.pipelines.cli import common, emit

MODES = ("ptq", "qat", "staged", "bitwidth")
common.define_common()
define_flags("calibration_count", "io_type", "qat_epochs")
flags.DEFINE_string("float_weights", None, "Trained float weights (final.weights.h5); without it the float "
                    "model is trained first with the training flags.")
flags.DEFINE_bool("per_channel", True, "Per-channel weight scales (--noper_channel: per-tensor).")
flags.DEFINE_bool("debug_report", False, "ptq: print the QuantizationDebugger per-layer error report.")
flags.DEFINE_bool("compare_quantizers", False, "ptq: print the symmetric vs asymmetric per-layer report.")
flags.DEFINE_float("qat_learning_rate", 0.0, "Peak lr of QAT stages (0 = learning_rate / 10).")
flags.DEFINE_bool("float_head", False, "Keep the classifier head float; quantize the backbone only.")
flags.DEFINE_bool("finetune", True, "staged: run step 4, fine-tuning at --finetune_learning_rate.")
flags.DEFINE_float("finetune_learning_rate", 1e-7, "staged: learning rate of step 4.")
flags.DEFINE_float("target_bits", 0.0, "bitwidth: target parameter-weighted average bits (0 = use --size_bytes or 4).")
flags.DEFINE_integer("size_bytes", 0, "bitwidth: target kernel size in bytes (alternative to --target_bits).")
flags.DEFINE_float("budget_strength", 1.0, "bitwidth: weight of the budget term in the loss.")

FLAGS = flags.FLAGS

#: Flags that only some modes use: giving one to another mode is refused, not silently ignored.
MODE_FLAGS = {"debug_report": ("ptq",), "compare_quantizers": ("ptq",), "per_channel": ("ptq",),
              "io_type": ("ptq", "qat"), "float_head": ("qat", "staged", "bitwidth"),
              "qat_epochs": ("qat", "staged", "bitwidth"), "qat_learning_rate": ("qat", "staged", "bitwidth"),
              "finetune": ("staged",), "finetune_learning_rate": ("staged",), "target_bits": ("bitwidth",),
              "size_bytes": ("bitwidth",), "budget_strength": ("bitwidth",)}
#: The sub-folders each mode trains in (checked for checkpoints before --resume / a fresh run).
_CHECKPOINT_DEPTH = 1


def _io_type():
    return FLAGS.io_type or "int8"


def _check_mode_flags(mode):
    for name, modes in MODE_FLAGS.items():
        if FLAGS[name].present and mode not in modes:
            raise UsageError(f"--{name} applies to mode {' / '.join(modes)} only, not {mode}; drop it or run "
                             f"kerasnets-quantize {modes[0]}.")


def _check_quantization_flags(config):
    """The QAT / fine-tuning / bit-width flags, checked before any training."""
    checks.number("--qat_learning_rate", FLAGS.qat_learning_rate, 0,
                  fix="pass a positive rate, or 0 for --learning_rate / 10")
    checks.integer("--qat_epochs", FLAGS.qat_epochs, 1, fix="pass 1 or more epochs of quantization-aware training")
    stage = dataclasses.replace(config, epochs=FLAGS.qat_epochs, warmup_epochs=0.0, ema_decay=0.0,
                                learning_rate=FLAGS.qat_learning_rate or config.learning_rate / 10)
    stage.check()
    checks.number("--finetune_learning_rate", FLAGS.finetune_learning_rate, above=0,
                  fix="pass a small positive rate such as 1e-7")
    if FLAGS.target_bits:
        checks.number("--target_bits", FLAGS.target_bits, 1, 8, fix="pass an average bit-width from 1 to 8, or 0 "
                      "for --size_bytes (or 4)")
    elif FLAGS.target_bits != 0:
        checks.number("--target_bits", FLAGS.target_bits, 0, fix="pass an average bit-width from 1 to 8")
    checks.integer("--size_bytes", FLAGS.size_bytes, 0, fix="pass the kernel budget in bytes, or 0")
    if FLAGS.target_bits and FLAGS.size_bytes:
        raise UsageError(f"--target_bits={FLAGS.target_bits:g} and --size_bytes={FLAGS.size_bytes} are two "
                         "budgets; pass one of them.")
    checks.number("--budget_strength", FLAGS.budget_strength, 0, fix="pass 0 or a positive weight such as 1.0")
    if FLAGS.io_type is not None:
        ptq.check_io_type(FLAGS.io_type)


def _check_float_weights_file():
    """``--float_weights`` names a Keras weights file (its fit with the model is checked once it is built)."""
    if FLAGS.float_weights is not None:
        train.check_weights_file(FLAGS.float_weights, "--float_weights")


def _float_model(config, tr, va, model):
    if model is not None:
        return model
    return train.fit(config, tr, va, os.path.join(FLAGS.out, "float"), resume=FLAGS.resume).model


def _ptq(config, tr, va, model, count):
    model = _float_model(config, tr, va, model)
    content = ptq.quantize_post_training(model, tr, count=count, per_channel=FLAGS.per_channel,
                                         io_type=_io_type(), normalization=config.normalization, seed=FLAGS.seed)
    path = os.path.join(FLAGS.out, f"{config.model}_ptq_int8.tflite")
    ptq.save_tflite(path, content, config.model, config.normalization, tr.class_names)
    summary = {"mode": "ptq", "tflite": path, "float": evaluate.evaluate_keras(model, va, normalization=config.normalization),
               "int8": evaluate.evaluate_tflite(content, va, config.normalization)}
    if FLAGS.debug_report:
        rows = ptq.debug_report(model, tr, count=min(32, count), per_channel=FLAGS.per_channel,
                                normalization=config.normalization)
        summary["debug_report"] = rows
        if not FLAGS.json:
            print(ptq.format_debug_report(rows))
    if FLAGS.compare_quantizers:
        images = data.calibration_images(tr, config.input_hw, min(16, len(tr)), config.normalization)
        rows = quantizers.compare_quantizers(model, images)
        summary["quantizer_comparison"] = rows
        if not FLAGS.json:
            print(quantizers.format_comparison(rows))
    return summary


def _qat(config, tr, va, model, count):
    float_model = _float_model(config, tr, va, model)
    stage = dataclasses.replace(config, epochs=FLAGS.qat_epochs, warmup_epochs=0.0, ema_decay=0.0,
                                learning_rate=FLAGS.qat_learning_rate or config.learning_rate / 10)
    images = data.calibration_images(tr, config.input_hw, min(count, len(tr)), config.normalization)
    result = train.fit(stage, tr, va, os.path.join(FLAGS.out, "qat"), resume=FLAGS.resume,
                       model_fn=lambda: qat.quantize_model(float_model, float_head=FLAGS.float_head,
                                                         calibration=images))
    content = ptq.quantize_post_training(result.model, tr, count=count, io_type=_io_type(),
                                         normalization=config.normalization)
    path = os.path.join(FLAGS.out, f"{config.model}_qat_int8.tflite")
    ptq.save_tflite(path, content, config.model, config.normalization, tr.class_names,
                    extra={"float_head": FLAGS.float_head})
    return {"mode": "qat", "tflite": path, "float_head": FLAGS.float_head,
            "float": evaluate.evaluate_keras(float_model, va, normalization=config.normalization),
            "qat": evaluate.evaluate_keras(result.model, va, normalization=config.normalization),
            "int8": evaluate.evaluate_tflite(content, va, config.normalization)}


def _staged(config, tr, va, model, count):
    result = staged.run_staged(config, tr, va, FLAGS.out, qat_epochs=FLAGS.qat_epochs,
                               qat_learning_rate=FLAGS.qat_learning_rate or None, finetune=FLAGS.finetune,
                               finetune_learning_rate=FLAGS.finetune_learning_rate, float_head=FLAGS.float_head,
                               float_weights=FLAGS.float_weights, resume=FLAGS.resume,
                               calibration_count=count)
    if not FLAGS.json:
        print(staged.format_stage_table(result))
    return {"mode": "staged", **result}


def _bitwidth(config, tr, va, model, count):
    result = staged.run_bitwidth(config, tr, va, FLAGS.out, float_weights=FLAGS.float_weights,
                                 target_bits=FLAGS.target_bits or None, size_bytes=FLAGS.size_bytes or None,
                                 strength=FLAGS.budget_strength, epochs=FLAGS.qat_epochs,
                                 learning_rate=FLAGS.qat_learning_rate or None, float_head=FLAGS.float_head,
                                 resume=FLAGS.resume, calibration_count=count)
    return {"mode": "bitwidth", **result}


def _calibration_count(tr):
    """--calibration_count, refused when given larger than the training split (the default is capped to it)."""
    count = FLAGS.calibration_count
    if count > len(tr):
        if FLAGS["calibration_count"].present:
            raise UsageError(f"--calibration_count={count} is more than the {len(tr)} training images; pass at "
                             f"most {len(tr)}, or more training images (--train_subset).")
        count = len(tr)
    return count


def main(argv):
    if len(argv) != 2 or argv[1] not in MODES:
        got = " ".join(argv[1:]) or "none"
        raise UsageError(f"give exactly one mode out of {', '.join(MODES)} (got {got}), e.g. kerasnets-quantize "
                         "ptq --flags.")
    mode = argv[1]
    # Everything is checked before the first write or training step: flags, output folder, data, model, weights.
    _check_mode_flags(mode)
    config = common.train_config()
    if mode != "ptq":
        _check_quantization_flags(config)
    elif FLAGS.io_type is not None:
        ptq.check_io_type(FLAGS.io_type)
    out = common.output_dir()
    common.check_resume(out, depth=_CHECKPOINT_DEPTH)
    _check_float_weights_file()
    tr, va = common.load_splits()
    count = _calibration_count(tr)
    model = common.check_model(config, tr.num_classes)  # bad --overrides, sizes beyond memory: refused here
    if mode != "ptq" and FLAGS.float_head and not float_head_layer_names(model):
        raise UsageError(f"--float_head: model {config.model!r} has no pooled classifier head to keep float; "
                         "drop --float_head.")
    if FLAGS.float_weights:
        train.load_weights_file(model, FLAGS.float_weights, "--float_weights")
    else:
        model = None  # the float model is trained first, by train.fit
    summary = {"ptq": _ptq, "qat": _qat, "staged": _staged, "bitwidth": _bitwidth}[mode](config, tr, va, model, count)
    summary["model"] = config.model
    emit(summary, FLAGS.json)
    if not FLAGS.json:
        for key in ("float", "qat", "int8"):
            if key in summary:
                print(f"{key}: top1={summary[key]['top1']:.4f}")
        print(f"artifact: {summary.get('tflite')}")


def run():
    run_main(main, positional=True)  # the mode is the one positional argument


if __name__ == "__main__":
    run()
