"""Learned per-layer weight bit-widths (the paper's method), with a size budget.

Each quantized layer's kernel goes through :class:`LearnedBitsQuantizer`: a trainable
``bits`` parameter, clamped to [1, 8] and rounded with a straight-through estimator, sets a
symmetric per-channel grid with ``max(2^(b-1) - 1, 1)`` positive levels (below 2 bits the
grid is {-s, 0, s}). The task loss pulls bits up (coarser grids cost accuracy); a budget
term ``strength * layers * relu(avg_bits - target)`` (average weighted by parameter count,
so it is a model-size budget) pulls them down. A callback tracks each layer's bits as a
moving average; the plan is that average rounded at the end.

Export: the float weights are snapped to each layer's planned grid and converted to int8
TFLite; since BN folding scales whole channels, each channel of the int8 kernel then holds
at most ``2^b - 1`` distinct values, so the weights are representable with the planned bits.
The plan (JSON: layer -> bits) travels beside the artifact.
"""
import numpy as np
from ai_edge_litert.interpreter import Interpreter

from kerasnets.backend import keras, tf
from kerasnets.heads import float_head_layer_names
from kerasnets.io import write_json
import tensorflow_model_optimization as tfmot  # noqa: E402
from kerasnets.pipelines import qat
from kerasnets.pipelines.errors import ConfigError

MIN_BITS, MAX_BITS = 1.0, 8.0


def _levels(bits):
    return tf.maximum(tf.pow(2.0, bits - 1.0) - 1.0, 1.0)


class LearnedBitsQuantizer(tfmot.quantization.keras.quantizers.Quantizer):
    """Symmetric per-channel weight quantizer whose bit-width is a trainable parameter."""

    def __init__(self, depthwise=False, initial_bits=8.0):
        self.depthwise = bool(depthwise)
        self.initial_bits = float(initial_bits)

    def build(self, tensor_shape, name, layer):
        bits = layer.add_weight(name + "_learned_bits", shape=(), trainable=True,
                                initializer=keras.initializers.Constant(self.initial_bits))
        ema = layer.add_weight(name + "_learned_bits_ema", shape=(), trainable=False,
                               initializer=keras.initializers.Constant(self.initial_bits))
        return {"bits": bits, "ema": ema}

    def __call__(self, inputs, training, weights, **kwargs):
        bits = tf.clip_by_value(weights["bits"], MIN_BITS, MAX_BITS)
        bits = bits + tf.stop_gradient(tf.round(bits) - bits)
        shape = tf.shape(inputs)
        w = tf.reshape(inputs, tf.concat([shape[:2], [1, -1]], 0)) if self.depthwise else inputs
        axes = list(range(len(inputs.shape) - 1))
        max_abs = tf.reduce_max(tf.abs(w), axis=axes, keepdims=True)
        scale = tf.where(max_abs > 0, max_abs, tf.ones_like(max_abs)) / _levels(bits)
        x = w / scale
        q = x + tf.stop_gradient(tf.round(x) - x)
        return tf.reshape(q * scale, shape)

    def get_config(self):
        return {"depthwise": self.depthwise, "initial_bits": self.initial_bits}

    def __eq__(self, other):
        return isinstance(other, LearnedBitsQuantizer) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self.__eq__(other)


class LearnedBitsQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
    """Wraps a layer's 8-bit config: kernels get :class:`LearnedBitsQuantizer`, activations stay 8 bit."""

    def __init__(self, inner, initial_bits=8.0):
        self.inner, self.initial_bits = inner, float(initial_bits)

    def get_weights_and_quantizers(self, layer):
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        return [(w, LearnedBitsQuantizer(depthwise, self.initial_bits))
                for w, _ in self.inner.get_weights_and_quantizers(layer)]

    def get_activations_and_quantizers(self, layer):
        return self.inner.get_activations_and_quantizers(layer)

    def set_quantize_weights(self, layer, quantize_weights):
        self.inner.set_quantize_weights(layer, quantize_weights)

    def set_quantize_activations(self, layer, quantize_activations):
        self.inner.set_quantize_activations(layer, quantize_activations)

    def get_output_quantizers(self, layer):
        return self.inner.get_output_quantizers(layer)

    def get_config(self):
        return {"inner": keras.utils.serialize_keras_object(self.inner), "initial_bits": self.initial_bits}

    @classmethod
    def from_config(cls, config):
        with qat.quantize_scope():
            return cls(keras.utils.deserialize_keras_object(config["inner"]), config.get("initial_bits", 8.0))


qat.register_quantize_objects(LearnedBitsQuantizer=LearnedBitsQuantizer,
                              LearnedBitsQuantizeConfig=LearnedBitsQuantizeConfig)


class _LearnedBitsRegistry(qat.KerasnetsQuantizeRegistry):
    def get_quantize_config(self, layer):
        config = super().get_quantize_config(layer)
        return LearnedBitsQuantizeConfig(config) if _has_kernel(layer) else config


def _has_kernel(layer):
    return isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))


class LearnedBitsScheme(qat.KerasnetsQuantizeScheme):
    def get_quantize_registry(self):
        return _LearnedBitsRegistry(disable_per_axis=False)


def quantize_model_learned_bits(model, float_head=False):
    """A QAT model whose kernels have learned bit-widths (activations 8 bit)."""
    head = set(float_head_layer_names(model)) if float_head else set()
    annotate = tfmot.quantization.keras.quantize_annotate_layer

    def clone(layer):
        copy = layer.__class__.from_config(layer.get_config())
        return copy if layer.name in head else annotate(copy)
    with qat.quantize_scope():
        annotated = keras.models.clone_model(model, clone_function=clone)
        annotated.set_weights(model.get_weights())
        return tfmot.quantization.keras.quantize_apply(annotated, scheme=LearnedBitsScheme())


