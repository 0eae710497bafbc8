"""Pretrained checkpoints: timm, torchvision, Megvii and Keras Applications weights into kerasnets models.

Public API (re-exported by ``kerasnets``)::

    model = kerasnets.get_model("mobilenet_v2_100", weights="hf://timm/mobilenetv2_100.ra_in1k")
    model = kerasnets.get_model("shufflenet_v2_x0_5", weights="shufflenetv2_x0.5-f707e7126e.pth")
    kerasnets.load_weights(model, "model.safetensors")      # into an existing model
    kerasnets.preprocessing_for(model)                        # mean / std / crop of the weights

Loading is strict (like ``torch.nn.Module.load_state_dict(strict=True)``): every checkpoint
tensor is used, every Keras weight is filled and every shape is checked before anything is
assigned, so a failed load leaves the model untouched. Convolution kernels are transposed
from PyTorch's OIHW to Keras' HWIO (depthwise (C, 1, kh, kw) -> (kh, kw, C, 1)), Linear
weights from (out, in) to (in, out), BatchNorm's weight / bias / running_mean / running_var
become gamma / beta / moving_mean / moving_variance, ``num_batches_tracked`` is dropped.
"""
import json
import logging
import os

import numpy as np

from kerasnets.backend import keras
from kerasnets.builder import model_convention
from kerasnets.checkpoints import keymaps
from kerasnets.checkpoints.sources import (HUB_PREFIX, TORCH_EXTENSIONS, Checkpoint, read_checkpoint,
                                           timm_preprocessing, torchvision_preprocessing)
from kerasnets.errors import CheckpointError

L = keras.layers
_log = logging.getLogger("kerasnets")
_PREPROCESSING_ATTR = "_kerasnets_preprocessing"
_SHOW = 5  # keys shown in a missing / unexpected list
# Families whose graph is the same function in both conventions (no BatchNorm, no strided padding).
_CONVENTION_FREE = ("vgg16",)

__all__ = ["load_weights", "preprocessing_for", "model_with_weights", "is_checkpoint", "Checkpoint",
           "read_checkpoint", "CheckpointError"]


# ------------------------------------------------------------------ preprocessing ----
def _default_preprocessing(model=None):
    size = None
    if model is not None and len(model.inputs) == 1 and len(model.inputs[0].shape) == 4:
        size = [d for d in model.inputs[0].shape[1:3]]
    return {"source": "none (random initialisation): kerasnets' default, [0, 255] pixels mapped to [-1, 1]",
            "channel_order": "RGB", "mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5],
            "interpolation": "bilinear", "crop_pct": 1.0, "input_size": size}


def _source_preprocessing(checkpoint, family, style):
    if checkpoint.preprocessing:
        return checkpoint.preprocessing
    if style == "torchvision":
        return torchvision_preprocessing(f"torchvision {family}")
    if style == "megvii":  # Megvii's ToBGRTensor: OpenCV BGR pixels, no scaling or normalization
        return {"source": "Megvii ShuffleNet-Series", "channel_order": "BGR", "mean": [0.0, 0.0, 0.0],
                "std": [1.0, 1.0, 1.0], "interpolation": "bilinear", "crop_pct": 0.875, "input_size": [224, 224]}
    if style == "keras":
        if family == "vgg16":  # 'caffe' mode of keras.applications.vgg16.preprocess_input
            return {"source": "Keras Applications vgg16", "channel_order": "BGR",
                    "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0], "interpolation": "bilinear",
                    "crop_pct": 1.0, "input_size": [224, 224]}
        return {"source": f"Keras Applications {family}", "channel_order": "RGB", "mean": [127.5] * 3,
                "std": [127.5] * 3, "interpolation": "bilinear", "crop_pct": 1.0, "input_size": [224, 224]}
    arch = checkpoint.architecture or family
    tf_port = (checkpoint.convention == "tf")  # timm's tf_* ports use Inception's 0.5 / 0.5
    cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)} if tf_port else {}
    return timm_preprocessing(cfg, arch)


