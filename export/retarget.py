"""Retargeting: adapt a model to a hardware profile with the rules the profile lists as data.

A profile's ``retarget.rules`` section (see :data:`kerasnets.export.profiles.RETARGET_RULES`) names the
rules that apply to it and their parameters; :func:`retarget` applies them in the listed
order and returns a :class:`RetargetResult`: the adapted spec and build options, the built
model, and one :class:`Change` per rule that did something, with the layers or blocks it
touched, its reason (citing the profile field) and the estimated latency before and after.

Two levels:

* ``function`` (default): only rules that keep the weights and the outputs, i.e. build
  options: ``group_conv_form`` (a grouped CONV_2D -> split -> per-group conv -> concat when
  the profile's ``support.ops.group_conv.forms`` lacks ``native``) and ``shuffle_form`` (the
  5-D channel shuffle -> the low-rank one when ``support.max_nonunit_dims`` is below the
  5-D form's 4 non-unit dimensions). Weights copy over by layer name (:func:`copy_weights`).
* ``architecture``: the function rules, then the spec transforms that change the function
  (the model must be retrained): ``depthwise_to_group`` (AXSpine's change 1: a depthwise
  conv that the profile runs far below its conv efficiency becomes a group conv at the
  profile's best channels per group), ``align_channels`` (AXSpine's change 3: widths
  rounded up to ``compute.channel_alignment`` when it is above 8), ``activation_fallback``
  (an activation the profile lacks -> the first supported one of the rule's fallbacks).
  After each, the function rules run again (a new group conv gets the profile's form);
  with ``require_speedup`` a change the estimator does not find faster is undone and
  reported as such.
"""
import dataclasses
import math
import os

import kerasnets
from kerasnets.export.cost import estimate
from kerasnets.export.placement import check_policy
from kerasnets.export.profiles import RETARGET_LEVELS, RETARGET_RULES, ProfileError, load_profile
from kerasnets import layers as kn_layers
from kerasnets.backend import keras
from kerasnets.builder import BuildOptions, block_prefixes, model_convention
from kerasnets.errors import ModelConfigError, UsageError
from kerasnets.spec import ModelSpec, align_up, load_spec
from kerasnets.zoo import get_spec

# Non-unit dimensions (at batch 1) of the largest tensor of each channel-shuffle form.
SHUFFLE_RANK = {"low_rank": 3, "5d": 4}
# Activations the builder can emit (the fallbacks a rule may pick).
BUILDER_ACTIVATIONS = ("relu", "relu6", "hard_swish", "hard_sigmoid", "sigmoid")


@dataclasses.dataclass
class Change:
    """One rule's effect: where, why (citing the profile field), and the estimated latency around it."""
    rule: str
    level: str
    where: list
    reason: str
    latency_before_ms: float
    latency_after_ms: float
    applied: bool = True

    def as_dict(self):
        return dataclasses.asdict(self)


