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
from pipelines import data, evaluate, ptq, qat, quantizers, staged, train
from pipelines.cli import common, emit, fail, user_errors

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


def _io_type():
    return FLAGS.io_type or "int8"


def _float_model(config, tr, va):
    if FLAGS.float_weights:
        if not os.path.isfile(FLAGS.float_weights):
            raise common.ConfigError(f"--float_weights={FLAGS.float_weights!r} is not a file; pass final.weights.h5 "
                                     "of a kerasnets-train run.")
        model = train.default_model_fn(config, tr.num_classes)()
        try:
            model.load_weights(FLAGS.float_weights)
        except (ValueError, OSError) as e:
            raise common.weights_error(FLAGS.float_weights, config.model, e) from None
        return model
    return train.fit(config, tr, va, os.path.join(FLAGS.out, "float"), resume=FLAGS.resume).model


def _ptq(config, tr, va):
    model = _float_model(config, tr, va)
    content = ptq.quantize_post_training(model, tr, count=FLAGS.calibration_count, per_channel=FLAGS.per_channel,
                                         io_type=_io_type(), normalization=config.normalization, seed=FLAGS.seed)
    path = os.path.join(FLAGS.out, f"{config.model}_ptq_int8.tflite")
    ptq.save_tflite(path, content, config.model, config.normalization, tr.class_names)
    summary = {"mode": "ptq", "tflite": path, "float": evaluate.evaluate_keras(model, va, normalization=config.normalization),
               "int8": evaluate.evaluate_tflite(content, va, config.normalization)}
    if FLAGS.debug_report:
        rows = ptq.debug_report(model, tr, count=min(32, FLAGS.calibration_count), per_channel=FLAGS.per_channel,
                                normalization=config.normalization)
        summary["debug_report"] = rows
        if not FLAGS.json:
            print(ptq.format_debug_report(rows))
    if FLAGS.compare_quantizers:
        images = data.calibration_images(tr, config.input_hw, 16, config.normalization)
        rows = quantizers.compare_quantizers(model, images)
        summary["quantizer_comparison"] = rows
        if not FLAGS.json:
            print(quantizers.format_comparison(rows))
    return summary


def _qat(config, tr, va):
    float_model = _float_model(config, tr, va)
    stage = dataclasses.replace(config, epochs=FLAGS.qat_epochs, warmup_epochs=0.0, ema_decay=0.0,
                                learning_rate=FLAGS.qat_learning_rate or config.learning_rate / 10)
    result = train.fit(stage, tr, va, os.path.join(FLAGS.out, "qat"), resume=FLAGS.resume,
                       model_fn=lambda: qat.quantize_model(float_model, float_head=FLAGS.float_head))
    content = ptq.quantize_post_training(result.model, tr, count=FLAGS.calibration_count, io_type=_io_type(),
                                         normalization=config.normalization)
    path = os.path.join(FLAGS.out, f"{config.model}_qat_int8.tflite")
    ptq.save_tflite(path, content, config.model, config.normalization, tr.class_names,
                    extra={"float_head": FLAGS.float_head})
    return {"mode": "qat", "tflite": path, "float_head": FLAGS.float_head,
            "float": evaluate.evaluate_keras(float_model, va, normalization=config.normalization),
            "qat": evaluate.evaluate_keras(result.model, va, normalization=config.normalization),
            "int8": evaluate.evaluate_tflite(content, va, config.normalization)}


def _staged(config, tr, va):
    result = staged.run_staged(config, tr, va, FLAGS.out, qat_epochs=FLAGS.qat_epochs,
                               qat_learning_rate=FLAGS.qat_learning_rate or None, finetune=FLAGS.finetune,
                               finetune_learning_rate=FLAGS.finetune_learning_rate, float_head=FLAGS.float_head,
                               float_weights=FLAGS.float_weights, resume=FLAGS.resume,
                               calibration_count=FLAGS.calibration_count)
    if not FLAGS.json:
        print(staged.format_stage_table(result))
    return {"mode": "staged", **result}


def _bitwidth(config, tr, va):
    result = staged.run_bitwidth(config, tr, va, FLAGS.out, float_weights=FLAGS.float_weights,
                                 target_bits=FLAGS.target_bits or None, size_bytes=FLAGS.size_bytes or None,
                                 strength=FLAGS.budget_strength, epochs=FLAGS.qat_epochs,
                                 learning_rate=FLAGS.qat_learning_rate or None, float_head=FLAGS.float_head,
                                 resume=FLAGS.resume, calibration_count=FLAGS.calibration_count)
    return {"mode": "bitwidth", **result}


def main(argv):
    if len(argv) != 2 or argv[1] not in MODES:
        fail(f"give exactly one mode out of {', '.join(MODES)} (got {argv[1:]}), e.g. kerasnets-quantize ptq --flags.")
    try:
        config = common.train_config()
        tr, va = common.load_splits()
        summary = {"ptq": _ptq, "qat": _qat, "staged": _staged, "bitwidth": _bitwidth}[argv[1]](config, tr, va)
    except user_errors() as e:
        fail(str(e))
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
