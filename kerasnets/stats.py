"""Parameter and MAC counts of Keras models, with the reference tables' conventions.

conv MACs = Hout * Wout * Cout * (Cin / groups) * kh * kw; depthwise = Hout * Wout * Cout
* kh * kw; dense = in * out per position; bias adds, BN, activations, pooling and
element-wise ops are not counted.
"""
import numpy as np

from kerasnets.backend import keras
from kerasnets.errors import UsageError

L = keras.layers


def _unwrap(layer):
    # tfmot's QuantizeWrapper keeps the original layer in `.layer`.
    return getattr(layer, "layer", layer) if type(layer).__name__.startswith("QuantizeWrapper") else layer


def _shape(shape):
    if isinstance(shape, list) and len(shape) == 1:
        shape = shape[0]
    return tuple(shape)


def layer_macs(layer):
    """Multiply-accumulates of one conv / depthwise / dense layer at its built input size, else 0."""
    inner = _unwrap(layer)
    if isinstance(inner, L.DepthwiseConv2D):
        out = _shape(layer.output_shape)
        kh, kw = inner.kernel_size
        return int(np.prod(out[1:])) * kh * kw
    if isinstance(inner, L.Conv2D):
        out = _shape(layer.output_shape)
        cin = _shape(layer.input_shape)[-1]
        kh, kw = inner.kernel_size
        return int(np.prod(out[1:])) * (cin // inner.groups) * kh * kw
    if isinstance(inner, L.Dense):
        cin = _shape(layer.input_shape)[-1]
        out = _shape(layer.output_shape)
        return int(np.prod(out[1:])) * cin
    return 0


def _check_model(model, what):
    if not isinstance(model, keras.Model):
        raise UsageError(f"{what} needs a Keras model, got {type(model).__name__}; pass e.g. "
                         "kerasnets.get_model('mobilenet_v2_100').")


def count_macs(model):
    """Total conv + dense MACs of ``model`` for one image at its input size."""
    _check_model(model, "count_macs")
    return sum(layer_macs(layer) for layer in model.layers)


def count_params(model):
    """Parameters as Keras counts them (BN moving statistics included)."""
    _check_model(model, "count_params")
    return int(model.count_params())


def randomize_batch_norm(model, seed=0, gamma=(0.5, 1.5), beta_std=0.2, mean_std=0.2, variance=(0.5, 1.5)):
    """Give every BatchNormalization non-trivial statistics (in place; returns ``model``).

    Untrained models have identity BNs, which hide folding and quantization mistakes; tests,
    micro-benchmarks and calibration use this so outputs depend on every statistic.
    """
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(*gamma, g.shape), rng.normal(0, beta_std, b.shape),
                               rng.normal(0, mean_std, m.shape), rng.uniform(*variance, v.shape)])
    return model
