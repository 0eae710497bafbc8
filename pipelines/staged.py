"""The paper's staged quantization flow as one call, and learned bit-widths as one call.

Stages (each trained with :func:`kerasnets.pipelines.train.fit` in its own ``stageN_*`` folder,
checkpointed every epoch, evaluated on the validation split):

1. ``float``: the float model;
2. ``weights``: from it, QAT with quantized weights only (activations float);
3. ``weights+activations``: from that, full 8-bit QAT;
4. ``finetune`` (optional): full QAT continued at a tiny learning rate (default 1e-7).

``resume=True`` restores finished stages from their checkpoints and continues the
interrupted one. The last model is converted to int8 TFLite and evaluated in LiteRT.
"""
import dataclasses
import os

from kerasnets.heads import float_head_layer_names
from kerasnets.io import write_json
from kerasnets.pipelines import bitwidth, checks, evaluate, ptq, qat, train
from kerasnets.pipelines import data as data_lib
from kerasnets.pipelines.errors import ConfigError

STAGES = ("float", "weights", "weights+activations", "finetune")


def _stage_config(config, epochs, learning_rate, warmup=0.0):
    return dataclasses.replace(config, epochs=int(epochs), learning_rate=float(learning_rate),
                               warmup_epochs=warmup, ema_decay=0.0)


def _float_model(config, num_classes):
    return train.default_model_fn(config, num_classes)()


def _check_common(config, train_split, val_split, output_dir):
    """The arguments every flow shares, checked (config, splits, output folder) before any work."""
    if not isinstance(config, train.TrainConfig):
        raise ConfigError(f"config is a {type(config).__name__}, not a TrainConfig; pass pipelines.train.TrainConfig.")
    config.check()
    train_split = data_lib.check_training_split(train_split)
    if val_split is not None:
        val_split = data_lib.validate_split(val_split, train_split.num_classes, "validation data")
    output_dir = checks.check_output_folder(output_dir, "output_dir")
    return config, train_split, val_split, output_dir


def _from_float_weights(config, num_classes, float_weights):
    """The float model loaded from ``float_weights`` (None without them); refused when they do not fit."""
    if not float_weights:
        return None
    return train.load_weights_file(_float_model(config, num_classes), float_weights, "float_weights")


def _check_float_head(model):
    if not float_head_layer_names(model):
        raise ConfigError(f"model {model.name!r} has no pooled classifier head to keep float; drop float_head.")


