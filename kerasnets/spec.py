"""Architecture specs: a model is a flat list of blocks plus a classifier top.

Family spec functions (``kerasnets.families``) turn compact stage tables into these
objects; ``kerasnets.builder.build_model`` turns any spec into a Keras model.
"""
import dataclasses
import difflib
import json
import math
from typing import Optional, Tuple

from kerasnets.errors import ModelConfigError, UsageError
from kerasnets.io import atomic_write, read_json_file


def make_divisible(value, divisor=8, min_value=None, round_limit=0.9):
    """Round ``value`` to a multiple of ``divisor`` (never below ``round_limit`` of it).

    The channel rule of the TF/timm reference implementations (MobileNet, EfficientNet,
    GhostNet): nearest multiple, bumped up one step when rounding lost more than 10%.
    """
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def align_up(value, alignment):
    """Smallest multiple of ``alignment`` that is >= ``value`` (hardware channel padding)."""
    return int(math.ceil(value / alignment) * alignment)


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of a network.

    kind: ``conv`` (conv-BN-act), ``maxpool``, ``ds`` (depthwise separable), ``ir``
    (inverted residual), ``er`` (fused/edge residual), ``ghost``, ``repghost``,
    ``shuffle_v1``, ``shuffle_v2``, ``regnet_x``, ``vgg_conv`` (conv with bias + ReLU, no BN),
    ``bottleneck`` (ResNet V1: 1x1 (strided) -> 3x3 -> 1x1, post-activation),
    ``preact_bottleneck`` (ResNet V2: BN-ReLU first, stride in the 3x3), ``norm_act`` (BN + act),
    ``varg`` (Horizon's BasicVarGBlock, VargNetV2), ``mixvarge`` (Horizon's BasicMixVarGEBlock,
    MixVarGENet); both as the VarGNet digest describes them, see :func:`kerasnets.families.vargnetv2_spec`.
    ``mid`` is the expanded (inner) width where the block has one; ``groups`` is the
    group count of a ``conv`` or ``shuffle_v1`` block's grouped convs; ``group_width`` the
    channels per group of the spatial conv of ``ir`` and ``regnet_x`` blocks (0 means
    depthwise); ``se`` the squeeze-excite ratio (0 = none) with ``se_channels``
    the reduced width; ``skip`` whether a residual is allowed when shapes match;
    ``head`` marks the final 1x1 conv that widens the features for the classifier
    (MobileNetV2's 1280 conv, ShuffleNet V2's conv5 ...), which feature endpoints skip.
    ``bias`` puts biases on a ``conv`` / ``vgg_conv`` block's conv and on every conv of a
    ``bottleneck`` (ResNet V2 always has them on its last 1x1 and its projection only);
    ``norm`` False drops a ``conv`` block's BatchNorm (ResNet V2's stem).

    ``varg``: every conv is an SGC (``kernel`` x ``kernel`` grouped conv with ``group_width``
    input channels per group, widening by ``factor`` -> BN -> ``act`` -> 1x1 conv -> BN);
    part 1 is an SGC to ``mid`` (0 = ``out``) with the block's stride, plus with ``merge`` a
    second parallel SGC added to it, then ``act``; part 2 an SGC ``mid`` -> ``out``; the
    shortcut is the input when the stride is 1 and the width kept, else an SGC; ``act`` after
    the add. ``mixvarge``: ``kernel`` x ``kernel`` conv (stride, ``group_width`` input channels
    per group, 0 = dense) to ``mid`` -> BN -> ``act`` -> ``kernel2`` x ``kernel2`` conv to ``out``
    (``group_width2`` output channels per group, 0 = dense) -> BN; shortcut the input when the
    stride is 1, the width kept and ``skip`` is on, else a 1x1 conv (always with bias) + BN;
    ``act`` after the add. ``bias`` puts biases on both blocks' other convs.
    """
    kind: str
    out: int
    kernel: int = 3
    stride: int = 1
    mid: int = 0
    groups: int = 1
    group_width: int = 0
    se: float = 0.0
    se_channels: int = 0
    se_gate: str = "hard_sigmoid"
    act: Optional[str] = "relu"
    skip: bool = True
    first_group_dense: bool = False  # ShuffleNet V1: dense first 1x1 of the first unit
    bias: bool = False
    head: bool = False
    norm: bool = True
    factor: float = 1.0   # varg: widening of each grouped conv (group_width -> group_width * factor)
    merge: bool = False   # varg: a second parallel SGC in part 1 (HAT's merge_branch)
    kernel2: int = 1      # mixvarge: kernel of the second conv
    group_width2: int = 0  # mixvarge: output channels per group of the second conv (0 = dense)


@dataclasses.dataclass(frozen=True)
class Top:
    """Classifier top.

    kind ``pool_fc``: global average pool -> dropout -> dense.
    ``pool_conv_fc``: global pool -> 1x1 conv with bias (``channels``) -> ``act`` ->
    flatten -> dropout -> dense (GhostNet, MobileNetV3).
    ``vgg``: adaptive 7x7 average pool -> flatten -> 2x (dense ``channels`` + ReLU + dropout) -> dense.
    ``pool_conv_bn``: global average pool -> 1x1 conv to the classes (bias if ``fc_bias``) -> BN
    -> flatten -> the classifier activation (VarGNet family: HAT's 1x1 conv + BN classifier; its
    7x7 average pool is global here, the same at 224 where the last map is 7x7). No dropout.
    """
    kind: str = "pool_fc"
    channels: int = 0
    act: Optional[str] = "relu"
    dropout: float = 0.2
    fc_bias: bool = True


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A whole network: name, default input size, the blocks in order, and the top."""
    name: str
    blocks: Tuple[Block, ...]
    top: Top
    default_size: Tuple[int, int] = (224, 224)

    @property
    def total_stride(self):
        stride = 1
        for block in self.blocks:
            stride *= block.stride
        return stride

    def block_stages(self):
        """Stage of every block: log2 of its output stride (the stride-2 stem is stage 1)."""
        stages, stride = [], 1
        for block in self.blocks:
            stride *= block.stride
            if stride & (stride - 1):
                raise ModelConfigError(f"{self.name}: cumulative stride {stride} is not a power of 2; "
                                 "use block strides of 1 or 2.")
            stages.append(stride.bit_length() - 1)
        return stages

    def head_flags(self):
        """Which blocks are the classifier's 1x1 head conv (skipped by feature endpoints).

        Blocks marked ``head=True`` when any is; otherwise the default rule: the last
        block is the head when it is a 1x1 stride-1 ``conv`` block after blocks of
        another kind (e.g. AXSpine's 1280 conv).
        """
        flags = [b.head for b in self.blocks]
        if not any(flags) and len(self.blocks) > 1:
            last, prev = self.blocks[-1], self.blocks[-2]
            flags[-1] = last.kind == "conv" and last.kernel == 1 and last.stride == 1 and prev.kind != "conv"
        return flags

    def feature_blocks(self):
        """Level -> index of the block whose output is that feature endpoint.

        Levels follow timm's ``out_indices``: level ``i`` is reduction ``2 ** (i + 1)``
        (0 -> /2 ... 4 -> /32); its endpoint is the last non-head block of that stage.
        """
        ends = {}
        for index, (stage, head) in enumerate(zip(self.block_stages(), self.head_flags())):
            if stage >= 1 and not head:
                ends[stage - 1] = index
        return ends


