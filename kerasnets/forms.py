"""The two forms of a grouped convolution, and moving a model (and its weights) between them.

``native`` is one ``Conv2D(groups=g)``; ``split`` is :class:`kerasnets.layers.GroupConv2D`
(split -> one conv per group -> concat). Both hold the same variables (a kernel of shape
(kh, kw, cin/g, cout) and an optional bias) and compute the same function, so a model can be
rebuilt in the other form from its own config and take its weights unchanged: train in the
form that is fast on the training device, export in the form the target wants.
"""
from kerasnets.backend import keras
from kerasnets.builder import GROUP_CONV_MODES
from kerasnets.errors import ModelConfigError
from kerasnets.layers import GroupConv2D, custom_objects

FORMS = GROUP_CONV_MODES  # ("native", "split")


def _inner(layer):
    return getattr(layer, "layer", layer)  # through a tfmot QuantizeWrapper


def grouped_convs(model):
    """Names of the grouped (not depthwise) convolutions of ``model``, either form."""
    out = []
    for layer in model.layers:
        inner = _inner(layer)
        if isinstance(inner, keras.layers.Conv2D) and int(getattr(inner, "groups", 1) or 1) > 1:
            out.append(layer.name)
    return out


def group_conv_form(model):
    """"native", "split", "mixed", or None when ``model`` has no grouped convolution."""
    kinds = set()
    for layer in model.layers:
        inner = _inner(layer)
        if isinstance(inner, keras.layers.Conv2D) and int(getattr(inner, "groups", 1) or 1) > 1:
            kinds.add("split" if isinstance(inner, GroupConv2D) else "native")
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _convert_layer_config(entry, form):
    cls = entry.get("class_name")
    cfg = entry.get("config", {})
    if int(cfg.get("groups", 1) or 1) <= 1:
        return False
    if form == "split" and cls == "Conv2D":
        entry.update(class_name="GroupConv2D", module="kerasnets.layers", registered_name="kerasnets>GroupConv2D")
        return True
    if form == "native" and cls in ("GroupConv2D", "kerasnets>GroupConv2D"):
        entry.update(class_name="Conv2D", module="keras.layers", registered_name=None)
        return True
    return False


def carry_weights(source, target):
    """Copy every weight of ``source`` into ``target``, layer by layer (matched by name), where the two are
    the same model in (possibly) different group-conv forms. Refuses (:class:`ModelConfigError`) models whose
    layers or weight shapes differ. Returns ``target``."""
    theirs = {layer.name: layer for layer in source.layers}
    if len(theirs) != len(target.layers) or any(layer.name not in theirs for layer in target.layers):
        raise ModelConfigError(f"cannot carry weights from {source.name} to {target.name}: their layers differ; "
                               "pass the same model in the two group-conv forms.")
    for layer in target.layers:
        src = theirs[layer.name].get_weights()
        ours = layer.get_weights()
        if len(src) != len(ours) or any(a.shape != b.shape for a, b in zip(src, ours)):
            raise ModelConfigError(f"cannot carry weights of layer {layer.name!r} from {source.name} to "
                                   f"{target.name}: its weights have other shapes.")
        if src:
            layer.set_weights(src)
    return target


def to_form(model, form):
    """``model`` rebuilt with its grouped convolutions in ``form`` ("native" or "split"), holding the same
    weights (so the same outputs). Returns ``model`` itself when it is already in that form or has no grouped
    convolution. Works on any functional model (not on QAT-wrapped ones: quantize the converted float model)."""
    if form not in FORMS:
        raise ModelConfigError(f"group_conv form {form!r} is unknown; use one of {FORMS}.")
    current = group_conv_form(model)
    if current is None or current == form:
        return model
    if any(_inner(layer) is not layer for layer in model.layers):
        raise ModelConfigError(f"{model.name} is a quantization-aware (wrapped) model; convert the float model "
                               f"to group_conv={form!r} first, then quantize it.")
    config = model.get_config()
    changed = sum(_convert_layer_config(entry, form) for entry in config["layers"])
    if not changed:
        raise ModelConfigError(f"{model.name} has grouped convolutions this function cannot convert "
                               f"to group_conv={form!r}.")
    new = model.__class__.from_config(config, custom_objects=custom_objects())
    return carry_weights(model, new)


def weights_file_form(path):
    """The group-conv form a Keras weights file was saved from: "split", "native", or None when the file does
    not tell (a legacy by-name HDF5 file, which loads into either form; or a model without grouped convs).

    ``*.weights.h5`` files (the Keras 3 layout tf_keras writes) name each layer's weights after its class and
    position (``conv2d_3``, ``group_conv2d_1``), so they load only into a model in the form they were saved from.
    """
    import h5py  # tf_keras's own dependency

    with h5py.File(path, "r") as f:
        if "layer_names" in f.attrs or "layers" not in f:
            return None
        names = list(f["layers"].keys())
    if any(n == "group_conv2d" or n.startswith("group_conv2d_") for n in names):
        return "split"
    return "native"


def load_weights(model, path):
    """``model.load_weights(path)`` whatever group-conv form ``path`` was saved from: a file of the other form is
    loaded into ``model`` rebuilt in that form and carried across (same weights). Returns ``model``."""
    saved, ours = weights_file_form(path), group_conv_form(model)
    if saved is None or ours in (None, saved) or ours == "mixed" or \
            any(_inner(layer) is not layer for layer in model.layers):
        model.load_weights(path)
        return model
    other = to_form(model, saved)
    other.load_weights(path)
    return carry_weights(other, model)
