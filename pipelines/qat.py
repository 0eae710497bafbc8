"""Quantization-aware training with tfmot for every zoo model.

One registry (:class:`KerasnetsQuantizeRegistry`) extends tfmot's default 8-bit registry
with every layer the zoo uses, so ``quantize_model`` works on any zoo model and tfmot's
layout transforms (Conv+BN(+ReLU) fusion, Add+ReLU, Concat, input quantization) still
apply to the stock layers:

=========================  ===================================================================
layer                      config
=========================  ===================================================================
DepthwiseConv2D            **fixed**: tfmot's default quantizes the (kh, kw, C, 1) kernel "per
                           axis" along the last axis, which has size 1, i.e. per tensor; TFLite
                           quantizes depthwise kernels per channel (axis 3 of (1, kh, kw, C)).
                           :class:`DepthwiseKernelQuantizer` gives one range per channel.
GroupConv2D (split form)   each group's kernel slice fake-quantized per output channel after
                           the in-layer split (:class:`GroupSliceQuantizeConfig`), activation
                           quantized: every group becomes a plain int8 CONV_2D.
Conv2D(groups>1)           tfmot default (per output channel).
ChannelShuffle, Slice      no quantization: reshape/transpose/slice keep the input's scale.
HardSwish, HardSigmoid     output quantized (TFLite fuses x*relu6(x+3)/6 into HARD_SWISH).
AdaptiveAveragePooling2D   output quantized (like AveragePooling2D).
BatchNormalization         output quantized when not fused into a conv (RepGhost's
                           identity-BN branch, the train form); in the deploy form the
                           branch is already folded into the depthwise conv.
Multiply (squeeze-excite)  output quantized.
Concatenate, Add, ReLU...  tfmot defaults (concat shares one output range).
=========================  ===================================================================

``quantize_scope()`` holds every class a saved QAT model needs.
"""
import contextlib
import functools
from unittest import mock

import numpy as np

from kerasnets import layers as kn_layers
from kerasnets.backend import keras, tf
from kerasnets.heads import float_head_layer_names
import tensorflow_model_optimization as tfmot  # noqa: E402  (after kerasnets.backend: Keras 2)
from tensorflow_model_optimization.python.core.quantization.keras import quantizers as tfmot_quantizers
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_configs as configs_8bit, default_8bit_quantize_registry as registry_8bit,
    default_8bit_quantize_scheme as scheme_8bit)
from kerasnets.pipelines.errors import ConfigError

L = keras.layers
MODES = ("full", "weights")


class DepthwiseKernelQuantizer(tfmot_quantizers.LastValueQuantizer):
    """8-bit symmetric per-channel quantizer for a depthwise kernel (kh, kw, C, M).

    Ranges are kept per TFLite channel ``c * M + m`` (the kernel viewed as (kh, kw, 1, C*M)),
    which is what the converter emits, instead of tfmot's per-last-axis (size M = 1).
    """

    def __init__(self, num_bits=8, per_axis=True, symmetric=True, narrow_range=True):
        super().__init__(num_bits=num_bits, per_axis=True, symmetric=True, narrow_range=True)

    def build(self, tensor_shape, name, layer):
        channels = int(tensor_shape[-2]) * int(tensor_shape[-1])
        mk = lambda suffix, value: layer.add_weight(name + suffix, shape=(channels,),
                                                    initializer=keras.initializers.Constant(value),
                                                    trainable=False)
        return {"min_var": mk("_min", -6.0), "max_var": mk("_max", 6.0)}

    def __call__(self, inputs, training, weights, **kwargs):
        shape = tf.shape(inputs)
        flat = tf.reshape(inputs, tf.concat([shape[:2], [1, -1]], 0))
        out = super().__call__(flat, training, weights, **kwargs)
        return tf.reshape(out, shape)


class DepthwiseConvQuantizeConfig(registry_8bit.Default8BitQuantizeConfig):
    """DepthwiseConv2D: per-channel kernel ranges (see :class:`DepthwiseKernelQuantizer`)."""

    def __init__(self, weight_attrs=("depthwise_kernel",), activation_attrs=("activation",), quantize_output=False):
        super().__init__(list(weight_attrs), list(activation_attrs), quantize_output)
        self.weight_quantizer = DepthwiseKernelQuantizer()

    def get_config(self):
        return {"weight_attrs": self.weight_attrs, "activation_attrs": self.activation_attrs,
                "quantize_output": self.quantize_output}


