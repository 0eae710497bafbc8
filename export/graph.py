"""The graph description the estimator and the partitioner share.

:func:`analyze` walks a functional Keras model once and describes every layer as an
:class:`Op` the way the TFLite converter will emit it: op kind, TFLite ops, shapes, MACs
(from :func:`kerasnets.stats.layer_macs`, so totals agree with the zoo's reference counts),
weights, and fusion (a BatchNorm folded into its conv, a ReLU fused into its conv or add, a
RepGhost identity branch re-parameterized away, Dropout removed).
"""
import dataclasses

import numpy as np

from kerasnets.backend import keras
from kerasnets.heads import float_head_layer_names
from kerasnets.stats import layer_macs
from kerasnets.errors import UsageError

L = keras.layers

CONV_KINDS = ("conv", "depthwise", "group_conv", "dense")
FUSABLE_ACTIVATIONS = ("relu", "relu6")
FREE_KINDS = ("input", "identity")
# Every kind :func:`analyze` gives an op: the one vocabulary of the estimator. Profiles list what an
# NPU supports by these names (export.profiles.SUPPORT_OPS, the non-free ones), the NPU cost prices
# each as a conv or a memory group, and the CPU predictors are keyed by them (export.costing.
# cpu_predictor_kind); tests/export/test_op_kinds.py checks that all of them agree. "unknown" is a
# layer the describer does not know (never placed on an NPU).
OP_KINDS = FREE_KINDS + CONV_KINDS + ("batchnorm", "activation", "softmax", "add", "multiply", "concat", "slice",
                                      "shuffle", "max_pool", "avg_pool", "global_pool", "adaptive_pool", "pad",
                                      "reshape")


@dataclasses.dataclass
class Op:
    """One Keras layer as the converter will emit it."""
    index: int
    name: str
    class_name: str
    kind: str
    tflite_ops: tuple
    inputs: list
    in_shapes: list
    out_shape: tuple
    macs: int = 0
    weights: int = 0
    biases: int = 0
    kernel: tuple = ()
    strides: tuple = ()
    groups: int = 1
    cin: int = 0
    cout: int = 0
    form: str = ""            # group conv: native | split; shuffle: low_rank | 5d
    activation: str = "linear"
    nonunit_dims: int = 0     # most non-unit dims of any tensor the op makes (batch 1)
    fused_into: str = ""      # name of the op this one is folded / fused into
    fused_note: str = ""
    consumers: list = dataclasses.field(default_factory=list)

    @property
    def is_free(self):
        return self.kind in FREE_KINDS or bool(self.fused_into)

    def elements_in(self):
        return sum(int(np.prod(s)) for s in self.in_shapes)

    def elements_out(self):
        return int(np.prod(self.out_shape)) if self.out_shape else 0


@dataclasses.dataclass
class ModelGraph:
    """The ops of a model in graph order, with the names of its inputs and outputs."""
    name: str
    ops: list
    inputs: list
    outputs: list
    float_head: tuple = ()  # names of the classifier head layers, from kerasnets.heads

    def __post_init__(self):
        self.by_name = {op.name: op for op in self.ops}

    def head_of(self, op):
        """The op that ``op`` is fused into (itself when not fused)."""
        while op.fused_into:
            op = self.by_name[op.fused_into]
        return op

    def total_macs(self):
        return sum(op.macs for op in self.ops)

    def float_head_start(self):
        """Index of the first op of the classifier head that follows the pooled features, or None.

        The head is :func:`kerasnets.heads.float_head_layer_names` of the analyzed model (the
        one definition QAT's ``float_head`` uses too); the global pool stays before the cut.
        """
        indices = [self.by_name[n].index for n in self.float_head if n in self.by_name]
        return min(indices) if indices else None


def _unwrap(layer):
    return getattr(layer, "layer", layer) if type(layer).__name__.startswith("QuantizeWrapper") else layer