@dataclasses.dataclass
class RetargetResult:
    """What :func:`retarget` returns; ``overrides`` are the ``get_model`` build options of the result."""
    name: str
    profile: str
    level: str
    policy: str
    input_shape: tuple
    original_spec: ModelSpec
    spec: ModelSpec
    original_options: dict
    options: dict
    original_model: object
    model: object
    changes: list
    notes: list

    @property
    def overrides(self):
        return dict(self.options)

    @property
    def build_options(self):
        return BuildOptions(**self.options)

    @property
    def applied(self):
        return [c for c in self.changes if c.applied]

    @property
    def latency_before_ms(self):
        return self.changes[0].latency_before_ms if self.changes else None

    @property
    def latency_after_ms(self):
        applied = self.applied
        if applied:
            return applied[-1].latency_after_ms
        return self.latency_before_ms

    def as_dict(self):
        return {"model": self.name, "profile": self.profile, "level": self.level, "policy": self.policy,
                "input_shape": list(self.input_shape), "spec": self.spec.name, "options": self.options,
                "original_options": self.original_options, "changes": [c.as_dict() for c in self.changes],
                "latency_before_ms": self.latency_before_ms, "latency_after_ms": self.latency_after_ms,
                "notes": self.notes}

    def table(self):
        """The change table: rule, where, reason, latency before -> after."""
        h, w = self.input_shape[:2]
        lines = [f"Retarget {self.name} to {self.profile} ({self.level} level, {h}x{w}, policy {self.policy})"]
        if not self.changes:
            lines.append("  no rule applies: the model already fits the profile's retarget rules")
        for c in self.changes:
            where = ", ".join(c.where[:4]) + (f" ... ({len(c.where)} in all)" if len(c.where) > 4 else "")
            status = "" if c.applied else " [undone]"
            lines.append(f"  {c.rule}{status} ({c.level}): {c.latency_before_ms:.3f} -> {c.latency_after_ms:.3f} ms")
            lines.append(f"    where:  {where}")
            lines.append(f"    reason: {c.reason}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        before, after = self.latency_before_ms, self.latency_after_ms
        if before is not None:
            lines.append(f"Estimated latency: {before:.3f} ms -> {after:.3f} ms ({before / after:.2f}x)")
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ helpers ----

def check_level(level):
    if not isinstance(level, str) or level not in RETARGET_LEVELS:
        raise UsageError(f"level={level!r} is unknown; use one of {', '.join(RETARGET_LEVELS)}.")
    return level


def retarget_profile(profile):
    """The NPU :class:`~export.profiles.Profile` named, with a ``retarget`` section whose rules have their fields."""
    profile = load_profile(profile)
    if not profile.is_npu:
        raise ProfileError(f"profile {profile.name!r} is a CPU profile and has no retarget rules; use an NPU profile "
                           "such as edgetpu_usb or m55h.")
    if profile.retarget is None:
        raise ProfileError(f"profile {profile.name!r}: field 'retarget.rules' is missing; add a retarget section "
                           "listing its rules (see export/profiles/m55h.json).")
    # The rule names and the fields each rule reads were checked when the profile was loaded (profiles.validate).
    return profile


def copy_weights(source, target):
    """Copy every weight of ``source`` into the layer of ``target`` with the same name; returns the count.

    Raises UsageError when a layer with weights has no namesake or other shapes (the models
    are not the same function with other build options).
    """
    by_name = {layer.name: layer for layer in target.layers}
    copied = 0
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        other = by_name.get(layer.name)
        if other is None or [w.shape for w in other.get_weights()] != [w.shape for w in weights]:
            raise UsageError(f"layer {layer.name!r} of {source.name} has no namesake of the same shapes in "
                             f"{target.name}; copy weights only between function-level retargets.")
        other.set_weights(weights)
        copied += 1
    return copied


def _options_of_model(model):
    """The build options a kerasnets Keras model was built with, read from its graph."""
    options = {"group_conv": "native", "shuffle": "low_rank", "convention": model_convention(model)}
    for layer in model.layers:
        if isinstance(layer, kn_layers.GroupConv2D):
            options["group_conv"] = "split"
        elif isinstance(layer, kn_layers.ChannelShuffle):
            options["shuffle"] = layer.mode
        elif isinstance(layer, keras.layers.BatchNormalization):
            options["bn_epsilon"] = float(layer.epsilon)
            options["bn_momentum"] = float(layer.momentum)
    return options


_BUILD_KEYS = tuple(f.name for f in dataclasses.fields(BuildOptions))
_MODEL_KEYS = ("classes", "include_top", "pooling", "classifier_activation")


def _resolve(model_or_name, input_shape, kwargs):
    """(name, spec, options, model kwargs, input shape, source Keras model or None)."""
    build = {k: kwargs.pop(k) for k in list(kwargs) if k in _BUILD_KEYS}
    model_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _MODEL_KEYS}
    source = None
    if isinstance(model_or_name, keras.Model):
        source = model_or_name
        name = source.name[:-len("_torch")] if source.name.endswith("_torch") else source.name
        if name not in kerasnets.list_models():
            raise UsageError(f"model {source.name!r} is not a registry model built by kerasnets.get_model; pass its "
                             "registry name or spec (a ModelSpec or spec JSON) instead.")
        if kwargs:
            raise UsageError(f"option {next(iter(kwargs))!r} does not apply to an already built model; pass the "
                             "registry name with the option instead.")
        spec = get_spec(name)
        build = {**_options_of_model(source), **build}
        shape = tuple(source.input_shape[1:])
        if input_shape is not None and tuple(input_shape) != shape:
            raise UsageError(f"input_shape={tuple(input_shape)!r} differs from the model's {shape!r}; drop "
                             "input_shape or rebuild the model at that size.")
        input_shape = shape
        if len(source.output_shape) == 2 and "classes" not in model_kwargs:
            model_kwargs["classes"] = int(source.output_shape[-1])
    elif isinstance(model_or_name, ModelSpec):
        spec, name = model_or_name, model_or_name.name
        if kwargs:
            raise UsageError(f"option {next(iter(kwargs))!r} does not apply to a spec; change the spec instead.")
    elif isinstance(model_or_name, (str, os.PathLike)) and (str(model_or_name).endswith(".json")
                                                           or os.path.isfile(model_or_name)):
        spec, file_options = load_spec(model_or_name)
        name = spec.name
        build = {**file_options, **build}
        if kwargs:
            raise UsageError(f"option {next(iter(kwargs))!r} does not apply to a spec file; change the spec instead.")
    elif isinstance(model_or_name, str):
        name = model_or_name
        spec = get_spec(name, **kwargs)
    else:
        raise UsageError(f"model {model_or_name!r} is a {type(model_or_name).__name__}; pass a registry name, a "
                         "ModelSpec, a spec JSON path or a Keras model from kerasnets.get_model.")
    if input_shape is None:
        input_shape = tuple(spec.default_size) + (3,)
    build = dataclasses.asdict(BuildOptions(**build))  # checks each option
    return name, spec, build, model_kwargs, tuple(input_shape), source