def fake_quantize_kernel(kernel, per_channel=True):
    """8-bit symmetric narrow-range fake quantization of an HWIO kernel, one range per output channel
    (TFLite's conv weights) or one for the tensor; the range is the kernel's own max |w|, as in tfmot's
    last-value weight quantizer."""
    axes = [0, 1, 2] if per_channel else None
    bound = tf.stop_gradient(tf.maximum(tf.reduce_max(tf.abs(kernel), axis=axes), 1e-8))
    if per_channel:
        return tf.quantization.fake_quant_with_min_max_vars_per_channel(kernel, -bound, bound, num_bits=8,
                                                                        narrow_range=True)
    return tf.quantization.fake_quant_with_min_max_vars(kernel, -bound, bound, num_bits=8, narrow_range=True)


class GroupSliceQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """GroupConv2D (split form): the kernel is fake-quantized per group slice, per output channel, inside
    the layer after its split (``GroupConv2D.kernel_slice_quantizer``); the activation as tfmot's default.

    Quantizing the whole kernel before the split (tfmot's way) makes the converter keep the split and a
    TRANSPOSE of every slice at run time (measured: 332 TRANSPOSE ops in a split-form AXSpine-Small), and
    per-channel ranges cannot pass the split at all.
    """

    def __init__(self, per_channel=True):
        self.per_channel = bool(per_channel)

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return [(layer.activation, tfmot_quantizers.MovingAverageQuantizer(
            num_bits=8, per_axis=False, symmetric=False, narrow_range=False))]

    def set_quantize_weights(self, layer, quantize_weights):
        layer.kernel_slice_quantizer = functools.partial(fake_quantize_kernel, per_channel=self.per_channel)

    def set_quantize_activations(self, layer, quantize_activations):
        layer.activation = quantize_activations[0]

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {"per_channel": self.per_channel}


class KerasnetsQuantizeRegistry(registry_8bit.Default8BitQuantizeRegistry):
    """tfmot's 8-bit registry plus the zoo's layers (see the module docstring)."""

    def __init__(self, disable_per_axis=False):
        super().__init__(disable_per_axis=disable_per_axis)
        info, no_quant = registry_8bit._QuantizeInfo, registry_8bit._no_quantize  # noqa: SLF001
        extra = [info(L.BatchNormalization, [], [], True), info(L.Multiply, [], [], True),
                 no_quant(kn_layers.ChannelShuffle), no_quant(kn_layers.ChannelSlice),
                 info(kn_layers.HardSwish, [], [], True), info(kn_layers.HardSigmoid, [], [], True),
                 info(kn_layers.AdaptiveAveragePooling2D, [], [], True)]
        for item in extra:
            self._layer_quantize_map[item.layer_type] = item
        if not disable_per_axis:
            self._layer_quantize_map[L.DepthwiseConv2D] = DepthwiseConvQuantizeConfig()
        self._layer_quantize_map[kn_layers.GroupConv2D] = GroupSliceQuantizeConfig(per_channel=not disable_per_axis)

    def get_quantize_config(self, layer):
        if type(layer) in (L.DepthwiseConv2D,) and not self._disable_per_axis:
            return DepthwiseConvQuantizeConfig()  # a fresh instance per layer
        return super().get_quantize_config(layer)


class WeightsOnlyQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Wraps a config and keeps only its weight quantizers (stage 2 of the staged flow)."""

    def __init__(self, inner):
        self.inner = inner

    def get_weights_and_quantizers(self, layer):
        return self.inner.get_weights_and_quantizers(layer)

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        self.inner.set_quantize_weights(layer, quantize_weights)

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {"inner": keras.utils.serialize_keras_object(self.inner)}

    @classmethod
    def from_config(cls, config):
        with quantize_scope():
            return cls(keras.utils.deserialize_keras_object(config["inner"]))


class _WeightsOnlyRegistry(KerasnetsQuantizeRegistry):
    def get_quantize_config(self, layer):
        return WeightsOnlyQuantizeConfig(super().get_quantize_config(layer))


class _NoLayoutTransform:
    """No graph rewrites: weights-only mode keeps activations, and the model input, float."""

    def apply(self, model, layer_quantize_map):
        return model, layer_quantize_map


class KerasnetsQuantizeScheme(scheme_8bit.Default8BitQuantizeScheme):
    """tfmot's default 8-bit scheme with :class:`KerasnetsQuantizeRegistry`.

    ``mode="weights"``: quantize weights only (no activation, output or input quantizers).
    """

    def __init__(self, disable_per_axis=False, mode="full"):
        super().__init__(disable_per_axis=disable_per_axis)
        self.mode = mode

    def get_layout_transformer(self):
        return _NoLayoutTransform() if self.mode == "weights" else super().get_layout_transformer()

    def get_quantize_registry(self):
        cls = _WeightsOnlyRegistry if self.mode == "weights" else KerasnetsQuantizeRegistry
        return cls(disable_per_axis=self._disable_per_axis)


_EXTRA_OBJECTS = {}


def register_quantize_objects(**objects):
    """Add classes (quantizers, configs) to :func:`quantize_scope` (used by pipelines.bitwidth)."""
    _EXTRA_OBJECTS.update(objects)


@contextlib.contextmanager
def quantize_scope():
    """Scope in which saved QAT models of the zoo load: tfmot's objects, our configs and
    quantizers, and the kerasnets custom layers."""
    objects = {"DepthwiseKernelQuantizer": DepthwiseKernelQuantizer,
               "DepthwiseConvQuantizeConfig": DepthwiseConvQuantizeConfig,
               "GroupSliceQuantizeConfig": GroupSliceQuantizeConfig,
               "WeightsOnlyQuantizeConfig": WeightsOnlyQuantizeConfig,
               **kn_layers.custom_objects(), **_EXTRA_OBJECTS}
    with tfmot.quantization.keras.quantize_scope(objects):
        yield


def calibrate_ranges(qat_model, images, batch_size=32):
    """Set every activation range of a QAT model to what ``images`` reach in its float network.

    tfmot starts each moving-average range at [-6, 6] and moves it toward the batch ranges by an EMA of
    decay 0.999, so after a short fine-tune the ranges are still near [-6, 6]: an int8 grid of step ~0.05
    on activations that may span a tenth of it, whose rounding then differs between the Keras QAT model
    and its converted int8 artifact by whole output classes. Calibrating first, as post-training
    quantization does, starts QAT from ranges that fit the data. Weights pass unquantized during the pass
    (their ranges are set by training); the images pass at inference (BatchNorm statistics unchanged).
    Returns the number of ranges set.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ConfigError(f"calibration images have shape {images.shape}; pass a non-empty (N, H, W, C) batch.")
    expected = tuple(qat_model.input_shape[1:])
    if any(e is not None and e != g for e, g in zip(expected, images.shape[1:])):
        raise ConfigError(f"calibration images are {images.shape[1:]} but the model takes {expected}; preprocess "
                          "them to the model's input size.")
    seen = {}
    range_classes = (tfmot_quantizers.MovingAverageQuantizer, tfmot_quantizers.AllValuesQuantizer)
    original_calls = {cls: cls.__call__ for cls in range_classes}

    def record(cls):
        def call(self, inputs, training, weights, **kwargs):
            if not isinstance(weights, dict) or "min_var" not in weights or self.per_axis:
                return original_calls[cls](self, inputs, training, weights, **kwargs)
            entry = seen.setdefault(id(weights["min_var"]), [weights["min_var"], weights["max_var"], self,
                                                             np.inf, -np.inf])
            entry[3] = min(entry[3], float(tf.reduce_min(inputs)))
            entry[4] = max(entry[4], float(tf.reduce_max(inputs)))
            return inputs
        return call

    def passthrough(self, inputs, training, weights, **kwargs):
        return inputs

    patches = [mock.patch.object(cls, "__call__", record(cls)) for cls in range_classes]
    patches.append(mock.patch.object(tfmot_quantizers.LastValueQuantizer, "__call__", passthrough))
    with contextlib.ExitStack() as stack:
        for patch in patches:
            stack.enter_context(patch)
        for start in range(0, len(images), batch_size):
            qat_model(tf.constant(images[start:start + batch_size]), training=False)
    for min_var, max_var, quantizer, low, high in seen.values():
        low, high = min(low, 0.0), max(high, 0.0)  # a range holds zero exactly (tfmot's rule too)
        if quantizer.symmetric:
            low, high = -max(-low, high), max(-low, high)
        if high - low < 1e-6:  # a tensor that was zero on every image: keep a tiny valid range
            high = low + 1e-6
        min_var.assign(low)
        max_var.assign(high)
    return len(seen)