def _shapes(shape):
    """Keras shape(s) -> list of tuples without the batch axis."""
    if isinstance(shape, list):
        return [tuple(int(d) if d is not None else 1 for d in s[1:]) for s in shape]
    return [tuple(int(d) if d is not None else 1 for d in shape[1:])]


def _act_name(activation):
    # tfmot's QuantizeAwareActivation keeps the original activation in `.activation`.
    while hasattr(activation, "activation") and not hasattr(activation, "__name__"):
        activation = activation.activation
    if type(activation).__name__ == "NoOpActivation":  # tfmot: activation quantized elsewhere (linear here)
        return "linear"
    name = getattr(activation, "__name__", str(activation))
    return {"linear": "linear", "relu": "relu", "relu6": "relu6", "softmax": "softmax", "sigmoid": "sigmoid",
            "tanh": "tanh", "swish": "swish", "silu": "swish", "hard_sigmoid": "hard_sigmoid"}.get(name, name)


def _nonunit(shape):
    return sum(1 for d in shape if d != 1)


def _describe(index, layer, inputs):
    inner = _unwrap(layer)
    cls = type(inner).__name__
    in_shapes = _shapes(layer.input_shape) if inputs else []
    out_shape = _shapes(layer.output_shape)[0]
    op = Op(index, layer.name, cls, "unknown", (cls.upper(),), inputs, in_shapes, out_shape)
    op.nonunit_dims = max([_nonunit(out_shape)] + [_nonunit(s) for s in in_shapes])
    if isinstance(inner, L.InputLayer):
        op.kind, op.tflite_ops = "input", ()
    elif cls == "QuantizeLayer":
        op.kind, op.tflite_ops = "identity", ()
    elif isinstance(inner, L.DepthwiseConv2D):
        op.kind, op.tflite_ops = "depthwise", ("DEPTHWISE_CONV_2D",)
        op.kernel, op.strides = tuple(inner.kernel_size), tuple(inner.strides)
        op.cin, op.cout = in_shapes[0][-1], out_shape[-1]
        op.groups = op.cin
        op.weights = int(np.prod(inner.kernel_size)) * op.cout
        op.biases = op.cout if inner.use_bias else 0
        op.activation = _act_name(inner.activation)
    elif isinstance(inner, L.Conv2D):
        op.kernel, op.strides = tuple(inner.kernel_size), tuple(inner.strides)
        op.cin, op.cout, op.groups = in_shapes[0][-1], out_shape[-1], int(inner.groups)
        op.weights = int(np.prod(inner.kernel_size)) * (op.cin // op.groups) * op.cout
        op.biases = op.cout if inner.use_bias else 0
        op.activation = _act_name(inner.activation)
        if cls == "GroupConv2D" and op.groups > 1:
            op.kind, op.form = "group_conv", "split"
            op.tflite_ops = ("SPLIT",) + ("CONV_2D",) * op.groups + ("CONCATENATION",)
        elif op.groups > 1:
            op.kind, op.form, op.tflite_ops = "group_conv", "native", ("CONV_2D",)
        else:
            op.kind, op.tflite_ops = "conv", ("CONV_2D",)
    elif isinstance(inner, L.Dense):
        op.kind, op.tflite_ops = "dense", ("FULLY_CONNECTED",)
        op.cin, op.cout = in_shapes[0][-1], out_shape[-1]
        op.weights, op.biases = op.cin * op.cout, (op.cout if inner.use_bias else 0)
        op.activation = _act_name(inner.activation)
        if op.activation == "softmax":
            op.tflite_ops = ("FULLY_CONNECTED", "SOFTMAX")
    elif isinstance(inner, L.BatchNormalization):
        op.kind, op.tflite_ops = "batchnorm", ("MUL", "ADD")
        op.cin = op.cout = out_shape[-1]
        op.biases = 2 * op.cout
    elif isinstance(inner, L.ReLU):
        slope = float(inner.negative_slope) if inner.negative_slope is not None else 0.0
        mx = None if inner.max_value is None else float(inner.max_value)
        op.kind = "activation"
        op.activation = "leaky_relu" if slope else ("relu6" if mx == 6.0 else ("relu" if mx is None else "relu_n"))
        op.tflite_ops = (op.activation.upper(),)
    elif isinstance(inner, L.Activation):
        op.activation = _act_name(inner.activation)
        op.kind = "softmax" if op.activation == "softmax" else ("identity" if op.activation == "linear" else "activation")
        op.tflite_ops = {"sigmoid": ("LOGISTIC",), "linear": ()}.get(op.activation, (op.activation.upper(),))
    elif cls in ("HardSwish", "HardSigmoid"):
        op.kind = "activation"
        op.activation = "hard_swish" if cls == "HardSwish" else "hard_sigmoid"
        op.tflite_ops = ("HARD_SWISH",) if cls == "HardSwish" else ("ADD", "MUL")
    elif isinstance(inner, L.Softmax):
        op.kind, op.activation, op.tflite_ops = "softmax", "softmax", ("SOFTMAX",)
    elif isinstance(inner, L.Add):
        op.kind, op.tflite_ops = "add", ("ADD",) * max(1, len(inputs) - 1)
    elif isinstance(inner, L.Multiply):
        op.kind, op.tflite_ops = "multiply", ("MUL",) * max(1, len(inputs) - 1)
    elif isinstance(inner, L.Concatenate):
        op.kind, op.tflite_ops = "concat", ("CONCATENATION",)
    elif cls == "ChannelSlice":
        op.kind, op.tflite_ops = "slice", ("STRIDED_SLICE",)
    elif cls == "ChannelShuffle":
        op.kind, op.form = "shuffle", inner.mode
        op.groups = int(inner.groups)
        h, w, c = in_shapes[0]
        inner_shape = (h * w, op.groups, c // op.groups) if inner.mode == "low_rank" else (h, w, op.groups, c // op.groups)
        op.nonunit_dims = max(op.nonunit_dims, _nonunit(inner_shape))
        op.tflite_ops = ("RESHAPE", "TRANSPOSE", "RESHAPE")
    elif isinstance(inner, L.MaxPooling2D):
        op.kind, op.tflite_ops = "max_pool", ("MAX_POOL_2D",)
        op.kernel, op.strides = tuple(inner.pool_size), tuple(inner.strides)
    elif isinstance(inner, L.AveragePooling2D):
        op.kind, op.tflite_ops = "avg_pool", ("AVERAGE_POOL_2D",)
        op.kernel, op.strides = tuple(inner.pool_size), tuple(inner.strides)
    elif isinstance(inner, (L.GlobalAveragePooling2D, L.GlobalMaxPooling2D)):
        op.kind = "global_pool"
        op.tflite_ops = ("MEAN",) if isinstance(inner, L.GlobalAveragePooling2D) else ("REDUCE_MAX",)
        op.kernel = tuple(in_shapes[0][:2])
    elif cls == "AdaptiveAveragePooling2D":
        op.kind = "adaptive_pool"
        (h, w, _), (oh, ow) = in_shapes[0], inner.output_size
        if (h, w) == (oh, ow):
            op.kind, op.tflite_ops = "identity", ()
        elif h % oh == 0 and w % ow == 0:
            op.tflite_ops = ("AVERAGE_POOL_2D",)
            op.kernel = (h // oh, w // ow)
        else:
            op.tflite_ops = ("STRIDED_SLICE", "MEAN") * (oh * ow) + ("PACK",) * (oh + 1)
    elif isinstance(inner, L.ZeroPadding2D):  # the torch convention's explicit symmetric padding
        op.kind, op.tflite_ops = "pad", ("PAD",)
    elif isinstance(inner, (L.Flatten, L.Reshape)):
        op.kind, op.tflite_ops = "reshape", ("RESHAPE",)
    elif isinstance(inner, (L.Dropout, L.SpatialDropout2D, L.GaussianNoise, L.GaussianDropout)):
        op.kind, op.tflite_ops = "identity", ()
    op.macs = int(layer_macs(layer))
    return op


def inbound_names(layer_config):
    """Names of the layers feeding a layer, from its entry in ``model.get_config()["layers"]``."""
    nodes = layer_config.get("inbound_nodes") or []
    if not nodes:
        return []
    node = nodes[0]
    if isinstance(node, dict):  # Keras 3 style config, not expected with tf_keras
        node = node.get("args", [])
    return [entry[0] for entry in node]


def _fuse(graph):
    """Mark what the converter folds away: BN into convs, ReLU into convs/adds, RepGhost identity BNs."""
    by = graph.by_name
    for op in graph.ops:
        for src in op.inputs:
            by[src].consumers.append(op.name)
    for name in graph.outputs:
        by[name].consumers.append("<output>")

    def sole(src, dst):
        return by[src].consumers == [dst]

    for op in graph.ops:
        if op.kind == "add" and len(op.inputs) == 2:
            a, b = (by[n] for n in op.inputs)
            for bn_dw, bn_id in ((a, b), (b, a)):
                if bn_dw.kind == bn_id.kind == "batchnorm" and by[bn_dw.inputs[0]].kind == "depthwise" \
                        and by[bn_dw.inputs[0]].inputs == bn_id.inputs and sole(bn_dw.name, op.name) \
                        and sole(bn_id.name, op.name):
                    dw = by[bn_dw.inputs[0]]
                    note = f"re-parameterized into {dw.name} (RepGhost: BN identity branch becomes the centre tap)"
                    bn_id.fused_into, bn_id.fused_note = dw.name, note
                    op.fused_into, op.fused_note = dw.name, note
                    break
        if op.kind == "batchnorm" and not op.fused_into:
            src = by[op.inputs[0]]
            if src.kind in CONV_KINDS and not src.fused_into and src.activation == "linear" and sole(src.name, op.name):
                op.fused_into, op.fused_note = src.name, f"folded into {src.name} (BatchNorm folding)"
                if not src.biases:
                    src.biases = src.cout
                op.biases = 0
        if op.kind == "activation" and op.activation in FUSABLE_ACTIVATIONS and not op.fused_into:
            src = by[op.inputs[0]]
            head = graph.head_of(src)
            if (head.kind in CONV_KINDS + ("add", "multiply")) and head.activation == "linear" \
                    and sole(src.name, op.name) and (src is head or src.fused_into == head.name):
                head.activation = op.activation
                op.fused_into, op.fused_note = head.name, f"fused into {head.name} as its {op.activation.upper()} activation"
    for op in graph.ops:
        if op.fused_into:
            op.fused_into = graph.head_of(by[op.fused_into]).name


def analyze(model):
    """Describe every layer of a functional Keras model (float, QAT-wrapped or deployed) as an :class:`Op`."""
    if not getattr(model, "_is_graph_network", False):
        raise UsageError(f"the estimator needs a functional Keras model, got {type(model).__name__}; "
                         "build it with the functional API (kerasnets.get_model does).")
    for t in model.inputs:
        shape = tuple(t.shape)[1:]
        if any(d is None for d in shape):
            raise UsageError(f"model {model.name} takes inputs of shape {shape}, not a static size; the estimator "
                             "costs one input size, so build it with a fixed input_shape, e.g. (224, 224, 3).")
    config = model.get_config()
    cfgs = {c["name"]: c for c in config["layers"]}
    ops = []
    for i, layer in enumerate(model.layers):
        cfg = cfgs.get(layer.name, {})
        ops.append(_describe(i, layer, inbound_names(cfg)))
    graph = ModelGraph(model.name, ops, [x[0] for x in config["input_layers"]],
                       [x[0] for x in config["output_layers"]], tuple(float_head_layer_names(model)))
    _fuse(graph)
    return graph