def bit_variables(qat_model):
    """``{layer name: {"bits", "ema", "params"}}`` of a learned-bits QAT model."""
    out = {}
    for wrapper in qat_model.layers:
        inner = getattr(wrapper, "layer", None)
        if inner is None:
            continue
        found, shapes = {}, {}
        for w in wrapper.weights:
            short = w.name.split("/")[-1].split(":")[0]
            shapes[short] = w.shape
            if short.endswith("_learned_bits"):
                found["bits"], found["attr"] = w, short[:-len("_learned_bits")]
            elif short.endswith("_learned_bits_ema"):
                found["ema"] = w
        if "bits" in found:
            found["params"] = int(np.prod(shapes[found.pop("attr")]))
            out[inner.name] = found
    return out


def add_budget_loss(qat_model, target_bits, strength=1.0):
    """Add ``strength * layers * relu(avg_bits - target_bits)`` to the model's losses, where
    avg_bits is the parameter-weighted mean of the clamped bits. Returns the variables dict."""
    if not MIN_BITS <= target_bits <= MAX_BITS:
        raise ConfigError(f"target average bits {target_bits} must be within [1, 8].")
    variables = bit_variables(qat_model)
    if not variables:
        raise ConfigError("the model has no learned bit-width parameter; build it with quantize_model_learned_bits.")
    total = float(sum(v["params"] for v in variables.values()))
    weights = [(v["bits"], v["params"] / total) for v in variables.values()]
    count = float(len(weights))

    def budget():
        avg = tf.add_n([tf.clip_by_value(b, MIN_BITS, MAX_BITS) * share for b, share in weights])
        return strength * count * tf.nn.relu(avg - target_bits)
    qat_model.add_loss(budget)
    return variables


def target_bits_for_size(qat_model, size_bytes):
    """The average bits that make the kernels of ``qat_model`` fit in ``size_bytes``."""
    total = sum(v["params"] for v in bit_variables(qat_model).values())
    return float(np.clip(size_bytes * 8.0 / max(total, 1), MIN_BITS, MAX_BITS))


class BitsTracker(keras.callbacks.Callback):
    """Moving average of each layer's clamped bits after every training step; logs ``avg_bits``."""

    def __init__(self, qat_model, momentum=0.9):
        super().__init__()
        self.variables, self.momentum = bit_variables(qat_model), float(momentum)
        self.total = float(sum(v["params"] for v in self.variables.values()))

    def on_train_batch_end(self, batch, logs=None):
        for v in self.variables.values():
            b = tf.clip_by_value(v["bits"], MIN_BITS, MAX_BITS)
            v["ema"].assign(self.momentum * v["ema"] + (1.0 - self.momentum) * b)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["avg_bits"] = sum(float(v["ema"].numpy()) * v["params"] for v in self.variables.values()) / self.total


def bitwidth_plan(qat_model):
    """``{layer: bits}``: each layer's tracked average rounded, within [1, 8]."""
    return {name: int(np.clip(np.round(float(v["ema"].numpy())), MIN_BITS, MAX_BITS))
            for name, v in bit_variables(qat_model).items()}


def plan_summary(qat_model, plan):
    """Weight size under the plan vs 8 bit, and the parameter-weighted average bits."""
    variables = bit_variables(qat_model)
    params = {n: v["params"] for n, v in variables.items()}
    bits = sum(params[n] * b for n, b in plan.items())
    total = sum(params[n] for n in plan)
    return {"layers": len(plan), "params": int(total), "average_bits": bits / max(total, 1),
            "weight_bytes": int(np.ceil(bits / 8.0)), "weight_bytes_8bit": int(total),
            "method": "sum over quantized kernels of params * planned bits / 8 (biases and BN not counted)"}


def snap_to_plan(float_model, plan):
    """Put each planned layer's kernel of ``float_model`` on its symmetric per-channel b-bit grid
    (in place; the grid the QAT forward pass used). Returns ``float_model``."""
    for name, b in plan.items():
        layer = float_model.get_layer(name)
        attr = "depthwise_kernel" if isinstance(layer, keras.layers.DepthwiseConv2D) else "kernel"
        var = getattr(layer, attr)
        w = var.numpy().astype(np.float64)
        flat = w.reshape(w.shape[0], w.shape[1], 1, -1) if attr == "depthwise_kernel" else w
        axes = tuple(range(flat.ndim - 1))
        max_abs = np.max(np.abs(flat), axis=axes, keepdims=True)
        scale = np.where(max_abs > 0, max_abs, 1.0) / max(2.0 ** (b - 1) - 1.0, 1.0)
        var.assign((np.round(flat / scale) * scale).reshape(w.shape).astype(np.float32))
    return float_model


def write_plan(path, plan, summary, extra=None):
    """Write the plan JSON atomically: ``{"plan": {layer: bits}, "summary": {...}}``."""
    write_json(path, {"plan": plan, "summary": summary, **(extra or {})})


def tflite_levels_per_channel(content, layer_name):
    """Max number of distinct int8 values per channel of the TFLite kernel tensor(s) of a layer."""
    interpreter = Interpreter(model_content=content)
    worst = 0
    for d in interpreter.get_tensor_details():
        if d["dtype"] != np.int8 or len(d["shape"]) != 4 or f"/{layer_name}/" not in d["name"] + "/":
            continue
        try:
            values = interpreter.get_tensor(d["index"])
        except ValueError:
            continue
        axis = int(d["quantization_parameters"]["quantized_dimension"])
        per_channel = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
        worst = max(worst, max(len(np.unique(c)) for c in per_channel))
    return worst