def run_staged(config, train_split, val_split, output_dir, qat_epochs=1, qat_learning_rate=None,
               finetune=True, finetune_epochs=1, finetune_learning_rate=1e-7, float_head=False,
               float_weights=None, resume=False, calibration_count=100, tflite=True):
    """Run stages 1-4 and return ``{"stages": [{"stage", "top1", "top5", "dir"}...], "tflite": ...}``.

    Args:
      config: :class:`~pipelines.train.TrainConfig` of the float stage (its epochs, lr).
      qat_epochs, qat_learning_rate: epochs and peak lr of stages 2 and 3 (default lr/10).
      finetune, finetune_epochs, finetune_learning_rate: stage 4.
      float_head: keep the classifier head float in stages 2-4.
      float_weights: path of trained float weights; stage 1 is then evaluated, not trained.
    """
    config, train_split, val_split, output_dir = _check_common(config, train_split, val_split, output_dir)
    qat_epochs = checks.integer("qat_epochs", qat_epochs, 1, fix="pass 1 or more epochs")
    if qat_learning_rate is not None:
        qat_learning_rate = checks.number("qat_learning_rate", qat_learning_rate, 0,
                                          fix="pass a positive rate, or 0/None for learning_rate / 10")
    finetune = checks.boolean("finetune", finetune)
    finetune_epochs = checks.integer("finetune_epochs", finetune_epochs, 1, fix="pass 1 or more epochs")
    finetune_learning_rate = checks.number("finetune_learning_rate", finetune_learning_rate, above=0,
                                           fix="pass a small positive rate such as 1e-7")
    float_head = checks.boolean("float_head", float_head)
    resume = checks.boolean("resume", resume)
    calibration_count = checks.integer("calibration_count", calibration_count, 1, fix="pass 1 or more images")
    num_classes = train_split.num_classes
    qat_lr = qat_learning_rate or config.learning_rate / 10.0
    norm = config.normalization
    rows = []
    # Checked before any training: stage 2-4 configs, and float weights that do not fit.
    _stage_config(config, qat_epochs, qat_lr).check()
    float_model = _from_float_weights(config, num_classes, float_weights)
    if float_head:
        _check_float_head(float_model or _float_model(config, num_classes))

    def record(stage, model, folder):
        acc = evaluate.evaluate_keras(model, val_split, normalization=norm) if val_split is not None else {}
        rows.append({"stage": stage, "dir": folder, **{k: acc[k] for k in ("top1", "top5") if k in acc}})

    # 1. float
    folder = os.path.join(output_dir, "stage1_float")
    if float_model is None:
        float_model = train.fit(config, train_split, val_split, folder, resume=resume).model
    record("float", float_model, folder)

    # 2. weights only
    folder = os.path.join(output_dir, "stage2_weights")
    w_model = train.fit(_stage_config(config, qat_epochs, qat_lr), train_split, val_split, folder, resume=resume,
                        model_fn=lambda: qat.quantize_model(float_model, float_head=float_head, mode="weights")).model
    record("weights", w_model, folder)

    # 3. weights and activations, from stage 2's weights
    float_from_2 = qat.float_weights_from_qat(w_model, _float_model(config, num_classes))
    folder = os.path.join(output_dir, "stage3_weights_activations")
    images = data_lib.calibration_images(train_split, config.input_hw, min(calibration_count, len(train_split)),
                                         norm)
    full = train.fit(_stage_config(config, qat_epochs, qat_lr), train_split, val_split, folder, resume=resume,
                     model_fn=lambda: qat.quantize_model(float_from_2, float_head=float_head,
                                                         calibration=images)).model
    record("weights+activations", full, folder)

    # 4. fine-tune at a tiny learning rate, from stage 3 (ranges included)
    if finetune:
        folder = os.path.join(output_dir, "stage4_finetune")

        def from_stage3():
            model = qat.quantize_model(float_from_2, float_head=float_head)
            model.set_weights(full.get_weights())
            return model
        full = train.fit(_stage_config(config, finetune_epochs, finetune_learning_rate), train_split, val_split,
                         folder, resume=resume, model_fn=from_stage3).model
        record("finetune", full, folder)

    result = {"model": config.model, "stages": rows, "float_head": float_head}
    if tflite:
        content = ptq.quantize_post_training(full, train_split, count=min(calibration_count, len(train_split)),
                                             normalization=norm)
        path = os.path.join(output_dir, f"{config.model}_qat_int8.tflite")
        ptq.save_tflite(path, content, config.model, norm, train_split.class_names,
                        extra={"stages": rows, "float_head": float_head})
        result["tflite"] = {"path": path, **(evaluate.evaluate_tflite(content, val_split, norm)
                                             if val_split is not None else {})}
    write_json(os.path.join(output_dir, "staged.json"), result)
    return result


def format_stage_table(result):
    lines = ["| stage | top-1 | top-5 |", "|---|---|---|"]
    for r in result["stages"]:
        lines.append(f"| {r['stage']} | {100 * r.get('top1', float('nan')):.2f} | "
                     f"{100 * r.get('top5', float('nan')):.2f} |")
    if "tflite" in result and "top1" in result["tflite"]:
        lines.append(f"| int8 TFLite (LiteRT) | {100 * result['tflite']['top1']:.2f} | "
                     f"{100 * result['tflite'].get('top5', float('nan')):.2f} |")
    return "\n".join(lines)