def preprocessing_for(model):
    """The input preprocessing ``model``'s weights expect, as a dict.

    Keys: ``mean`` and ``std`` (per channel, in [0, 255] pixel units: the network sees
    ``(pixels - mean) / std``, the form the pipelines' ``normalization`` takes),
    ``channel_order`` (``"RGB"``, or ``"BGR"`` for Megvii and Keras' VGG16), ``interpolation``
    of the resize, ``crop_pct`` (centre crop fraction at evaluation), ``input_size`` (the
    resolution the weights were trained at) and ``source``. A model that was not loaded from
    a checkpoint gets kerasnets' default: RGB pixels mapped to [-1, 1] (mean = std = 127.5),
    bilinear resize, no crop. Recorded on the model object (in-process).
    """
    if not isinstance(model, keras.Model):
        raise CheckpointError(f"preprocessing_for() needs a Keras model, got {type(model).__name__}; pass a model "
                              "from kerasnets.get_model.")
    recorded = getattr(model, _PREPROCESSING_ATTR, None)
    return json.loads(recorded) if recorded else _default_preprocessing(model)


def _record_preprocessing(model, preprocessing):
    setattr(model, _PREPROCESSING_ATTR, json.dumps(preprocessing))


# ------------------------------------------------------------- tensor conversion ----
def _weight_attrs(layer):
    """Names of the weight attributes of a Keras layer, in the order they are filled."""
    if isinstance(layer, L.BatchNormalization):
        names = ["gamma", "beta", "moving_mean", "moving_variance"]
    elif isinstance(layer, L.DepthwiseConv2D):
        names = ["depthwise_kernel", "bias"]
    elif isinstance(layer, (L.Conv2D, L.Dense)):
        names = ["kernel", "bias"]
    else:
        names = []
    return [n for n in names if getattr(layer, n, None) is not None]


_BN_SOURCE = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def _torch_layout(layer, attr, shape):
    """The PyTorch shape a Keras weight of ``shape`` corresponds to (for messages)."""
    if attr == "depthwise_kernel":
        return (shape[2], shape[3], shape[0], shape[1])
    if attr == "kernel" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if attr == "kernel" and len(shape) == 2:
        return (shape[1], shape[0])
    return tuple(shape)


def _convert(slot, layer, attr, value, model):
    """Checkpoint tensor -> the Keras layout of ``layer.<attr>``."""
    if slot.kind == "keras_logits" and attr == "kernel":
        return value.reshape(value.shape[-2], value.shape[-1]) if value.ndim == 4 else value
    if slot.kind in ("keras", "keras_logits", "bn"):
        return value
    if attr == "depthwise_kernel":
        return value.transpose(2, 3, 0, 1) if value.ndim == 4 else value
    if attr == "kernel" and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if attr == "kernel" and value.ndim == 2:
        if slot.kind == "dense_nchw":  # PyTorch flattened (C, h, w); Keras flattens (h, w, C)
            h, w, c = _flatten_source_shape(model, layer)
            if value.shape[1] == h * w * c:  # else: left for the shape check to report
                value = value.reshape(value.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(value.shape[0], -1)
        return value.T
    return value


def _flatten_source_shape(model, dense):
    """(h, w, c) of the feature map that a Flatten turns into ``dense``'s input."""
    for layer in model.layers:
        if isinstance(layer, L.Flatten) and layer.output is dense.input:
            h, w, c = layer.input.shape[1:]
            return int(h), int(w), int(c)
    raise CheckpointError(f"layer {dense.name!r} holds a Linear layer over a flattened NCHW feature map, but its "
                          "input is not a Flatten of a feature map; load the classifier into a model built by "
                          "kerasnets.get_model.")


def _source_key(slot, attr):
    if slot.kind in ("keras", "keras_logits"):
        return f"{slot.src}/{attr}"
    if slot.kind == "bn":
        return f"{slot.src}.{_BN_SOURCE[attr]}"
    return f"{slot.src}.{'bias' if attr == 'bias' else 'weight'}"


def _listing(keys):
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:_SHOW])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > _SHOW else ''})"