class _Builder:
    """Builds and costs (spec, options) states, each once."""

    def __init__(self, profile, policy, input_shape, model_kwargs):
        self.profile, self.policy, self.input_shape, self.model_kwargs = profile, policy, input_shape, model_kwargs
        self.models, self.latency_ms = {}, {}

    @staticmethod
    def key(spec, options):
        return spec, tuple(sorted(options.items()))

    def model(self, spec, options):
        key = self.key(spec, options)
        if key not in self.models:
            self.models[key] = kerasnets.get_model(spec=spec, input_shape=self.input_shape, **self.model_kwargs,
                                                   **options)
        return self.models[key]

    def latency(self, spec, options):
        key = self.key(spec, options)
        if key not in self.latency_ms:
            result = estimate(self.model(spec, options), self.profile, policy=self.policy)
            self.latency_ms[key] = float(result["totals"]["latency_ms"])
        return self.latency_ms[key]


# -------------------------------------------------------------------------------- rules ----
# Each rule: (spec, options, model, profile, params) -> None (nothing to do) or
# (spec, options, where, reason); a rule may add a note through ``notes``.

def _grouped_convs(model):
    return [layer.name for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D)
            and getattr(layer, "groups", 1) > 1]


def rule_group_conv_form(spec, options, model, profile, params, notes):
    where = _grouped_convs(model)
    if not where:
        return None
    entry = profile.support.ops.get("group_conv")
    forms = list(entry.forms or []) if entry else []
    current = options["group_conv"]
    if current in forms:
        return None
    usable = [f for f in forms if f in ("native", "split")]
    if not usable:
        notes.append(f"group_conv_form: support.ops.group_conv.forms = {forms} names no form kerasnets builds "
                     "(native, split); the grouped convs stay as they are.")
        return None
    reason = (f"support.ops.group_conv.forms = {forms} lacks {current!r}: the grouped convs are built in the "
              f"{usable[0]!r} form (same weights)")
    return spec, {**options, "group_conv": usable[0]}, where, reason


def rule_shuffle_form(spec, options, model, profile, params, notes):
    where = [layer.name for layer in model.layers if isinstance(layer, kn_layers.ChannelShuffle)]
    if not where:
        return None
    limit = profile.support.max_nonunit_dims
    entry = profile.support.ops.get("shuffle")
    modes = (entry.modes if entry else None) or list(SHUFFLE_RANK)
    current = options["shuffle"]
    if SHUFFLE_RANK[current] <= limit and current in modes:
        return None
    fits = [m for m in SHUFFLE_RANK if SHUFFLE_RANK[m] <= limit and m in modes]
    if not fits:
        notes.append(f"shuffle_form: no channel-shuffle form fits support.max_nonunit_dims = {limit}; the shuffles "
                     "stay on the CPU.")
        return None
    reason = (f"support.max_nonunit_dims = {limit} < the {SHUFFLE_RANK[current]} non-unit dims of the "
              f"{current!r} shuffle: built in the {fits[0]!r} form ({SHUFFLE_RANK[fits[0]]} dims, same function)")
    return spec, {**options, "shuffle": fits[0]}, where, reason


