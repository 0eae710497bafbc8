"""Post-training full-integer quantization with real calibration images, and its per-layer report.

The conversion itself is :func:`kerasnets.export.tflite.convert` (the project's one conversion
function: deploy transforms, static batch-1 shapes, int8 kernels); this module draws the
representative dataset from real training images and explains where accuracy went,
through TFLite's ``QuantizationDebugger``.
"""
import csv
import io
import math

import numpy as np

from kerasnets.export import tflite as tflite_export
from kerasnets.backend import keras, tf
from kerasnets.pipelines import checks
from kerasnets.pipelines import data as data_lib
from kerasnets.pipelines.errors import ConfigError, DataError


def check_model(model, name="model"):
    """Refuse (:class:`ConfigError`) anything but a built Keras model."""
    if not isinstance(model, keras.Model):
        raise ConfigError(f"{name} is a {type(model).__name__}, not a Keras model; pass a tf_keras model "
                          "(kerasnets.get_model builds one).")
    return model


def check_io_type(io_type):
    """``io_type`` if the int8 conversion knows it (:data:`kerasnets.export.tflite.IO_TYPES`)."""
    if not isinstance(io_type, str) or io_type not in tflite_export.IO_TYPES:
        raise ConfigError(f"io_type={io_type!r} is unknown; use one of {', '.join(tflite_export.IO_TYPES)}.")
    return io_type


def _calibration(model, calibration, count, normalization, seed):
    """Preprocessed float32 calibration images (count, h, w, 3) from a DataSplit or an array."""
    input_size = tuple(model.input_shape[1:3])
    if isinstance(calibration, data_lib.DataSplit):
        return data_lib.calibration_images(calibration, input_size, count, normalization, seed)
    try:
        images = np.asarray(calibration, np.float32)
    except (TypeError, ValueError):
        raise DataError(f"calibration is a {type(calibration).__name__}, neither a DataSplit nor an array of "
                        "preprocessed images; pass one of those.") from None
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(model.input_shape[1:]):
        raise DataError(f"calibration images have shape {images.shape}; expected (N,) + {tuple(model.input_shape[1:])} "
                        "preprocessed images, or pass a DataSplit.")
    if not np.all(np.isfinite(images)):
        raise DataError("calibration images contain NaN or Inf; clean the calibration data.")
    if images.shape[0] < count:
        raise DataError(f"calibration asks for {count} images but only {images.shape[0]} were given; "
                        "lower the calibration count or pass more images.")
    return images[:count]


def quantize_post_training(model, calibration, count=200, per_channel=True, io_type="int8",
                           normalization=data_lib.DEFAULT_NORMALIZATION, seed=0):
    """Full-integer int8 TFLite flatbuffer (bytes) of a float Keras model.

    Args:
      model: float Keras model (deploy transforms are applied inside the conversion).
      calibration: a :class:`~pipelines.data.DataSplit` of real training images (``count``
        are drawn with ``seed`` and preprocessed with ``normalization``), or preprocessed
        float images (N, H, W, 3).
      count: number of representative images; fewer available is an error.
      per_channel: per-channel weight scales (default) or per-tensor.
      io_type: ``int8`` (default), ``uint8`` or ``float32`` model input/output.
    """
    check_model(model)
    io_type = check_io_type(io_type)
    count = checks.integer("calibration count", count, 1, fix="pass 1 or more images (e.g. 200)")
    per_channel = checks.boolean("per_channel", per_channel)
    seed = checks.seed("seed", seed)
    images = _calibration(model, calibration, count, normalization, seed)
    return tflite_export.convert(model, "int8", representative_data=images, calibration_count=count,
                                 io_type=io_type, per_channel=per_channel)


def debug_report(model, calibration, count=64, per_channel=True, normalization=data_lib.DEFAULT_NORMALIZATION,
                 seed=0):
    """Per-layer quantization error of the int8 model, from TFLite's ``QuantizationDebugger``.

    Returns rows (one per quantized op output) sorted worst first, each with ``op``,
    ``tensor``, ``scale``, ``rmse`` (float vs dequantized int8), ``rmse_over_scale`` (error in
    quantization steps; about 0.29 is the ideal rounding error), ``max_abs_error`` and
    ``mean_error`` (bias).
    """
    check_model(model)
    count = checks.integer("calibration count", count, 1, fix="pass 1 or more images (e.g. 64)")
    per_channel = checks.boolean("per_channel", per_channel)
    images = _calibration(model, calibration, count, normalization, seed)
    converter = tflite_export.make_converter(model, "int8", representative_data=images, calibration_count=len(images),
                                             io_type="float32", per_channel=per_channel)
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                         debug_dataset=converter.representative_dataset)
    debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    rows = []
    for rec in csv.DictReader(io.StringIO(buffer.getvalue())):
        mse = float(rec.get("mean_squared_error") or "nan")
        scale = float(rec.get("scale") or "nan")
        rmse = math.sqrt(mse) if mse >= 0 else float("nan")
        rows.append({"op": rec.get("op_name"), "tensor": rec.get("tensor_name"), "scale": scale,
                     "zero_point": int(float(rec.get("zero_point") or 0)), "rmse": rmse,
                     "rmse_over_scale": rmse / scale if scale > 0 else float("nan"),
                     "max_abs_error": float(rec.get("max_abs_error") or "nan"),
                     "mean_error": float(rec.get("mean_error") or "nan")})
    rows.sort(key=lambda r: -(r["rmse_over_scale"] if math.isfinite(r["rmse_over_scale"]) else -1))
    return rows


def format_debug_report(rows, limit=15):
    lines = [f"{'op':22s} {'tensor':48s} {'scale':>10s} {'RMSE':>10s} {'RMSE/scale':>10s}"]
    for r in rows[:limit]:
        lines.append(f"{(r['op'] or '')[:22]:22s} {(r['tensor'] or '')[-48:]:48s} {r['scale']:10.3g} "
                     f"{r['rmse']:10.3g} {r['rmse_over_scale']:10.3f}")
    lines.append(f"(worst {min(limit, len(rows))} of {len(rows)} quantized tensors; method: TFLite "
                 "QuantizationDebugger, float vs dequantized int8 on the calibration images; ~0.29 step = ideal)")
    return "\n".join(lines)


def save_tflite(path, content, model_name, normalization=data_lib.DEFAULT_NORMALIZATION, labels=None, extra=None):
    """Write a TFLite artifact atomically with its manifest (normalisation included)."""
    return tflite_export.write_artifact(path, content, model_name, "int8",
                                        normalization=data_lib.check_normalization(normalization),
                                        labels=list(labels) if labels is not None else None, extra=extra)