# -------------------------------------------------------------------- loading ----
def _structure_spec_or_none(name):
    try:
        return keymaps.structure_spec(name)
    except CheckpointError:
        return None


def _first_misfit(keys, family, layer_names, spec):
    """The first checkpoint key that no key map of ``family`` (in any source style) would read."""
    expected = set()
    for style in keymaps.STYLE_NAMES:
        try:
            slots = keymaps.key_map(spec, family, style, layer_names) if spec is not None else []
        except CheckpointError:
            continue
        for slot in slots:
            sep = "/" if slot.kind.startswith("keras") else "."
            expected.update(f"{slot.src}{sep}{leaf}" for leaf in
                            ("weight", "bias", "running_mean", "running_var", "kernel", "depthwise_kernel",
                             "gamma", "beta", "moving_mean", "moving_variance"))
    return next((k for k in keys if k not in expected), keys[0])


def _plan(model, checkpoint, spec, convention):
    """Validate ``checkpoint`` against ``model``; return [(variable, value)] and notes. Raises on any mismatch."""
    family = keymaps.model_family(model.name)
    if family is None:
        raise CheckpointError(f"model {model.name!r} is not a kerasnets zoo model, so no key map applies; build it "
                              "with kerasnets.get_model(...).")
    keys = list(checkpoint.tensors)
    if not keys:
        raise CheckpointError(f"checkpoint {checkpoint.source} holds no tensors; pass a complete checkpoint.")
    src_family, style = keymaps.guess_source(keys)
    layer_names = {layer.name for layer in model.layers}
    if src_family != family:
        misfit = _first_misfit(keys, family, layer_names, spec or _structure_spec_or_none(model.name))
        fit = (f"looks like a {keymaps.FAMILY_NAMES[src_family]} checkpoint ({keymaps.STYLE_NAMES[style]}), so "
               f"load it into a {keymaps.FAMILY_NAMES[src_family]} model" if src_family else
               "matches no family kerasnets imports, so check that it is the file you meant")
        raise CheckpointError(f"checkpoint key {misfit!r} of {checkpoint.source} does not fit {model.name} "
                              f"({keymaps.FAMILY_NAMES[family]}); the checkpoint {fit}.")
    source_convention = convention or ("tf" if checkpoint.kind == "keras" else checkpoint.convention)
    built = model_convention(model)
    if family not in _CONVENTION_FREE and source_convention and source_convention != built:
        guessed = (" (guessed from the file name: pass convention='tf' if it is a timm tf_* port)"
                   if convention is None and checkpoint.convention_from == "file name" else "")
        raise CheckpointError(f"checkpoint {checkpoint.source} computes in the {source_convention!r} convention"
                              f"{guessed} but {model.name} was built in {built!r}; rebuild it with "
                              f"convention={source_convention!r} (get_model(name, weights=...) does this itself).")
    train_form = any(n.endswith("_cheap_bn") for n in layer_names)
    if family == "repghostnet" and style == "timm_deploy" and train_form:
        raise CheckpointError(f"checkpoint {checkpoint.source} is RepGhostNet's re-parameterized (deploy) form; load "
                              "it into kerasnets.deploy(model, fold_batch_norm=False), or use "
                              "get_model(name, weights=...) which does.")
    if family == "repghostnet" and style == "timm" and not train_form:
        raise CheckpointError(f"checkpoint {checkpoint.source} is RepGhostNet's train form but {model.name} is "
                              "re-parameterized; load it into the train-form model, then call kerasnets.deploy().")
    spec = spec or keymaps.structure_spec(model.name)
    slots = keymaps.key_map(spec, family, style, layer_names)

    has_top = "predictions" in layer_names
    present = {s.layer.split("_")[0] + "_" + s.layer.split("_")[1] for s in slots
               if s.layer.startswith("stage") and s.layer in layer_names}
    skipped, notes = set(), []
    if has_top:  # a classifier of another width: keep the backbone, start a fresh head
        head = model.get_layer("predictions")
        src_cls = next((s for s in slots if s.part == "classifier"), None)
        src_kernel = checkpoint.tensors.get(_source_key(src_cls, "kernel") if src_cls.kind.startswith("keras")
                                            else f"{src_cls.src}.weight")
        if src_kernel is not None:
            src_classes = src_kernel.shape[-1] if src_cls.kind.startswith("keras") else src_kernel.shape[0]
            if src_classes != head.units:
                skipped.add(src_cls)
                notes.append(f"checkpoint {checkpoint.source} has a {src_classes}-class head and {model.name} "
                             f"{head.units} classes: loaded the backbone, 'predictions' keeps a fresh initialisation.")
    assignments, used, missing, shape_errors = [], set(), [], []
    order = {k: i for i, k in enumerate(keys)}
    filled = set()
    for slot in slots:
        if slot in skipped:
            continue
        block = "_".join(slot.layer.split("_")[:2]) if slot.layer.startswith("stage") else None
        if slot.layer not in layer_names:
            if not has_top and (slot.part != "body" or (block is not None and block not in present)):
                skipped.add(slot)  # no top, or a features_only model ending before this block
                continue
            missing.append(f"layer {slot.layer}")
            continue
        layer = model.get_layer(slot.layer)
        for attr in _weight_attrs(layer):
            key = _source_key(slot, attr)
            value = checkpoint.tensors.get(key)
            if value is None:
                missing.append(key)
                continue
            used.add(key)
            target = getattr(layer, attr)
            converted = _convert(slot, layer, attr, np.asarray(value, np.float32), model)
            if tuple(converted.shape) != tuple(target.shape):
                want = target.shape if slot.kind.startswith("keras") else _torch_layout(layer, attr, target.shape)
                shape_errors.append((order.get(key, 0), f"checkpoint tensor {key!r} has shape {tuple(value.shape)} "
                                     f"but layer {slot.layer!r} of {model.name} needs {tuple(int(d) for d in want)}"))
                continue
            assignments.append((target, converted))
        filled.add(slot.layer)
    for slot in skipped:  # tensors deliberately left out are not "unexpected"
        used.update(k for k in keys if k.startswith(slot.src + (".", "/")[slot.kind.startswith("keras")]))
    unexpected = [k for k in keys if k not in used]
    unfilled = [layer.name for layer in model.layers if layer.weights and layer.name not in filled
                and not any(s.layer == layer.name for s in skipped)]
    top_layers = {s.layer for s in slots if s.part != "body"}
    if missing and not unexpected and all(m.split("/")[0] in top_layers or any(
            m.startswith(s.src + ".") for s in slots if s.part != "body") for m in missing):
        raise CheckpointError(f"checkpoint {checkpoint.source} has no classifier for {model.name}'s top "
                              f"(missing {_listing(missing)}); build the model with include_top=False.")
    if missing or unexpected or unfilled:
        parts = []
        if missing:
            parts.append(f"missing {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected {_listing(unexpected)}")
        if unfilled:
            parts.append(f"Keras layers left unfilled {_listing(unfilled)}")
        raise CheckpointError(f"checkpoint {checkpoint.source} does not match {model.name} key for key: "
                              f"{'; '.join(parts)}; pass a checkpoint of exactly this model.")
    if shape_errors:
        shape_errors = [message for _, message in sorted(shape_errors)]  # in checkpoint order
        more = f" (and {len(shape_errors) - 1} more)" if len(shape_errors) > 1 else ""
        raise CheckpointError(f"{shape_errors[0]}{more}; the checkpoint is of another width or variant, so "
                              "build the model that matches it.")
    return assignments, notes, family, style