def rule_depthwise_to_group(spec, options, model, profile, params, notes):
    eff = profile.compute.efficiency
    ratio = eff.depthwise / eff.conv
    limit = params.get("max_depthwise_ratio", 0.25)
    if ratio >= limit:
        return None
    cpg = int(params.get("channels_per_group") or profile.best_channels_per_group())
    prefixes = block_prefixes(spec)
    blocks, where, skipped, other = list(spec.blocks), [], [], set()
    for i, b in enumerate(spec.blocks):
        if b.kind == "ir" and b.group_width == 0:
            if b.mid % cpg:
                skipped.append(prefixes[i])
                continue
            blocks[i] = dataclasses.replace(b, group_width=cpg)
            where.append(f"{prefixes[i]} (mid {b.mid}: {b.mid // cpg} groups of {cpg})")
        elif b.kind in ("ds", "ghost", "repghost", "shuffle_v1", "shuffle_v2"):
            other.add(b.kind)
    if other:
        notes.append(f"depthwise_to_group: the depthwise convs of {', '.join(sorted(other))} blocks stay depthwise "
                     "(the builder has no group-conv form of those blocks).")
    if skipped:
        notes.append(f"depthwise_to_group: {', '.join(skipped)} kept depthwise (mid not a multiple of {cpg}).")
    if not where:
        return None
    reason = (f"compute.efficiency.depthwise = {eff.depthwise:.3g} is {ratio:.2f}x compute.efficiency.conv "
              f"(below max_depthwise_ratio {limit}); group_conv_by_channels_per_group is best at {cpg} "
              f"({profile.group_conv_efficiency(cpg):.3g})")
    return dataclasses.replace(spec, blocks=tuple(blocks), name=f"{spec.name}_gw{cpg}"), options, where, reason


_WIDTH_FIELDS = ("out", "mid", "se_channels")


def rule_align_channels(spec, options, model, profile, params, notes):
    alignment = int(profile.compute.channel_alignment)
    if alignment <= params.get("above", 8):
        return None
    prefixes = block_prefixes(spec)
    blocks, where, kept = [], [], []
    for prefix, b in zip(prefixes, spec.blocks):
        if b.kind in ("shuffle_v1", "maxpool", "norm_act"):
            if b.kind == "shuffle_v1":
                kept.append(prefix)
            blocks.append(b)
            continue
        unit = alignment
        for width in (b.group_width, b.group_width2):  # ir / regnet_x / varg / mixvarge group widths
            if width:
                unit = math.lcm(unit, width)
        if b.kind == "conv" and b.groups > 1:
            unit = math.lcm(unit, b.groups)
        if b.kind == "shuffle_v2":
            unit = 2 * alignment  # both halves aligned
        new = {f: align_up(getattr(b, f), unit if f != "se_channels" else alignment)
               for f in _WIDTH_FIELDS if getattr(b, f)}
        changed = {f: (getattr(b, f), v) for f, v in new.items() if v != getattr(b, f)}
        if changed:
            where.append(f"{prefix} (" + ", ".join(f"{f} {a}->{v}" for f, (a, v) in changed.items()) + ")")
        blocks.append(dataclasses.replace(b, **new))
    top = spec.top
    if top.channels and top.channels % alignment:
        top = dataclasses.replace(top, channels=align_up(top.channels, alignment))
        where.append(f"top (channels {spec.top.channels}->{top.channels})")
    if kept:
        notes.append(f"align_channels: {', '.join(kept)} kept their widths (a ShuffleNet V1 unit's concat width "
                     "follows its input).")
    if not where:
        return None
    reason = (f"compute.channel_alignment = {alignment} > {params.get('above', 8)}: every width is padded to "
              f"{alignment} on this NPU anyway, so rounding it up costs nothing and uses the padding")
    return (dataclasses.replace(spec, blocks=tuple(blocks), top=top, name=f"{spec.name}_align{alignment}"),
            options, where, reason)


def rule_activation_fallback(spec, options, model, profile, params, notes):
    supported = set(profile.support.activations)
    fallbacks = params.get("fallbacks", {})
    swaps, missing = {}, set()

    def pick(act):
        if act is None or act in supported:
            return act
        for alt in fallbacks.get(act, []):
            if alt in supported and alt in BUILDER_ACTIVATIONS:
                swaps[act] = alt
                return alt
        missing.add(act)
        return act

    prefixes = block_prefixes(spec)
    blocks, where = [], []
    for prefix, b in zip(prefixes, spec.blocks):
        new = dataclasses.replace(b, act=pick(b.act), se_gate=pick(b.se_gate) if b.se else b.se_gate)
        if new != b:
            where.append(prefix)
        blocks.append(new)
    top = dataclasses.replace(spec.top, act=pick(spec.top.act)) if spec.top.kind == "pool_conv_fc" else spec.top
    if top != spec.top:
        where.append("top")
    if missing:
        notes.append(f"activation_fallback: no supported fallback for {', '.join(sorted(missing))} in "
                     "retarget.rules.activation_fallback.fallbacks; those layers stay off the NPU.")
    if not where:
        return None
    reason = (f"support.activations = {sorted(supported)} lacks " +
              ", ".join(f"{a} (-> {b})" for a, b in sorted(swaps.items())))
    return (dataclasses.replace(spec, blocks=tuple(blocks), top=top, name=f"{spec.name}_" + "_".join(
        sorted(set(swaps.values())))), options, where, reason)


