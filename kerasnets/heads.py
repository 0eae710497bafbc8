"""Where the classifier head starts: the one definition of the float-head cut.

Both QAT (``kerasnets.pipelines.qat.quantize_model(float_head=True)`` keeps these layers float) and
the partitioner (``kerasnets.export.partition``'s ``float_head`` policy runs them on the CPU) use
:func:`float_head_layer_names`, so the trained model and the deployed split agree.

The cut follows the Edge TPU rule: the global pool runs well on the NPU (a MEAN or
AVERAGE_POOL_2D over the last feature map), so it stays in the int8 part; the head is what
follows the pooled features: dense, flatten/reshape, dropout, activations, batch norm,
adaptive pooling and 1x1 convolutions on a 1x1 map (a pooled conv head, as in MobileNetV3).
"""
from kerasnets.backend import keras

L = keras.layers

#: Keras layer classes (by name) that may belong to a classifier head after the pooled features.
HEAD_LAYER_TYPES = ("Dense", "Flatten", "Reshape", "Dropout", "SpatialDropout2D", "GaussianNoise",
                    "GaussianDropout", "Activation", "Softmax", "ReLU", "HardSwish", "HardSigmoid",
                    "BatchNormalization", "AdaptiveAveragePooling2D")


def _inner(layer):
    """The wrapped layer of a Keras ``Wrapper`` (e.g. a QAT wrapper), else the layer itself."""
    return layer.layer if isinstance(layer, L.Wrapper) else layer


def _inbound(layer):
    nodes = getattr(layer, "inbound_nodes", None) or []
    if not nodes:
        return []
    inbound = nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def _spatial(shape):
    shape = shape[0] if isinstance(shape, list) else shape
    return tuple(shape[1:3]) if shape is not None and len(shape) == 4 else None


def _is_head_layer(layer):
    inner = _inner(layer)
    if type(inner).__name__ in HEAD_LAYER_TYPES:
        return True
    pooled_conv = (type(inner) is L.Conv2D or type(inner).__name__ == "GroupConv2D") and int(inner.groups) == 1
    return pooled_conv and _spatial(layer.input_shape) == (1, 1) and _spatial(layer.output_shape) == (1, 1)


def float_head_layer_names(model):
    """Names (in graph order) of the classifier head that follows the pooled features, or [].

    The head is the longest chain of single-input head layers (see :data:`HEAD_LAYER_TYPES`)
    ending at the model's only output; it is empty when the model has several outputs, when
    the chain reaches the model input, or when a layer after the head's start is not in it.
    """
    if len(model.outputs) != 1:
        return []
    layer, chain = model.layers[-1], []
    while _is_head_layer(layer):
        inbound = _inbound(layer)
        if len(inbound) != 1:
            break
        chain.append(layer.name)
        layer = inbound[0]
        if isinstance(layer, L.InputLayer):
            return []
    if not chain:
        return []
    names = [l.name for l in model.layers]
    start = min(names.index(n) for n in chain)
    if set(names[start:]) != set(chain):
        return []
    return names[start:]