def load_weights(model, src, spec=None, convention=None):
    """Load a checkpoint into ``model`` (a kerasnets zoo model), strictly, and return the model.

    Args:
      model: a model from :func:`kerasnets.get_model` (train form; for a RepGhostNet
        re-parameterized checkpoint, ``kerasnets.deploy(model, fold_batch_norm=False)``).
      src: a ``.safetensors`` file, a timm Hugging Face snapshot folder (``config.json`` +
        ``model.safetensors``), a timm / torchvision / Megvii ``.pth`` / ``.bin`` state dict
        (needs torch), a Keras Applications ``.h5`` (MobileNetV2, MobileNetV3, VGG16), a hub
        id ``hf://timm/<model>.<tag>`` (needs huggingface_hub and a network), or a
        :class:`Checkpoint` already read.
      spec: the model's spec, when it was built with overrides the registry cannot recover.
      convention: the convention the checkpoint computes in, when the source does not say
        (a bare timm ``.safetensors`` is taken as ``"torch"`` unless its file name starts
        with ``tf_``).

    Raises:
      CheckpointError: unreadable source, another family / width / form, a convention other
        than the model's, or any missing or unexpected tensor. Nothing is assigned then.
    """
    if not isinstance(model, keras.Model):
        raise CheckpointError(f"load_weights() needs a Keras model from kerasnets.get_model, got "
                              f"{type(model).__name__}.")
    if not isinstance(src, (Checkpoint, str, os.PathLike)):
        raise CheckpointError(f"weights source {src!r} is a {type(src).__name__}; pass a path, a folder or an "
                              "hf://timm/<model>.<tag> id.")
    if convention is not None and convention not in ("tf", "torch"):
        raise CheckpointError(f"convention={convention!r} is unknown; use 'tf', 'torch' or None.")
    checkpoint = src if isinstance(src, Checkpoint) else read_checkpoint(src)
    assignments, notes, family, style = _plan(model, checkpoint, spec, convention)
    for variable, value in assignments:
        variable.assign(value)
    for note in notes:
        _log.warning(note)
    _record_preprocessing(model, _source_preprocessing(checkpoint, family, style))
    return model