RULES = {"group_conv_form": rule_group_conv_form, "shuffle_form": rule_shuffle_form,
         "depthwise_to_group": rule_depthwise_to_group, "align_channels": rule_align_channels,
         "activation_fallback": rule_activation_fallback}
assert set(RULES) == set(RETARGET_RULES), "every rule a profile may list has an implementation"


def _function_rules(profile):
    return [(r, p) for r, p in profile.retarget.rules.items() if RETARGET_RULES[r][0] == "function"]


def _complete(builder, spec, options, profile, notes):
    """Apply the function rules silently to (spec, options); returns (options, the rules that changed them)."""
    fired = []
    for rule, params in _function_rules(profile):
        out = RULES[rule](spec, options, builder.model(spec, options), profile, params, notes)
        if out is not None:
            options = out[1]
            fired.append(rule)
    return options, fired


# ------------------------------------------------------------------------------ retarget ----

def retarget(model_or_name, profile, input_shape=None, level="function", policy="max_npu", **get_model_kwargs):
    """Adapt a model to ``profile`` with the rules of its ``retarget`` section; returns a :class:`RetargetResult`.

    Args:
      model_or_name: a registry name (``"axspine_middle"``), a :class:`~kerasnets.spec.ModelSpec`,
        the path of a spec JSON, or a Keras model built by ``kerasnets.get_model`` (whose weights
        are then copied into the result at the function level).
      profile: an NPU profile name, path or :class:`~export.profiles.Profile` with a ``retarget`` section.
      input_shape: (height, width, 3) the estimates are made at (default: the spec's size).
      level: ``"function"`` (same weights, same outputs) or ``"architecture"`` (also the spec
        transforms, which change the function).
      policy: the placement policy of the estimates (:data:`kerasnets.export.placement.POLICIES`).
      **get_model_kwargs: as ``kerasnets.get_model``: build options (``group_conv``,
        ``shuffle``, ``convention`` ...), the family's tunable arguments, ``classes``,
        ``include_top``, ``pooling``, ``classifier_activation``.
    """
    check_level(level)
    check_policy(policy)
    profile = retarget_profile(profile)
    kwargs = dict(get_model_kwargs)
    name, spec, options, model_kwargs, input_shape, source = _resolve(model_or_name, input_shape, kwargs)
    builder = _Builder(profile, policy, input_shape, model_kwargs)
    original_spec, original_options = spec, dict(options)
    original = source if source is not None else builder.model(spec, options)
    if source is not None:
        builder.models[builder.key(spec, options)] = source
    changes, notes = [], []
    rules = profile.retarget.rules
    order = [r for r in rules if RETARGET_RULES[r][0] == "function"]
    later = [r for r in rules if RETARGET_RULES[r][0] == "architecture"]
    if level == "architecture":
        order += later
    elif later:
        notes.append(f"{', '.join(later)} change the function and apply only at level='architecture'.")
    for rule in order:
        params = rules[rule]
        rule_level = RETARGET_RULES[rule][0]
        before = builder.latency(spec, options)
        try:
            out = RULES[rule](spec, options, builder.model(spec, options), profile, params, notes)
        except ModelConfigError as e:
            notes.append(f"{rule}: not applied ({str(e).rstrip('.')}).")
            continue
        if out is None:
            continue
        new_spec, new_options, where, reason = out
        if rule_level == "architecture":
            try:
                new_options, fired = _complete(builder, new_spec, new_options, profile, notes)
            except ModelConfigError as e:
                notes.append(f"{rule}: not applied, the builder refuses the result ({str(e).rstrip('.')}).")
                continue
            if fired:
                reason += f"; then {', '.join(fired)} again for the new layers"
        after = builder.latency(new_spec, new_options)
        applied = not (rule_level == "architecture" and params.get("require_speedup") and after >= before)
        if not applied:
            reason += f"; undone: no estimated speed-up ({before:.3f} -> {after:.3f} ms)"
        changes.append(Change(rule, rule_level, list(where), reason, before, after if applied else before, applied))
        if applied:
            spec, options = new_spec, new_options
    model = builder.model(spec, options)
    if model is not original and level == "function":
        copy_weights(original, model)  # same function: the result runs with the original's weights
    return RetargetResult(name, profile.name, level, policy, input_shape, original_spec, spec, original_options,
                          options, original, model, changes, notes)
