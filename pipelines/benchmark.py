"""Accuracy benchmark: float vs PTQ int8 vs QAT int8 top-1 on Fashion-MNIST, side by side.

Both int8 numbers are measured in LiteRT on the int8 TFLite artifacts (full integer,
per-channel, int8 input/output), over the whole validation split used.
"""
import dataclasses
import os
import time

from kerasnets.pipelines import data, evaluate, ptq, qat, train

DEFAULT_MODELS = ("mobilenet_v2_100", "axspine_small", "repghostnet_050", "shufflenet_v2_x0_5")


def benchmark_model(name, tr, va, output_dir, input_size=32, epochs=10, qat_epochs=1, batch_size=128,
                    learning_rate=0.05, calibration_count=200, overrides=None, verbose=0):
    config = train.TrainConfig(model=name, input_size=input_size, overrides=dict(overrides or {}), epochs=epochs,
                               batch_size=batch_size, learning_rate=learning_rate, verbose=verbose,
                               tensorboard=False)
    started = time.time()
    folder = os.path.join(output_dir, name)
    float_model = train.fit(config, tr, va, os.path.join(folder, "float"), resume=True).model
    norm = config.normalization
    row = {"model": name, "overrides": dict(overrides or {}), "epochs": epochs, "qat_epochs": qat_epochs,
           "float": evaluate.evaluate_keras(float_model, va, normalization=norm)["top1"]}
    content = ptq.quantize_post_training(float_model, tr, count=calibration_count, normalization=norm)
    row["ptq_int8"] = evaluate.evaluate_tflite(content, va, norm)["top1"]
    stage = dataclasses.replace(config, epochs=qat_epochs, learning_rate=learning_rate / 10, warmup_epochs=0.0)
    qat_model = train.fit(stage, tr, va, os.path.join(folder, "qat"), resume=True,
                          model_fn=lambda: qat.quantize_model(float_model, calibration=data.calibration_images(
                              tr, config.input_hw, min(calibration_count, len(tr)), norm))).model
    content = ptq.quantize_post_training(qat_model, tr, count=calibration_count, normalization=norm)
    row["qat_int8"] = evaluate.evaluate_tflite(content, va, norm)["top1"]
    row["seconds"] = round(time.time() - started, 1)
    return row


def format_table(rows, header):
    lines = [header, "", "| model | float top-1 | PTQ int8 top-1 | QAT int8 top-1 | PTQ - float | QAT - float |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        extra = f" ({r['overrides']})" if r["overrides"] else ""
        lines.append(f"| {r['model']}{extra} | {100 * r['float']:.2f} | {100 * r['ptq_int8']:.2f} | "
                     f"{100 * r['qat_int8']:.2f} | {100 * (r['ptq_int8'] - r['float']):+.2f} | "
                     f"{100 * (r['qat_int8'] - r['float']):+.2f} |")
    return "\n".join(lines)


def describe(args):
    return (f"Fashion-MNIST, input {args['input_size']}x{args['input_size']} (28x28 grey resized, replicated to 3 "
            f"channels), {args['train']} training / {args['val']} test images, float {args['epochs']} epochs SGD "
            f"cosine, QAT {args['qat_epochs']} epoch(s) from the float weights, PTQ with {args['calibration']} "
            "real training images; int8 = full-integer TFLite run in LiteRT.")



