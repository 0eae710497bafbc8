"""Deploy transforms: RepGhost re-parameterization and BatchNorm folding.

Both work on the functional graph, by pattern, so they apply to any model of the zoo
(and to user models built from the same layers):

* re-parameterization: ``Add(BN_a(DepthwiseConv(t)), BN_b(t))`` (a RepGhost module's
  cheap branch plus its BN-identity branch) becomes one depthwise conv with bias whose
  centre tap carries the identity branch;
* BN folding: ``BN(Conv(x))`` becomes ``Conv'(x)`` with scaled kernel and a bias, for
  Conv2D (grouped too), DepthwiseConv2D, GroupConv2D and Dense, when the conv has no
  activation and nothing else reads its output.
"""
import copy

import numpy as np

from kerasnets import layers as kn_layers
from kerasnets.backend import keras
from kerasnets.errors import ModelConfigError

L = keras.layers
_FOLDABLE = ("Conv2D", "DepthwiseConv2D", "GroupConv2D", "Dense")


def _inbound(layer_cfg):
    nodes = layer_cfg["inbound_nodes"]
    if len(nodes) > 1:
        raise ModelConfigError(f"layer {layer_cfg['name']} is shared between several calls; "
                               "deploy() needs each layer used once.")
    return [t[0] for t in nodes[0]] if nodes else []


def _bn_scale_shift(bn):
    """Per-channel (scale, shift) of an inference-mode BatchNormalization."""
    weights = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in bn.weights}
    var = weights["moving_variance"]
    gamma = weights.get("gamma", np.ones_like(var))
    beta = weights.get("beta", np.zeros_like(var))
    scale = gamma / np.sqrt(var + bn.epsilon)
    return scale, beta - weights["moving_mean"] * scale


def _conv_weights(layer):
    kernel = layer.weights[0].numpy()
    bias = layer.weights[1].numpy() if layer.use_bias else None
    return kernel, bias


def _scale_kernel(layer, kernel, scale):
    if isinstance(layer, L.DepthwiseConv2D):
        return kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    return kernel * scale  # output channels are the last axis of Conv2D / GroupConv2D / Dense


def deploy(model, reparameterize=True, fold_batch_norm=True):
    """Return the inference form of ``model``: same inputs and outputs, fewer layers.

    Args:
      model: a functional tf_keras model (float; not QAT-wrapped).
      reparameterize: fuse every RepGhost BN-identity branch into its depthwise conv.
      fold_batch_norm: fold every BatchNorm that follows a conv/dense into it.
    """
    if not isinstance(model, keras.Model) or not hasattr(model, "_is_graph_network") or not model._is_graph_network:
        raise ModelConfigError(f"deploy() needs a functional Keras model, got {type(model).__name__}.")
    config = copy.deepcopy(model.get_config())
    cfgs = {c["name"]: c for c in config["layers"]}
    inputs = {name: _inbound(c) for name, c in cfgs.items()}
    consumers = {name: [] for name in cfgs}
    for name, ins in inputs.items():
        for src in ins:
            consumers[src].append(name)
    for out in config["output_layers"]:
        consumers[out[0]].append("<output>")
    by_name = {layer.name: layer for layer in model.layers}
    removed, rename, new_weights = set(), {}, {}

    def class_of(name):
        return cfgs[name]["class_name"]

    def only_feeds(name, target):
        return consumers[name] == [target]

    if reparameterize:
        for name in list(cfgs):
            if class_of(name) != "Add" or len(inputs[name]) != 2:
                continue
            for a, b in (inputs[name], inputs[name][::-1]):
                if not (class_of(a) == class_of(b) == "BatchNormalization"):
                    continue
                dw = inputs[a][0]
                if (class_of(dw) != "DepthwiseConv2D" or inputs[dw] != inputs[b] or not only_feeds(a, name)
                        or not only_feeds(b, name) or not only_feeds(dw, a)):
                    continue
                layer = by_name[dw]
                kh, kw = layer.kernel_size
                if (layer.depth_multiplier != 1 or tuple(layer.strides) != (1, 1) or kh % 2 == 0
                        or kw % 2 == 0 or layer.padding != "same" or layer.activation.__name__ != "linear"):
                    continue
                kernel, bias = _conv_weights(layer)
                s_a, t_a = _bn_scale_shift(by_name[a])
                s_b, t_b = _bn_scale_shift(by_name[b])
                kernel = kernel * s_a.reshape(-1, 1)
                kernel[kh // 2, kw // 2, :, 0] += s_b
                bias = (0 if bias is None else bias * s_a) + t_a + t_b
                new_weights[dw] = [kernel, bias]
                cfgs[dw]["config"]["use_bias"] = True
                removed.update((a, b, name))
                rename[name] = dw
                break

    if fold_batch_norm:
        for name in list(cfgs):
            if class_of(name) != "BatchNormalization" or name in removed or len(inputs[name]) != 1:
                continue
            conv = inputs[name][0]
            if class_of(conv) not in _FOLDABLE or not only_feeds(conv, name):
                continue
            if cfgs[conv]["config"].get("activation", "linear") != "linear":
                continue
            axis = cfgs[name]["config"]["axis"]
            axis = axis[0] if isinstance(axis, (list, tuple)) else axis
            if axis not in (-1, len(by_name[name].input_shape) - 1):
                continue
            layer = by_name[conv]
            kernel, bias = new_weights.get(conv) or _conv_weights(layer)
            scale, shift = _bn_scale_shift(by_name[name])
            kernel = _scale_kernel(layer, kernel, scale)
            bias = shift if bias is None else bias * scale + shift
            new_weights[conv] = [kernel, bias]
            cfgs[conv]["config"]["use_bias"] = True
            removed.add(name)
            rename[name] = conv

    def resolve(name):
        while name in rename:
            name = rename[name]
        return name

    config["layers"] = [c for c in config["layers"] if c["name"] not in removed]
    for c in config["layers"]:
        for node in c["inbound_nodes"]:
            for t in node:
                t[0] = resolve(t[0])
        c.pop("build_config", None)
    for out in config["output_layers"]:
        out[0] = resolve(out[0])
    deployed = keras.Model.from_config(config, custom_objects=kn_layers.custom_objects())
    for layer in deployed.layers:
        weights = new_weights.get(layer.name)
        layer.set_weights(weights if weights is not None else by_name[layer.name].get_weights())
    return deployed