def quantize_model(model, float_head=False, mode="full", per_channel=True, calibration=None):
    """A tfmot QAT model (``QuantizeWrapperV2`` layers) of a float zoo model, weights copied.

    Args:
      model: a float functional Keras model (train or deploy form).
      float_head: keep the classifier head float (:func:`kerasnets.heads.float_head_layer_names`:
        what follows the global pool, the cut the partitioner's ``float_head`` policy uses),
        quantize the backbone and the pool (the paper's NPU/CPU split).
      mode: ``full`` (weights and activations, 8 bit) or ``weights`` (weights only).
      per_channel: per-channel weight ranges (default) or per-tensor.
      calibration: images (N, H, W, C) preprocessed as for training; when given, the activation ranges
        start where these images put them (:func:`calibrate_ranges`) instead of at tfmot's [-6, 6].
    """
    if not isinstance(model, keras.Model):
        raise ConfigError(f"model is a {type(model).__name__}, not a Keras model; pass a float zoo model "
                          "(kerasnets.get_model builds one).")
    if not isinstance(mode, str) or mode not in MODES:
        raise ConfigError(f"QAT mode {mode!r} is unknown; use one of {MODES}.")
    for name, value in (("float_head", float_head), ("per_channel", per_channel)):
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r} is not True or False; pass a bool.")
    annotate = tfmot.quantization.keras.quantize_annotate_layer
    head = set(float_head_layer_names(model)) if float_head else set()
    if float_head and not head:
        raise ConfigError(f"model {model.name!r} has no pooled classifier head to keep float; "
                          "build it with include_top=True or drop float_head.")

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        return copy if layer.name in head else annotate(copy)
    with quantize_scope():
        annotated = keras.models.clone_model(model, clone_function=clone)
        annotated.set_weights(model.get_weights())
        quantized = tfmot.quantization.keras.quantize_apply(
            annotated, scheme=KerasnetsQuantizeScheme(disable_per_axis=not per_channel, mode=mode))
    if calibration is not None:
        calibrate_ranges(quantized, calibration)
    return quantized


def float_weights_from_qat(qat_model, float_model):
    """Copy a QAT model's float weights back into a float model of the same architecture
    (matched by layer name; ``quant_<name>`` wrappers looked through). Returns ``float_model``."""
    for name, value in (("qat_model", qat_model), ("float_model", float_model)):
        if not isinstance(value, keras.Model):
            raise ConfigError(f"{name} is a {type(value).__name__}, not a Keras model; pass a Keras model.")
    by_name = {}
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", None)
        if inner is not None and hasattr(layer, "quantize_config"):
            by_name[inner.name] = layer  # the wrapper holds the inner layer's variables
        else:
            by_name.setdefault(layer.name, layer)
    for layer in float_model.layers:
        if not layer.weights:
            continue
        source = by_name.get(layer.name)
        if source is None:
            raise ConfigError(f"the QAT model has no layer {layer.name!r}; it was not made from this float model.")
        values = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in source.weights}
        layer.set_weights([values[w.name.split("/")[-1].split(":")[0]] for w in layer.weights])
    return float_model


def quantized_layer_names(qat_model):
    """Names of the wrapped (quantized) layers of a QAT model."""
    return [l.layer.name for l in qat_model.layers if hasattr(l, "quantize_config")]


def load_qat_model(path):
    """Load a saved QAT model inside :func:`quantize_scope` (save QAT models as ``.h5``: the ``.keras``
    format does not restore tfmot's QuantizeLayer variables in tf_keras 2.21)."""
    with quantize_scope():
        return keras.models.load_model(path, compile=False)

