"""The paper's two quantizers in numpy, as a reference, and a per-layer comparison report.

* symmetric (TensorRT style): clip range +-max|x|, ``scale = max|x| / (2^(b-1) - 1)``,
  ``q = clip(round(x / scale), -2^(b-1), 2^(b-1) - 1)``; zero point 0. Wastes half the codes
  on a one-sided (post-ReLU) distribution.
* asymmetric: [min, max] (widened to contain 0) mapped onto the integer range with a zero
  point, ``q = clip(round(x / scale) + zp)``; the zero point is an integer, so real 0 is
  represented exactly (zero padding stays exact).

``bits=1`` is the binary case: ``q = sign(x)`` (0 -> +1), ``scale = mean|x|``.
"""
import dataclasses

import numpy as np

import kerasnets
from kerasnets.backend import keras
from kerasnets.pipelines.errors import ConfigError


@dataclasses.dataclass
class Quantized:
    """Integers ``q`` and the (broadcastable) ``scale`` and ``zero_point`` that map them back."""
    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray

    def dequantize(self):
        return (self.q.astype(np.float64) - self.zero_point) * self.scale


def _reduce(x, fn, axis):
    """fn over every axis except ``axis`` (per-channel), or over all (per-tensor), keepdims."""
    if axis is None:
        return fn(x, axis=None, keepdims=True)
    axis = axis % x.ndim
    others = tuple(i for i in range(x.ndim) if i != axis)
    return fn(x, axis=others, keepdims=True)


def quantize_symmetric(x, bits=8, axis=None, narrow_range=False):
    """Symmetric quantization of ``x`` (per tensor, or per channel along ``axis``)."""
    x = np.asarray(x, np.float64)
    if bits < 1:
        raise ConfigError(f"bits={bits} must be at least 1.")
    if bits == 1:
        scale = _reduce(np.abs(x), np.mean, axis)
        scale = np.where(scale > 0, scale, 1.0)
        return Quantized(np.where(x >= 0, 1, -1).astype(np.int32), scale, np.zeros_like(scale))
    qmax = 2 ** (bits - 1) - 1
    qmin = -qmax if narrow_range else -(2 ** (bits - 1))
    max_abs = _reduce(np.abs(x), np.max, axis)
    scale = np.where(max_abs > 0, max_abs / qmax, 1.0)
    q = np.clip(np.round(x / scale), qmin, qmax).astype(np.int32)
    return Quantized(q, scale, np.zeros_like(scale))


def quantize_asymmetric(x, bits=8, axis=None):
    """Asymmetric (min/max, zero point) quantization onto the signed ``bits`` range."""
    x = np.asarray(x, np.float64)
    if bits < 1:
        raise ConfigError(f"bits={bits} must be at least 1.")
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo = np.minimum(_reduce(x, np.min, axis), 0.0)
    hi = np.maximum(_reduce(x, np.max, axis), 0.0)
    scale = np.where(hi > lo, (hi - lo) / (qmax - qmin), 1.0)
    zero_point = np.clip(np.round(qmin - lo / scale), qmin, qmax)
    q = np.clip(np.round(x / scale) + zero_point, qmin, qmax).astype(np.int32)
    return Quantized(q, scale, zero_point)


def fake_quantize(x, scheme="symmetric", bits=8, axis=None):
    """Quantize then dequantize (float in, float out on the quantization grid)."""
    fn = {"symmetric": quantize_symmetric, "asymmetric": quantize_asymmetric}[scheme]
    return fn(x, bits=bits, axis=axis).dequantize()


def mse(reference, approx):
    return float(np.mean((np.asarray(reference, np.float64) - approx) ** 2))


def sqnr_db(reference, approx):
    """Signal-to-quantization-noise ratio in dB (inf when exact)."""
    reference = np.asarray(reference, np.float64)
    noise = np.sum((reference - approx) ** 2)
    signal = np.sum(reference ** 2)
    if noise == 0:
        return float("inf")
    return float(10 * np.log10(max(signal, 1e-30) / noise))


_WEIGHT_ATTRS = {"Conv2D": "kernel", "GroupConv2D": "kernel", "DepthwiseConv2D": "depthwise_kernel",
                 "Dense": "kernel"}
_ACTIVATION_TYPES = ("ReLU", "HardSwish", "HardSigmoid", "Activation", "Add", "Concatenate")


def _row(layer, kind, values, bits, axis):
    sym = fake_quantize(values, "symmetric", bits, axis)
    asym = fake_quantize(values, "asymmetric", bits, axis)
    row = {"layer": layer, "kind": kind, "elements": int(np.size(values)),
           "min": float(np.min(values)), "max": float(np.max(values)),
           "symmetric_mse": mse(values, sym), "asymmetric_mse": mse(values, asym),
           "symmetric_sqnr_db": sqnr_db(values, sym), "asymmetric_sqnr_db": sqnr_db(values, asym)}
    if row["symmetric_mse"] == row["asymmetric_mse"]:
        row["winner"] = "tie"
    else:
        row["winner"] = "symmetric" if row["symmetric_mse"] < row["asymmetric_mse"] else "asymmetric"
    return row


def compare_quantizers(model, images, bits=8, per_channel_weights=False, deploy=True, max_images=32):
    """Per-layer comparison of the two quantizers on a model's real weights and activations.

    Weights are those of the deployed model (BN folded, RepGhost fused: what the converter
    quantizes); activations are the outputs of conv/dense/activation/add/concat layers on
    ``images`` (preprocessed, (N, H, W, 3)). Returns a list of dict rows with MSE and SQNR
    of both quantizers and the ``winner``.
    """
    if deploy:
        model = kerasnets.deploy(model)
    rows = []
    probes = []
    for layer in model.layers:
        kind = type(layer).__name__
        attr = _WEIGHT_ATTRS.get(kind)
        if attr is not None:
            kernel = getattr(layer, attr).numpy()
            axis = (-2 if kind == "DepthwiseConv2D" else -1) if per_channel_weights else None
            rows.append(_row(layer.name, "weights", kernel, bits, axis))
        if attr is not None or kind in _ACTIVATION_TYPES:
            probes.append(layer)
    if probes:
        probe_model = keras.Model(model.inputs, [l.output for l in probes])
        outputs = probe_model.predict(np.asarray(images[:max_images], np.float32), verbose=0, batch_size=16)
        outputs = outputs if isinstance(outputs, list) else [outputs]
        for layer, values in zip(probes, outputs):
            rows.append(_row(layer.name, "activations", values, bits, None))
    return rows


def format_comparison(rows):
    """A plain-text table of :func:`compare_quantizers` rows."""
    lines = [f"{'layer':40s} {'kind':11s} {'sym SQNR dB':>11s} {'asym SQNR dB':>12s}  winner"]
    for r in rows:
        lines.append(f"{r['layer'][:40]:40s} {r['kind']:11s} {r['symmetric_sqnr_db']:11.2f} "
                     f"{r['asymmetric_sqnr_db']:12.2f}  {r['winner']}")
    wins = sum(r["winner"] == "asymmetric" for r in rows)
    lines.append(f"asymmetric wins {wins} of {len(rows)} rows (method: numpy fake-quantization, "
                 "SQNR = 10 log10(sum x^2 / sum (x - q(x))^2)).")
    return "\n".join(lines)