# ------------------------------------------------------------------ spec files ----

SPEC_FORMAT = "kerasnets.spec"
SPEC_VERSION = 1
_FILE_FIELDS = ("format", "version", "name", "default_size", "blocks", "top", "build_options")
_BLOCK_KINDS = ("conv", "maxpool", "ds", "ir", "er", "ghost", "repghost", "shuffle_v1", "shuffle_v2", "regnet_x",
                "vgg_conv", "bottleneck", "preact_bottleneck", "norm_act", "varg", "mixvarge")
_ACTIVATIONS = (None, "relu", "relu6", "hard_swish", "hard_sigmoid", "sigmoid")


def _closest(key, valid):
    match = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.5)
    return f"did you mean {match[0]!r}?" if match else f"valid fields are {', '.join(valid)}"


def _field_types(cls):
    return {f.name: f for f in dataclasses.fields(cls)}


def _plain_fields(obj, keep=()):
    """The fields of dataclass ``obj`` that differ from their defaults (plus ``keep``), JSON-ready."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.name in keep or f.default is dataclasses.MISSING or value != f.default:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def spec_to_dict(spec, build_options=None):
    """``spec`` (and optional build options: a BuildOptions or a dict) as the JSON object :func:`save_spec` writes."""
    data = {"format": SPEC_FORMAT, "version": SPEC_VERSION, "name": spec.name,
            "default_size": list(spec.default_size),
            "blocks": [_plain_fields(b, keep=("kind", "out")) for b in spec.blocks],
            "top": _plain_fields(spec.top)}
    if build_options is not None:
        from kerasnets.builder import BuildOptions
        options = dict(build_options if isinstance(build_options, dict) else dataclasses.asdict(build_options))
        if options.get("bn_epsilon") == BuildOptions(convention=options.get("convention", "tf")).bn_epsilon:
            options.pop("bn_epsilon")  # the convention's own, so a convention override keeps its epsilon
        data["build_options"] = options
    return data


def save_spec(spec, path, build_options=None):
    """Write ``spec`` (a :class:`ModelSpec`) to ``path`` as versioned JSON, atomically; returns ``path``.

    ``build_options`` (a :class:`kerasnets.builder.BuildOptions` or a dict of its fields) are
    stored beside the spec, so ``get_model(spec=path)`` builds the same graph.
    """
    if not isinstance(spec, ModelSpec):
        raise UsageError(f"save_spec needs a ModelSpec, got {type(spec).__name__}; pass a spec such as a "
                         "retarget result's .spec.")
    atomic_write(path, json.dumps(spec_to_dict(spec, build_options), indent=1) + "\n")
    return path


def _check_value(where, key, value, field):
    """Refuse (ModelConfigError) a spec field of the wrong type or range."""
    if field.type in (int, "int"):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= (0 if key in (
            "mid", "group_width", "se_channels", "channels", "group_width2") else 1)
    elif field.type in (float, "float"):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    elif field.type in (bool, "bool"):
        ok = isinstance(value, bool)
    elif key in ("act", "se_gate"):
        ok = value in _ACTIVATIONS
    elif key == "kind":
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        want = {"act": f"one of {list(_ACTIVATIONS)}", "se_gate": f"one of {list(_ACTIVATIONS)}"}.get(
            key, f"a {getattr(field.type, '__name__', field.type)}" + (" >= 0" if field.type in (int, float) else ""))
        raise ModelConfigError(f"{where}: field {key!r} = {value!r} must be {want}; fix the spec file.")


def _dataclass_from(cls, data, where, required):
    fields = _field_types(cls)
    if not isinstance(data, dict):
        raise ModelConfigError(f"{where} must be a JSON object of fields, not {type(data).__name__}; fix the spec "
                               "file.")
    for key in data:
        if key not in fields:
            raise ModelConfigError(f"{where} has unknown field {key!r} ({_closest(key, fields)}); fix the spec file.")
    for key in required:
        if key not in data:
            raise ModelConfigError(f"{where} lacks field {key!r}; add it to the spec file.")
    for key, value in data.items():
        _check_value(where, key, value, fields[key])
    return cls(**data)


def spec_from_dict(data, label="<spec>"):
    """(ModelSpec, build options dict) from the JSON object of a spec file; ModelConfigError names a bad field."""
    if not isinstance(data, dict):
        raise ModelConfigError(f"spec {label} must be a JSON object, not {type(data).__name__}; pass a file "
                               "written by kerasnets.spec.save_spec.")
    for key in data:
        if key not in _FILE_FIELDS:
            raise ModelConfigError(f"spec {label} has unknown field {key!r} ({_closest(key, _FILE_FIELDS)}); fix "
                                   "the spec file.")
    if data.get("format") != SPEC_FORMAT:
        raise ModelConfigError(f"spec {label}: field 'format' is {data.get('format')!r}, not {SPEC_FORMAT!r}; pass "
                               "a file written by kerasnets.spec.save_spec.")
    if data.get("version") != SPEC_VERSION:
        raise ModelConfigError(f"spec {label}: version {data.get('version')!r} is not supported (this kerasnets "
                               f"reads version {SPEC_VERSION}); re-save the spec with this kerasnets.")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or not all(c.isalnum() or c in "_-." for c in name):
        raise ModelConfigError(f"spec {label}: field 'name' = {name!r} must be a non-empty model name (letters, "
                               "digits, '_', '-', '.'); fix the spec file.")
    size = data.get("default_size", [224, 224])
    if not isinstance(size, list) or len(size) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
        raise ModelConfigError(f"spec {label}: field 'default_size' = {size!r} must be [height, width] of positive "
                               "integers; fix the spec file.")
    blocks = data.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise ModelConfigError(f"spec {label}: field 'blocks' must be a non-empty list of block objects; fix the "
                               "spec file.")
    parsed = []
    for i, b in enumerate(blocks):
        block = _dataclass_from(Block, b, f"spec {label} block {i}", ("kind", "out"))
        if block.kind not in _BLOCK_KINDS:
            raise ModelConfigError(f"spec {label} block {i}: kind {block.kind!r} is unknown "
                                   f"({_closest(block.kind, _BLOCK_KINDS)}); fix the spec file.")
        parsed.append(block)
    top = _dataclass_from(Top, data.get("top", {}), f"spec {label} top", ())
    options = data.get("build_options") or {}
    if not isinstance(options, dict):
        raise ModelConfigError(f"spec {label}: field 'build_options' must be a JSON object; fix the spec file.")
    from kerasnets.builder import BuildOptions
    valid = tuple(f.name for f in dataclasses.fields(BuildOptions))
    for key in options:
        if key not in valid:
            raise ModelConfigError(f"spec {label}: build option {key!r} is unknown ({_closest(key, valid)}); fix "
                                   "the spec file.")
    BuildOptions(**options)  # its own checks of each value
    spec = ModelSpec(name, tuple(parsed), top, tuple(size))
    spec.block_stages()  # strides give a power-of-two total stride
    return spec, dict(options)


def check_spec(spec, build_options=None):
    """Build ``spec`` once at its smallest input (symbolic, nothing run): the builder's own checks refuse
    impossible channel counts (groups that do not divide, a shuffle of an odd split...) as ModelConfigError."""
    from kerasnets.backend import keras
    from kerasnets.builder import BuildOptions, build_model
    options = build_options if isinstance(build_options, BuildOptions) else BuildOptions(**(build_options or {}))
    size = (spec.total_stride,) * 2
    try:
        build_model(spec, keras.Input(size + (3,)), include_top=True, classes=1, options=options)
    except ModelConfigError as e:
        raise ModelConfigError(f"spec {spec.name!r} cannot be built: {str(e).rstrip('.')}.") from None
    return spec


def load_spec(path, check=True):
    """(ModelSpec, build options dict) read from a JSON file written by :func:`save_spec`.

    Unknown fields are refused naming the closest valid one; with ``check`` (default) the spec
    is built once symbolically so the builder refuses impossible channel counts.
    """
    label = repr(str(path))
    data = read_json_file(path, "spec", ModelConfigError, "pass a file written by kerasnets.spec.save_spec")
    spec, options = spec_from_dict(data, label)
    if check:
        check_spec(spec, options)
    return spec, options
