"""The registry of named models and the public constructors (Keras Applications style)."""
import dataclasses
import difflib
import functools
import inspect
import json
import math
import numbers
import os
import re

from kerasnets import checkpoints, families
from kerasnets import layers as kn_layers
from kerasnets.backend import keras
from kerasnets.builder import CONVENTIONS, GROUP_CONV_MODES, BuildOptions, build_model, feature_info
from kerasnets.errors import ModelConfigError


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """A registry entry: how to make the spec, and the key of its reference counts."""
    name: str
    spec_fn: object
    spec_kwargs: dict
    reference: str = ""          # key in data/reference_counts.json ("" = none published)
    deploy_reference: str = ""   # key of the row after re-parameterization, if any
    # Spec arguments a user may override through get_model(**overrides).
    tunable: tuple = ()

    def spec(self, **kwargs):
        """The spec, named for what it is: the registry name, or with overrides that change
        the model the family's own name for them (``shufflenet_v1_g2_x1_0``) plus a suffix
        for overrides that name does not show (``axspine_middle_alignment8``)."""
        defaults = {k: p.default for k, p in inspect.signature(self.spec_fn).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        base = {**defaults, **self.spec_kwargs}
        args = {**self.spec_kwargs, **kwargs}
        changed = {k: v for k, v in kwargs.items() if not _same(base.get(k), v)}
        if not changed:
            return self.spec_fn(**args, name=self.name)
        own = self.spec_fn(**args).name

        def shown(key):  # does the family's own name change with this override alone?
            try:
                return self.spec_fn(**{**args, key: base.get(key)}).name != own
            except ModelConfigError:  # the override is needed by another (VargNetV2's head_factor with group_base)
                return False
        hidden = {k: v for k, v in changed.items() if not shown(k)}
        suffix = "".join(f"_{k}{_name_fragment(v)}" for k, v in sorted(hidden.items()))
        return self.spec_fn(**args, name=own + suffix)


def _same(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return tuple(a) == tuple(b)
    return a == b


def _name_fragment(value):
    """A model-name fragment for an override value: 8 -> '8', 1.25 -> '1_25', (2, 2) -> '2x2'."""
    if isinstance(value, (list, tuple)):
        return "x".join(_name_fragment(v) for v in value)
    return f"{value:g}".replace(".", "_") if isinstance(value, float) else str(value)


_REGISTRY = {}


def _add(name, spec_fn, reference="", deploy_reference="", tunable=(), **spec_kwargs):
    _REGISTRY[name] = ModelEntry(name, spec_fn, spec_kwargs, reference, deploy_reference, tuple(tunable))


for _w, _tag in ((0.35, "035"), (0.5, "050"), (0.75, "075"), (1.0, "100"), (1.4, "140")):
    _add(f"mobilenet_v2_{_tag}", families.mobilenet_v2_spec, f"mobilenetv2_{_tag}", width=_w, tunable=("width",))
for _v in ("small", "middle", "big"):
    _add(f"axspine_{_v}", families.axspine_spec, variant=_v,
         tunable=("channels_per_group", "alignment", "expand", "second_expand", "depths", "width"))
for _g in (3, 8):
    for _w in (0.5, 1.0, 1.5, 2.0):
        _tag = f"{_w:.1f}".replace(".", "_")
        _add(f"shufflenet_v1_g{_g}_x{_tag}", families.shufflenet_v1_spec, f"shufflenetv1_g{_g}_{_w:.1f}x",
             groups=_g, width=_w, tunable=("groups", "width"))
for _w in (0.5, 1.0, 1.5, 2.0):
    _tag = f"{_w:.1f}".replace(".", "_")
    _add(f"shufflenet_v2_x{_tag}", families.shufflenet_v2_spec, f"tv_shufflenet_v2_x{_tag}", width=_w,
         tunable=("width",))
for _w, _tag in ((0.5, "050"), (1.0, "100"), (1.3, "130")):
    _add(f"ghostnet_{_tag}", families.ghostnet_spec, f"ghostnet_{_tag}", width=_w, tunable=("width",))
for _w, _tag in ((0.5, "050"), (0.58, "058"), (0.8, "080"), (1.0, "100"), (1.11, "111"), (1.3, "130"),
                 (1.5, "150"), (2.0, "200")):
    _add(f"repghostnet_{_tag}", families.repghostnet_spec, f"repghostnet_{_tag}", f"repghostnet_{_tag}.deploy",
         width=_w, tunable=("width",))
for _v in ("s", "m", "l"):
    _add(f"efficientnet_edgetpu_{_v}", families.efficientnet_edgetpu_spec, f"efficientnet_e{_v}", variant=_v)
_add("mobilenet_v3_large_100", families.mobilenet_v3_spec, "mobilenetv3_large_100", size="large")
_add("mobilenet_v3_small_100", families.mobilenet_v3_spec, "mobilenetv3_small_100", size="small")
_add("regnetx_002", families.regnetx_spec, "regnetx_002", flops="002")
_add("regnetx_004", families.regnetx_spec, "regnetx_004", flops="004")
_add("vgg16", families.vgg16_spec, "tv_vgg16")
for _d, _v in ((50, 1), (50, 2), (152, 2)):
    _suffix = "" if _v == 1 else "_v2"
    _add(f"resnet{_d}{_suffix}", families.resnet_spec, f"keras_resnet{_d}{_suffix}", depth=_d, version=_v)
# Horizon's VarGNet family: reference counts computed from the project's VarGNet digest (no public
# implementation runs here; see kerasnets.families.vargnetv2_spec).
_VARG_TUNABLE = ("alpha", "group_base", "factor", "head_factor", "repeats", "bias")
for _a, _tag in ((0.25, "025"), (0.5, "050"), (1.0, "100")):
    _add(f"vargnetv2_{_tag}", families.vargnetv2_spec, f"vargnetv2_{_tag}", alpha=_a, tunable=_VARG_TUNABLE)
_add("tinyvargnetv2_100", families.tinyvargnetv2_spec, "tinyvargnetv2_100", alpha=1.0, tunable=_VARG_TUNABLE)
_add("mixvargenet_100", families.mixvargenet_spec, "mixvargenet_100", variant="imagenet",
     tunable=("alpha", "group_base", "repeats", "ops", "bias", "head_channels"))

# Published checkpoints each registry model imports (kerasnets.load_weights), with the convention
# the import builds in (and optionally the only registry tags it exists for); "{tag}" is the
# registry name's width / variant tag. The families marked
# in tests/kerasnets/test_checkpoints.py are proven there against the reference logits.
CHECKPOINT_SOURCES = {
    "mobilenet_v2": (("timm mobilenetv2_{tag}", "torch"), ("torchvision mobilenet_v2", "torch", ("100",)),
                     ("Keras Applications MobileNetV2(alpha={alpha})", "tf")),
    "mobilenet_v3": (("timm mobilenetv3_{size}_100", "torch"), ("Keras Applications MobileNetV3{Size}", "tf")),
    "shufflenet_v1": (("Megvii ShuffleNet-Series ShuffleNetV1 (group={groups})", "torch"),),
    "shufflenet_v2": (("torchvision shufflenet_v2_x{tag}", "torch"),),
    "ghostnet": (("timm ghostnet_{tag}", "torch"),),
    "repghostnet": (("timm repghostnet_{tag} (train or re-parameterized form)", "torch"),),
    "efficientnet_edgetpu": (("timm efficientnet_e{variant}", "torch"), ("timm tf_efficientnet_e{variant}", "tf")),
    "regnetx": (("timm regnetx_{tag}", "torch"),),
    "vgg16": (("torchvision vgg16", "torch"), ("Keras Applications vgg16", "tf")),
}


def checkpoint_sources(name):
    """[(checkpoint name, convention)] that registry model ``name`` imports; [] for none (AXSpine)."""
    entry = _entry(name)
    family = checkpoints.keymaps.model_family(name)
    if family not in CHECKPOINT_SOURCES:
        return []
    kw = entry.spec_kwargs
    tag = name[len(family):].lstrip("_").replace("x", "", 1) if family == "shufflenet_v2" else name.rsplit("_", 1)[-1]
    fields = {"tag": tag, "alpha": f"{float(kw.get('width', 1.0))}", "size": kw.get("size", ""),
              "Size": str(kw.get("size", "")).capitalize(), "groups": kw.get("groups", ""),
              "variant": kw.get("variant", "")}
    return [(source.format(**fields), convention) for source, convention, *only in CHECKPOINT_SOURCES[family]
            if not only or tag in only[0]]


BUILD_OPTIONS = tuple(f.name for f in dataclasses.fields(BuildOptions))


def list_models():
    """Sorted names of every registered model."""
    return sorted(_REGISTRY)


def _entry(name):
    if not isinstance(name, str):
        raise ModelConfigError(f"model name {name!r} is a {type(name).__name__}, not a string; pass a name from "
                               "kerasnets.list_models(), e.g. 'mobilenet_v2_100'.")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else "see kerasnets.list_models()."
        raise ModelConfigError(f"unknown model {name!r}; {hint}")
    return _REGISTRY[name]


@functools.lru_cache(maxsize=1)
def _reference_counts():
    path = os.path.join(os.path.dirname(__file__), "data", "reference_counts.json")
    with open(path) as f:
        return json.load(f)


def get_model_info(name):
    """Default input shape and published reference figures of a registry model.

    Returns a dict with ``name``, ``default_input_shape`` (h, w, 3), ``reference`` (the
    reference row: ``keras_count_params_equiv``, ``macs_conv_linear_224``, ``source`` ...,
    or None), ``deploy_reference`` (the row after re-parameterization, or None) and
    ``checkpoints`` ([(published checkpoint, convention)] it imports, see :data:`CHECKPOINT_SOURCES`).
    """
    entry = _entry(name)
    spec = entry.spec()
    refs = _reference_counts()["models"]
    return {"name": name, "default_input_shape": tuple(spec.default_size) + (3,),
            "total_stride": spec.total_stride,
            "reference": refs.get(entry.reference), "deploy_reference": refs.get(entry.deploy_reference),
            "checkpoints": checkpoint_sources(name)}


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _check_input_shape(name, input_shape, min_size):
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ModelConfigError(f"input_shape={input_shape!r} must be (height, width, channels), e.g. (224, 224, 3).")
    h, w, c = input_shape
    for label, v in (("height", h), ("width", w), ("channels", c)):
        if v is not None and (not _is_int(v) or v < 1):
            raise ModelConfigError(f"input {label}={v!r} in input_shape={tuple(input_shape)!r} must be a positive "
                                   "integer.")
    for label, v in (("height", h), ("width", w)):
        if v is not None and v < min_size:
            raise ModelConfigError(f"input {label} {v} is too small for {name}, which downsamples by {min_size}; "
                                   f"use at least {min_size}x{min_size}.")


def _positive_number(key, v):
    if not _is_number(v) or v <= 0:
        return "must be a positive number"
    return None


def _positive_int(key, v):
    if not _is_int(v) or v < 1:
        return "must be a positive integer"
    return None


def _choice(choices):
    def check(key, v):
        if not isinstance(v, str) or v not in choices:
            return f"is unknown; use one of {tuple(choices)}"
        return None
    return check


def _bn_epsilon(key, v):
    if v is not None and (not _is_number(v) or v <= 0):
        return "must be a positive number (e.g. 1e-3), or None for the convention's"
    return None


def _bn_momentum(key, v):
    if not _is_number(v) or not 0 <= v < 1:
        return "must be a number in [0, 1), e.g. 0.99"
    return None


def _depths(key, v):
    if v is None:
        return None
    if isinstance(v, (str, bytes)) or not isinstance(v, (tuple, list)) or len(v) != 4 or \
            not all(_is_int(d) and d >= 1 for d in v):
        return "must be four positive integers (the blocks at /4, /8, /16 and /32)"
    return None


def _positive_ints(key, v):
    if isinstance(v, (str, bytes)) or not isinstance(v, (tuple, list)) or not v or \
            not all(_is_int(n) and n >= 1 for n in v):
        return "must be a list of positive integers (blocks per stage)"
    return None


def _boolean(key, v):
    return None if isinstance(v, bool) else "must be True or False"


def _head_factor(key, v):
    return None if _is_int(v) and v in (1, 2) else "must be 1 or 2 (VargNetV2's first-stage factor rule)"


# How each override a user may pass to get_model is checked before anything is built:
# key -> check(key, value) returning what is wrong (the end of a sentence) or None.
OVERRIDE_CHECKS = {
    "width": _positive_number, "groups": _positive_int, "channels_per_group": _positive_int,
    "alignment": _positive_int, "expand": _positive_number, "second_expand": _positive_number, "depths": _depths,
    "group_conv": _choice(GROUP_CONV_MODES), "shuffle": _choice(kn_layers.SHUFFLE_MODES),
    "convention": _choice(CONVENTIONS), "bn_epsilon": _bn_epsilon, "bn_momentum": _bn_momentum,
    "alpha": _positive_number, "group_base": _positive_int, "factor": _positive_number,
    "head_factor": _head_factor,
    "repeats": _positive_ints, "bias": _boolean, "head_channels": _positive_int,
}


def _check_overrides(name, entry, overrides):
    """Refuse (ModelConfigError) an override get_model does not take for ``name``, or of a bad type or range."""
    valid = sorted(BUILD_OPTIONS + entry.tunable)
    for key in overrides:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ModelConfigError(f"option {key!r} is not valid for {name}{hint}; valid options are {valid}.")
    defaults = {k: p.default for k, p in inspect.signature(entry.spec_fn).parameters.items()}
    for key, value in overrides.items():
        if value is None and key in entry.tunable and defaults.get(key) is None:
            continue  # the family's own default (e.g. AXSpine's depths and width)
        check = OVERRIDE_CHECKS.get(key)
        problem = check(key, value) if check else None
        if problem:
            raise ModelConfigError(f"{key}={value!r} for {name} {problem}.")


# What Keras says when weights of another model are loaded, and how to say it in a clause.
_MISMATCHES = (
    (re.compile(r"variable '\s*([^']+?)(?::0)?': Shape mismatch\.\s*The variable shape (\([^)]*\)), and the "
                r"assigned value shape (\([^)]*\))"), "weight {0} has shape {1} in the model but not in the file"),
    (re.compile(r"incompatible tensor with shape (\([^)]*\)) when attempting to restore variable with shape "
                r"(\([^)]*\)) and name ([^\s:]+)"), "weight {2} has shape {1} in the model but {0} in the file"),
    (re.compile(r"Model expected (\d+) layers, found (\d+) saved layers"),
     "the model has {0} layers with weights, the file {1}"),
)


def weights_mismatch(exc):
    """A clause for a Keras weights-loading error (which weight or layer count differs), without its raw text."""
    text = " ".join(str(getattr(exc, "message", exc)).split())
    for pattern, clause in _MISMATCHES:
        m = pattern.search(text)
        if m:
            return clause.format(*m.groups())
    if isinstance(exc, OSError):
        return "the file cannot be read as Keras weights"
    return f"Keras could not load it ({text[:100]}{'...' if len(text) > 100 else ''})"


_DEFAULT = object()  # include_top left at its default (True, or no top with features_only)


def _check_arguments(classes, include_top, pooling, weights, classifier_activation, features_only):
    """Types of get_model's plain arguments (their ranges and combinations are checked where used)."""
    if not _is_int(classes):
        raise ModelConfigError(f"classes={classes!r} must be a positive integer.")
    if include_top is not _DEFAULT and not isinstance(include_top, bool):
        raise ModelConfigError(f"include_top={include_top!r} must be True or False.")
    if not isinstance(features_only, bool):
        raise ModelConfigError(f"features_only={features_only!r} must be True or False.")
    if pooling is not None and not isinstance(pooling, str):
        raise ModelConfigError(f"pooling={pooling!r} is unknown; use None, 'avg' or 'max'.")
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ModelConfigError(f"weights={weights!r} must be None or a path (a string), not a "
                               f"{type(weights).__name__}.")
    if classifier_activation is not None and not isinstance(classifier_activation, str) and \
            not callable(classifier_activation):
        raise ModelConfigError(f"classifier_activation={classifier_activation!r} must be None, an activation name "
                               "such as 'softmax', or a callable.")


def get_spec(name, **tunable_overrides):
    """The :class:`kerasnets.spec.ModelSpec` of registry model ``name`` with the family's tunable overrides
    (as ``get_model`` would build it), e.g. to transform it or save it (:func:`kerasnets.spec.save_spec`)."""
    entry = _entry(name)
    bad = [k for k in tunable_overrides if k not in entry.tunable]
    if bad:
        close = difflib.get_close_matches(str(bad[0]), entry.tunable, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelConfigError(f"option {bad[0]!r} does not change the spec of {name}{hint}; its spec options are "
                               f"{list(entry.tunable)}.")
    _check_overrides(name, entry, tunable_overrides)
    return entry.spec(**tunable_overrides)


def _spec_argument(spec, name, overrides):
    """(ModelSpec, build options of the file) for ``get_model(spec=...)``: a ModelSpec or a spec JSON path."""
    from kerasnets.spec import ModelSpec, check_spec, load_spec
    if name is not None:
        raise ModelConfigError(f"get_model got both a model name {name!r} and spec=...; pass one of them.")
    if isinstance(spec, ModelSpec):
        file_options = {}
        check_spec(spec)
    elif isinstance(spec, (str, os.PathLike)):
        if not os.path.isfile(spec):
            raise ModelConfigError(f"spec={str(spec)!r} is not a file; pass a spec JSON written by "
                                   "kerasnets.spec.save_spec, or a ModelSpec.")
        spec, file_options = load_spec(spec)
    else:
        raise ModelConfigError(f"spec={spec!r} is a {type(spec).__name__}; pass a ModelSpec or the path of a spec "
                               "JSON written by kerasnets.spec.save_spec.")
    for key in overrides:
        if key not in BUILD_OPTIONS:
            close = difflib.get_close_matches(str(key), BUILD_OPTIONS, n=1, cutoff=0.5)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ModelConfigError(f"option {key!r} is not valid with spec=...{hint}; a spec takes only the build "
                                   f"options {list(BUILD_OPTIONS)} (change the spec itself for the rest).")
        problem = OVERRIDE_CHECKS[key](key, overrides[key]) if key in OVERRIDE_CHECKS else None
        if problem:
            raise ModelConfigError(f"{key}={overrides[key]!r} for {spec.name} {problem}.")
    return spec, file_options


def get_model(name=None, input_shape=None, classes=1000, include_top=_DEFAULT, pooling=None, weights=None,
              input_tensor=None, classifier_activation="softmax", features_only=False,
              out_indices=(1, 2, 3, 4), spec=None, **overrides):
    """Build registry model ``name`` as a functional ``tf_keras.Model``.

    Args:
      name: a name from :func:`list_models` (e.g. ``"mobilenet_v2_100"``).
      input_shape: (height, width, channels); defaults to the published input size.
        Any height/width >= the network's total stride (32) works, square or not.
      classes: classifier width (with ``include_top``).
      include_top: add the classifier (default True); without it the output is the last
        feature map.
      pooling: without the top, ``"avg"`` or ``"max"`` global pooling of the features.
      weights: None (random initialisation), a path to weights saved by Keras, or a checkpoint
        to import (see :func:`kerasnets.load_weights`: timm / torchvision / Megvii
        ``.safetensors`` / ``.pth``, a timm snapshot folder, ``hf://timm/<model>.<tag>``, a
        Keras Applications ``.h5``); the model is then built in the checkpoint's convention.
      input_tensor: an existing Keras tensor to build on (its shape wins).
      classifier_activation: activation of the ``predictions`` layer (``None`` for logits).
      features_only: build a feature extractor instead (as timm's ``features_only``): no
        top, one output per level of ``out_indices``; see :func:`kerasnets.feature_info`.
      out_indices: feature levels with ``features_only``: level ``i`` is the output of the
        last block at reduction ``2 ** (i + 1)`` (0 -> /2, 1 -> /4 ... 4 -> /32), the
        classifier's 1x1 head conv excluded.
      **overrides: build options ``convention`` ("tf" | "torch", see
        :class:`kerasnets.builder.BuildOptions`), ``group_conv`` ("native" | "split"),
        ``shuffle`` ("low_rank" | "5d"), ``bn_epsilon``, ``bn_momentum``, plus the
        family's tunable arguments (e.g. ``groups`` for ShuffleNet V1,
        ``channels_per_group`` and ``alignment`` for AXSpine, ``width`` for
        GhostNet/RepGhostNet, ``alpha``, ``group_base``, ``factor`` and ``repeats`` for the
        VarGNet family). A model built with tunable overrides is named for them.
      spec: instead of ``name``, a :class:`kerasnets.spec.ModelSpec` or the path of a spec
        JSON (:func:`kerasnets.spec.save_spec`, e.g. ``kerasnets-retarget --out``); the build
        options stored in the file apply unless ``overrides`` name others. Only build options
        are taken as overrides, and checkpoint imports need a registry name.
    """
    if spec is not None:
        spec, file_options = _spec_argument(spec, name, overrides)
        name = spec.name
        options = {**file_options, **overrides}
        overrides = {}
    else:
        if name is None:
            raise ModelConfigError("get_model needs a model name (see kerasnets.list_models()) or spec=...; pass "
                                   "one.")
        entry = _entry(name)
        _check_overrides(name, entry, overrides)
        options = {k: overrides.pop(k) for k in list(overrides) if k in BUILD_OPTIONS}
    _check_arguments(classes, include_top, pooling, weights, classifier_activation, features_only)
    if pooling not in (None, "avg", "max"):
        raise ModelConfigError(f"pooling={pooling!r} is unknown; use None, 'avg' or 'max'.")
    if features_only:
        if include_top is True:
            raise ModelConfigError("include_top=True conflicts with features_only=True, which builds no "
                                   "classifier; drop include_top or pass include_top=False.")
        if pooling is not None:
            raise ModelConfigError(f"pooling={pooling!r} does not apply with features_only=True, whose outputs "
                                   "are feature maps; pool them yourself or drop pooling.")
        include_top = False
    elif include_top is _DEFAULT:
        include_top = True
    if include_top and classes < 1:
        raise ModelConfigError(f"classes={classes!r} must be a positive integer.")
    from_registry = spec is None
    if from_registry:
        spec = entry.spec(**overrides)
    if weights is not None:
        if checkpoints.is_checkpoint(weights):
            if not from_registry:
                raise ModelConfigError(f"weights={weights!r} is a checkpoint to import, which needs a registry name, "
                                       "not spec=...; import it with get_model(name, weights=...) and copy the "
                                       "weights, or pass Keras-saved weights.")
            # built in the checkpoint's convention, then imported
            return checkpoints.model_with_weights(
                get_model, name, weights, spec, {**options, **overrides}, input_shape=input_shape,
                classes=classes, include_top=include_top, pooling=pooling, input_tensor=input_tensor,
                classifier_activation=classifier_activation, features_only=features_only, out_indices=out_indices)
    if weights is not None and not os.path.exists(str(weights)):
        raise ModelConfigError(f"weights={weights!r} is not a file; pass None or the path of saved weights "
                               "(no weights are downloaded).")
    if input_tensor is not None:
        if not hasattr(input_tensor, "shape") or not keras.backend.is_keras_tensor(input_tensor):
            raise ModelConfigError(f"input_tensor={input_tensor!r} is not a Keras tensor; pass keras.Input(...).")
        input_shape = tuple(input_tensor.shape[1:])
    elif input_shape is None:
        input_shape = tuple(spec.default_size) + (3,)
    _check_input_shape(name, input_shape, spec.total_stride)
    input_shape = tuple(input_shape)
    inputs = input_tensor if input_tensor is not None else keras.Input(input_shape, name="input")
    model = build_model(spec, inputs, include_top=include_top, classes=int(classes), pooling=pooling,
                        classifier_activation=classifier_activation, options=BuildOptions(**options),
                        out_indices=out_indices if features_only else None)
    if weights is not None:
        try:
            model.load_weights(weights)
        except (OSError, ValueError) as e:  # h5py "file signature not found", a layer count or shape mismatch
            raise ModelConfigError(f"weights={weights!r} could not be loaded into {model.name}: "
                                   f"{weights_mismatch(e)}; pass weights Keras saved from this model (same name and "
                                   "options) or a checkpoint kerasnets imports.") from None
    if features_only:
        model.feature_info = feature_info(model)  # convenience copy; kerasnets.feature_info(model) after load
    return model


def _family(name_fn, base):
    """Make a Keras-Applications-style family constructor.

    ``name_fn(*args, **overrides)`` returns (registry name, overrides); a name that is not
    registered (an unlisted width or group count) is built from ``base`` with the overrides.
    """
    def constructor(*args, input_shape=None, classes=1000, include_top=_DEFAULT, pooling=None, weights=None,
                    input_tensor=None, classifier_activation="softmax", features_only=False,
                    out_indices=(1, 2, 3, 4), **overrides):
        name, extra = name_fn(*args, **overrides)
        if name not in _REGISTRY and base:
            name = base
        return get_model(name, input_shape=input_shape, classes=classes, include_top=include_top,
                         pooling=pooling, weights=weights, input_tensor=input_tensor,
                         classifier_activation=classifier_activation, features_only=features_only,
                         out_indices=out_indices, **extra)
    return constructor


def _width(width):
    if not _is_number(width) or width <= 0:
        raise ModelConfigError(f"width={width!r} must be a positive number, e.g. 1.0.")
    return width


def _pct(width):
    return f"{round(_width(width) * 100):03d}"


def _x(width):
    return f"{_width(width):.1f}".replace(".", "_")


MobileNetV2 = _family(lambda width=1.0, **o: (f"mobilenet_v2_{_pct(width)}", {**o, "width": width}),
                      "mobilenet_v2_100")
MobileNetV2.__doc__ = "MobileNetV2 at any width (registry: 0.35, 0.5, 0.75, 1.0, 1.4); arguments as get_model."
AXSpine = _family(lambda variant="middle", **o: (f"axspine_{variant}", o), "")
AXSpine.__doc__ = "AXSpine small / middle / big (see kerasnets.families.axspine_spec)."
ShuffleNetV1 = _family(lambda width=1.0, groups=3, **o: (
    f"shufflenet_v1_g{groups}_x{_x(width)}", {**o, "groups": groups, "width": width}), "shufflenet_v1_g3_x1_0")
ShuffleNetV1.__doc__ = "ShuffleNet V1 at width 0.5-2.0 with groups 1, 2, 3, 4 or 8."
ShuffleNetV2 = _family(lambda width=1.0, **o: (f"shufflenet_v2_x{_x(width)}", {**o, "width": width}),
                       "shufflenet_v2_x1_0")
ShuffleNetV2.__doc__ = "ShuffleNet V2 at width 0.5, 1.0, 1.5 or 2.0."
GhostNet = _family(lambda width=1.0, **o: (f"ghostnet_{_pct(width)}", {**o, "width": width}), "ghostnet_100")
GhostNet.__doc__ = "GhostNet at any width (registry: 0.5, 1.0, 1.3)."
RepGhostNet = _family(lambda width=1.0, **o: (f"repghostnet_{_pct(width)}", {**o, "width": width}),
                      "repghostnet_100")
RepGhostNet.__doc__ = "RepGhostNet (train form) at any width (registry: 0.5-2.0); kerasnets.deploy() fuses it."
EfficientNetEdgeTPU = _family(lambda variant="s", **o: (f"efficientnet_edgetpu_{variant}", o), "")
EfficientNetEdgeTPU.__doc__ = "EfficientNet-EdgeTPU S (224), M (240) or L (300)."
MobileNetV3 = _family(lambda size="large", **o: (f"mobilenet_v3_{size}_100", o), "")
MobileNetV3.__doc__ = "MobileNetV3 large or small at width 1.0."
RegNetX = _family(lambda flops="002", **o: (f"regnetx_{flops}", o), "")
RegNetX.__doc__ = "RegNetX-200MF ('002') or -400MF ('004')."
VGG16 = _family(lambda **o: ("vgg16", o), "vgg16")
VGG16.__doc__ = "VGG16 (configuration D, no BN), classifier at any input size via adaptive pooling."
ResNet50 = _family(lambda **o: ("resnet50", o), "resnet50")
ResNet50.__doc__ = "ResNet-50 V1 with the layers of Keras Applications' ResNet50."
ResNet50V2 = _family(lambda **o: ("resnet50_v2", o), "resnet50_v2")
ResNet50V2.__doc__ = "ResNet-50 V2 (pre-activation) with the layers of Keras Applications' ResNet50V2."
ResNet152V2 = _family(lambda **o: ("resnet152_v2", o), "resnet152_v2")
ResNet152V2.__doc__ = "ResNet-152 V2 with the layers of Keras Applications' ResNet152V2."
VargNetV2 = _family(lambda alpha=1.0, **o: (f"vargnetv2_{_pct(alpha)}", {**o, "alpha": alpha}), "vargnetv2_100")
VargNetV2.__doc__ = ("Horizon's VargNetV2 at width alpha (registry: 0.25, 0.5, 1.0); counts from the VarGNet digest "
                     "(see kerasnets.families.vargnetv2_spec).")
TinyVargNetV2 = _family(lambda alpha=1.0, **o: (f"tinyvargnetv2_{_pct(alpha)}", {**o, "alpha": alpha}),
                        "tinyvargnetv2_100")
TinyVargNetV2.__doc__ = "Horizon's TinyVargNetV2 at width alpha (see kerasnets.families.tinyvargnetv2_spec)."
MixVarGENet = _family(lambda **o: ("mixvargenet_100", o), "mixvargenet_100")
MixVarGENet.__doc__ = "Horizon's MixVarGENet (see kerasnets.families.mixvargenet_spec)."