def run_bitwidth(config, train_split, val_split, output_dir, float_weights=None, target_bits=None, size_bytes=None,
                 strength=1.0, epochs=1, learning_rate=None, float_head=True, resume=False, calibration_count=100):
    """Learn per-layer bit-widths under a budget and export the planned int8 model.

    Starts from ``float_weights`` (or trains the float model first). The budget is
    ``target_bits`` (parameter-weighted average) or ``size_bytes`` (kernel bytes). Writes
    ``bitwidth_plan.json`` and ``<model>_bits_int8.tflite`` (+ manifest) in ``output_dir``.
    """
    config, train_split, val_split, output_dir = _check_common(config, train_split, val_split, output_dir)
    if target_bits is not None:
        target_bits = checks.number("target_bits", target_bits, bitwidth.MIN_BITS, bitwidth.MAX_BITS,
                                    fix="pass an average bit-width from 1 to 8, e.g. 4")
    if size_bytes is not None:
        size_bytes = checks.integer("size_bytes", size_bytes, 1, fix="pass the kernel budget in bytes")
    if target_bits is not None and size_bytes is not None:
        raise ConfigError(f"target_bits={target_bits:g} and size_bytes={size_bytes} are two budgets; pass one.")
    strength = checks.number("strength", strength, 0, fix="pass 0 or a positive weight such as 1.0")
    epochs = checks.integer("epochs", epochs, 1, fix="pass 1 or more epochs")
    if learning_rate is not None:
        learning_rate = checks.number("learning_rate", learning_rate, 0,
                                      fix="pass a positive rate, or 0/None for the float rate / 10")
    float_head = checks.boolean("float_head", float_head)
    resume = checks.boolean("resume", resume)
    calibration_count = checks.integer("calibration_count", calibration_count, 1, fix="pass 1 or more images")
    num_classes = train_split.num_classes
    norm = config.normalization
    _stage_config(config, epochs, learning_rate or config.learning_rate / 10.0).check()
    float_model = _from_float_weights(config, num_classes, float_weights)
    if float_head:
        _check_float_head(float_model or _float_model(config, num_classes))
    if float_model is None:
        float_model = train.fit(config, train_split, val_split, os.path.join(output_dir, "float"),
                                resume=resume).model
    holder = {}

    def build():
        model = bitwidth.quantize_model_learned_bits(float_model, float_head=float_head)
        target = target_bits
        if target is None:
            target = bitwidth.target_bits_for_size(model, size_bytes) if size_bytes else 4.0
        holder["target"] = target
        bitwidth.add_budget_loss(model, target, strength)
        holder["model"] = model
        return model
    stage = _stage_config(config, epochs, learning_rate or config.learning_rate / 10.0)
    # The tracker needs the model built inside fit's strategy scope: it binds at train start.
    tracker = _LazyTracker(holder)
    qat_model = train.fit(stage, train_split, val_split, os.path.join(output_dir, "bits"), model_fn=build,
                          resume=resume, callbacks=[tracker], compile_metrics=True).model
    plan = bitwidth.bitwidth_plan(qat_model)
    summary = bitwidth.plan_summary(qat_model, plan)
    summary["target_bits"] = holder["target"]
    snapped = bitwidth.snap_to_plan(qat.float_weights_from_qat(qat_model, _float_model(config, num_classes)), plan)
    content = ptq.quantize_post_training(snapped, train_split, count=min(calibration_count, len(train_split)),
                                         normalization=norm)
    path = os.path.join(output_dir, f"{config.model}_bits_int8.tflite")
    plan_path = os.path.join(output_dir, "bitwidth_plan.json")
    ptq.save_tflite(path, content, config.model, norm, train_split.class_names,
                    extra={"bitwidth_plan": os.path.basename(plan_path), "bitwidth_summary": summary})
    result = {"model": config.model, "plan_path": plan_path, "tflite": path, "summary": summary,
              "qat_top1": evaluate.evaluate_keras(qat_model, val_split, normalization=norm)["top1"]
              if val_split is not None else None}
    if val_split is not None:
        result["tflite_top1"] = evaluate.evaluate_tflite(content, val_split, norm)["top1"]
    bitwidth.write_plan(plan_path, plan, summary, {"model": config.model, "tflite": os.path.basename(path)})
    result["plan"] = plan
    return result


class _LazyTracker(bitwidth.BitsTracker):
    """A :class:`~pipelines.bitwidth.BitsTracker` bound to the model at train start."""

    def __init__(self, holder, momentum=0.9):
        bitwidth.keras.callbacks.Callback.__init__(self)
        self.holder, self.momentum = holder, float(momentum)

    def on_train_begin(self, logs=None):
        self.variables = bitwidth.bit_variables(self.holder["model"])
        self.total = float(sum(v["params"] for v in self.variables.values()))