def is_checkpoint(weights):
    """Whether ``weights`` is a foreign checkpoint (timm / torchvision / Megvii / Keras Applications)
    rather than weights that Keras itself saved from a kerasnets model."""
    src = os.fspath(weights)
    if src.startswith(HUB_PREFIX) or os.path.isdir(src):
        return True
    lower = src.lower()
    if lower.endswith(".safetensors") or lower.endswith(TORCH_EXTENSIONS):
        return True
    if lower.endswith((".h5", ".hdf5")) and os.path.isfile(src):
        try:
            checkpoint = read_checkpoint(src)
        except CheckpointError:
            return False
        return keymaps.guess_source(checkpoint.tensors)[1] == "keras"
    return False


def model_with_weights(build, name, weights, spec, overrides, **kwargs):
    """Build registry model ``name`` in the convention of ``weights`` and load them (``get_model(weights=)``).

    ``build`` is :func:`kerasnets.get_model`, ``spec`` the spec it resolved for ``name`` and
    ``overrides`` (its tunable and build options). The convention is the checkpoint's unless
    ``overrides`` names one. A re-parameterized RepGhostNet checkpoint is loaded into the
    deployed graph (``kerasnets.deploy(model, fold_batch_norm=False)``).
    """
    checkpoint = read_checkpoint(weights)
    overrides = dict(overrides)
    family, style = keymaps.guess_source(checkpoint.tensors)
    source_convention = "tf" if checkpoint.kind == "keras" else (checkpoint.convention or "torch")
    convention = overrides.pop("convention", None) or source_convention
    model = build(name, convention=convention, **overrides, **kwargs)
    if family == "repghostnet" and style == "timm_deploy":
        from kerasnets.deploy import deploy
        model = deploy(model, fold_batch_norm=False)
    return load_weights(model, checkpoint, spec=spec, convention=convention)
