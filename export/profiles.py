"""Hardware profiles: data files describing an accelerator (or the host CPU), loaded and validated.

A profile is a JSON file in ``export/profiles/`` (or in the folder named by the
``KERASNETS_PROFILE_DIR`` environment variable, then ``~/.config/kerasnets/profiles``,
both searched before the package, so a host CPU calibrated with
``kerasnets-estimate --calibrate`` replaces the shipped one). Adding an
accelerator means adding a file: the estimator (:mod:`kerasnets.export.cost`) and the partitioner
(:mod:`kerasnets.export.partition`) read nothing else about the hardware.

Two kinds of profile exist:

* ``npu`` profiles describe an accelerator analytically (a roofline per layer): peak MAC
  rate per precision, clock, channel alignment, efficiency per op kind and shape, per-op
  and per-invoke overheads, on-chip memory for parameters and activations, bandwidths
  of on-chip memory and of the host link, supported ops with their constraints, and the
  segment rule. The CPU side of a partition is costed with the profile named in
  ``host.profile``.
* ``cpu`` profiles hold fitted predictors, one per kernel kind and precision:
  ``time = fixed_s + per_mac_s * MACs + per_byte_s * bytes`` plus optional terms per
  input, output and parameter byte, per output pixel, per group and per group-pixel, a kernel-regression
  table correcting each predictor near measured kernels (``residuals``), and per precision
  an optional in-model context (``context_factor``, ``context_per_op_s`` and
  ``context_per_param_byte_s``: kernels inside a whole model against the same kernels
  alone; ``context_param_cache_curve``: the measured seconds a model pays on top when its
  parameters, that many bytes in all, do not fit the caches, as ``[bytes, seconds]`` points,
  spread over its ops by their parameter bytes; see :mod:`kerasnets.export.calibrate`).

A profile may name another in ``inherits``; the two are merged key by key (the child's
values win) before validation. A malformed profile raises :class:`ProfileError`, whose
one sentence names the bad field. A valid one is read as typed objects: :func:`load_profile`
returns an :class:`NpuProfile` (``profile.compute.channel_alignment``, ``profile.support.ops``
...) or a :class:`CpuProfile` (``profile.predictors[precision][kind].per_mac_s`` ...), whose
:meth:`Profile.to_dict` gives the validated data back for writing.
"""
import copy
import dataclasses
import difflib
import functools
import json
import math
import os

from kerasnets.errors import KerasnetsError
from kerasnets.io import read_json_file

PRECISIONS = ("int8", "int16", "float16", "float32")
# Op kinds the estimator knows (see export.cost.OP_KINDS for their meaning).
SUPPORT_OPS = ("conv", "depthwise", "group_conv", "dense", "batchnorm", "add", "multiply", "concat", "slice", "pad",
               "shuffle", "max_pool", "avg_pool", "global_pool", "adaptive_pool", "reshape", "softmax",
               "activation")
ACTIVATIONS = ("linear", "relu", "relu6", "hard_swish", "hard_sigmoid", "sigmoid", "softmax", "tanh", "swish")
MEMORY_OP_KINDS = ("elementwise", "concat", "slice", "shuffle", "pool", "reshape")
CPU_KINDS = ("conv", "conv1x1", "depthwise", "group_conv", "dense", "add", "multiply", "concat", "slice",
             "shuffle", "max_pool", "avg_pool", "global_pool", "activation", "activation_hard_swish",
             "activation_hard_sigmoid", "activation_sigmoid", "softmax", "reshape")
# Optional terms of a CPU predictor beside fixed_s, per_mac_s and per_byte_s (export.cost.CPU_TERMS).
CPU_OPTIONAL_TERMS = ("per_in_byte_s", "per_out_byte_s", "per_param_byte_s", "per_group_s", "per_group_pixel_s",
                      "per_pixel_s")
CONSTRAINT_KEYS = {"kernel_sizes": int, "strides": int, "pool_sizes": int, "forms": str, "max_channels": int,
                   "modes": str}
# Retarget rules an NPU profile may list in its ``retarget.rules`` section (applied by export.retarget, in
# the order listed): rule -> (level, {parameter: type}, profile fields the rule reads). ``function`` rules
# keep the weights and the outputs (a build option); ``architecture`` rules change the spec.
RETARGET_LEVELS = ("function", "architecture")
RETARGET_RULES = {
    "group_conv_form": ("function", {}, ("support.ops.group_conv.forms",)),
    "shuffle_form": ("function", {}, ("support.max_nonunit_dims",)),
    "depthwise_to_group": ("architecture", {"channels_per_group": int, "max_depthwise_ratio": float,
                                            "require_speedup": bool},
                           ("compute.efficiency.depthwise", "compute.efficiency.conv",
                            "compute.efficiency.group_conv_by_channels_per_group")),
    "align_channels": ("architecture", {"above": int, "require_speedup": bool}, ("compute.channel_alignment",)),
    "activation_fallback": ("architecture", {"fallbacks": dict}, ("support.activations",)),
}
# The fields of every level of a profile whose keys are fixed (not data keyed by precision, kernel or
# free text such as ``assumptions``): a key outside them is a misspelling, refused with the closest
# valid one, since a misspelled optional field would otherwise silently disable its rule.
COMMON_FIELDS = ("name", "kind", "description", "sources", "device_label", "inherits", "assumptions", "fitted_to",
                 "fitted_fields")
NPU_FIELDS = {
    "": COMMON_FIELDS + ("compute", "memory", "memory_ops", "support", "segments", "host", "retarget"),
    "compute": ("peak_macs_per_s", "clock_hz", "channel_alignment", "efficiency", "op_overhead_s",
                "invoke_overhead_s"),
    "compute.peak_macs_per_s": PRECISIONS,
    "compute.efficiency": ("conv", "conv1x1", "depthwise", "dense", "group_conv_by_channels_per_group"),
    "memory": ("param_cache_bytes", "activation_bytes", "onchip_bandwidth_bytes_per_s",
               "offchip_bandwidth_bytes_per_s", "host_link_bandwidth_bytes_per_s", "host_link_latency_s",
               "param_stream_from"),
    "memory_ops": MEMORY_OP_KINDS,
    "support": ("data_types", "ops", "activations", "max_nonunit_dims"),
    "support.ops": SUPPORT_OPS,
    "segments": ("max_npu_segments", "cpu_round_trip_s"),
    "host": ("profile", "speed_factor"),
    "retarget": ("rules",),
    "retarget.rules": tuple(RETARGET_RULES),
}
# A CPU profile's in-model context, each keyed by precision: the factor on the kernels, then the terms in seconds
# per op and per parameter byte, and the parameter-cache curve ([bytes, seconds] points).
CPU_CONTEXT_KEYS = ("context_factor", "context_per_op_s", "context_per_param_byte_s", "context_param_cache_curve")
CPU_FIELDS = {
    "": COMMON_FIELDS + ("threads", "measured_on", "invoke_overhead_s", "peak_macs_per_s", "predictors",
                         "residuals", "fit", "context_fit", "calibration") + CPU_CONTEXT_KEYS,
    "invoke_overhead_s": PRECISIONS,
    "peak_macs_per_s": PRECISIONS,
    "predictors": PRECISIONS,
    "residuals": PRECISIONS,
    **{key: PRECISIONS for key in CPU_CONTEXT_KEYS},
}
RESIDUAL_FIELDS = ("points", "log_ratio", "scale", "bandwidth", "prior")


USER_PROFILE_DIR = os.path.expanduser("~/.config/kerasnets/profiles")


class ProfileError(KerasnetsError, ValueError):
    """A hardware profile that is missing, malformed or inconsistent."""


def profile_dirs():
    """Folders searched for ``NAME.json``, first match wins."""
    dirs = []
    if os.environ.get("KERASNETS_PROFILE_DIR"):
        dirs.append(os.environ["KERASNETS_PROFILE_DIR"])
    dirs.append(USER_PROFILE_DIR)
    dirs.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiles"))
    return dirs


def list_profiles():
    """Sorted names of every profile found."""
    names = set()
    for d in profile_dirs():
        if os.path.isdir(d):
            names.update(f[:-5] for f in os.listdir(d) if f.endswith(".json") and not f.startswith("."))
    return sorted(names)


def _find(name):
    for d in profile_dirs():
        path = os.path.join(d, f"{name}.json")
        if os.path.isfile(path):
            return path
    return None


def _merge(base, child):
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read(path, label):
    return read_json_file(path, "profile", ProfileError, "pass a profile JSON file", label)


def _resolve(data, label, seen=()):
    parent = data.get("inherits")
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ProfileError(f"profile {label}: field 'inherits' must be a profile name, got {parent!r}.")
    if parent in seen:
        raise ProfileError(f"profile {label}: field 'inherits' makes a cycle through {parent!r}; break it.")
    path = _find(parent)
    if path is None:
        raise ProfileError(f"profile {label}: field 'inherits' names {parent!r}, which does not exist; "
                           f"use one of {list_profiles()}.")
    base = _resolve(_read(path, repr(parent)), repr(parent), seen + (parent,))
    merged = _merge(base, {k: v for k, v in data.items() if k != "inherits"})
    merged["inherits"] = parent
    # What a child does not say about its own fit is not inherited.
    for key in ("fitted_to", "fitted_fields"):
        if key not in data:
            merged.pop(key, None)
    return merged


class _Checker:
    def __init__(self, data, label):
        self.data = data
        self.label = label

    def fail(self, field, problem):
        raise ProfileError(f"profile {self.label}: field '{field}' {problem}; fix it in the profile file.")

    def known_keys(self, field, valid, what="field"):
        """Refuse a key of the mapping at ``field`` ('' for the top level) outside ``valid``, naming the closest."""
        node = self.data if not field else self.get(field, required=False)
        if not isinstance(node, dict):
            return
        for key in node:
            if key not in valid:
                article = "an" if what[0] in "aeiou" else "a"
                self.fail(f"{field}.{key}" if field else str(key), f"is not {article} {what}{closest(key, valid)}")

    def get(self, field, required=True):
        node = self.data
        for part in field.split("."):
            if not isinstance(node, dict) or part not in node:
                if required:
                    self.fail(field, "is missing")
                return None
            node = node[part]
        return node

    def number(self, field, low=0.0, high=math.inf, low_open=False, required=True, value=None):
        v = self.get(field, required) if value is None else value
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(field, f"must be a number, got {v!r}")
        if v < low or (low_open and v == low) or v > high:
            bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high != math.inf else "")
            self.fail(field, f"must be {bound}, got {v!r}")
        return v

    def integer(self, field, low=1, required=True):
        v = self.get(field, required)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            self.fail(field, f"must be an integer >= {low}, got {v!r}")
        return v

    def string(self, field, choices=None, required=True):
        v = self.get(field, required)
        if v is None:
            return None
        if not isinstance(v, str) or (choices and v not in choices):
            self.fail(field, f"must be one of {list(choices)}, got {v!r}" if choices else f"must be a string, got {v!r}")
        return v

    def mapping(self, field, required=True):
        v = self.get(field, required)
        if v is None:
            return None
        if not isinstance(v, dict):
            self.fail(field, f"must be an object, got {type(v).__name__}")
        return v

    def string_list(self, field, choices=None, required=True):
        v = self.get(field, required)
        if v is None:
            return None
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            self.fail(field, f"must be a list of strings, got {v!r}")
        for s in v:
            if choices and s not in choices:
                self.fail(field, f"has unknown entry {s!r}; use entries of {list(choices)}")
        return v


def closest(key, valid):
    """' (did you mean X?)' for the valid name closest to ``key``, else a list of the valid names."""
    match = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1, cutoff=0.5)
    if match:
        return f" (did you mean {match[0]!r}?)"
    return f" (valid: {', '.join(sorted(str(v) for v in valid))})"


def _check_known_keys(c, kind):
    """Refuse unknown keys at every fixed-key level of a ``kind`` profile (see :data:`NPU_FIELDS`)."""
    names = {PRECISIONS: "precision", SUPPORT_OPS: "op kind", MEMORY_OP_KINDS: "memory op kind",
             tuple(RETARGET_RULES): "retarget rule"}
    for field, valid in (NPU_FIELDS if kind == "npu" else CPU_FIELDS).items():
        c.known_keys(field, valid, names.get(valid, "field"))
    if kind == "npu":
        for op, constraints in (c.get("support.ops", required=False) or {}).items():
            if op in SUPPORT_OPS and isinstance(constraints, dict):
                c.known_keys(f"support.ops.{op}", CONSTRAINT_KEYS, "constraint")
        for rule, params in (c.get("retarget.rules", required=False) or {}).items():
            if rule in RETARGET_RULES and isinstance(params, dict):
                c.known_keys(f"retarget.rules.{rule}", tuple(RETARGET_RULES[rule][1]), "rule parameter")
        return
    terms = ("fixed_s", "per_mac_s", "per_byte_s", "channel_align") + CPU_OPTIONAL_TERMS
    for p, kinds in (c.get("predictors", required=False) or {}).items():
        if isinstance(kinds, dict):
            c.known_keys(f"predictors.{p}", CPU_KINDS, "kernel kind")
            for k, coeffs in kinds.items():
                if isinstance(coeffs, dict):
                    c.known_keys(f"predictors.{p}.{k}", terms, "predictor term")
    for p, kinds in (c.get("residuals", required=False) or {}).items():
        if isinstance(kinds, dict):
            c.known_keys(f"residuals.{p}", CPU_KINDS, "kernel kind")
            for k, table in kinds.items():
                if isinstance(table, dict):
                    c.known_keys(f"residuals.{p}.{k}", RESIDUAL_FIELDS)


def validate(data, label="<profile>"):
    """Check a profile dict; raise :class:`ProfileError` naming the first bad field.

    Unknown keys are refused at every level with a fixed set of keys (a misspelled optional
    field would otherwise silently turn its rule off), naming the closest valid key.
    """
    if not isinstance(data, dict):
        raise ProfileError(f"profile {label} must be a JSON object, not {type(data).__name__}; fix the file.")
    c = _Checker(data, label)
    c.string("name")
    kind = c.string("kind", ("npu", "cpu"))
    _check_known_keys(c, kind)
    c.string("description")
    c.string_list("sources")
    if kind == "npu":
        peaks = c.mapping("compute.peak_macs_per_s")
        if not peaks:
            c.fail("compute.peak_macs_per_s", "must name at least one precision")
        for p in peaks:
            if p not in PRECISIONS:
                c.fail(f"compute.peak_macs_per_s.{p}", f"is not a precision; use one of {list(PRECISIONS)}")
            c.number(f"compute.peak_macs_per_s.{p}", low_open=True)
        c.number("compute.clock_hz", low_open=True)
        c.integer("compute.channel_alignment")
        for k in ("conv", "conv1x1", "depthwise", "dense"):
            c.number(f"compute.efficiency.{k}", 0.0, 1.0, low_open=True)
        table = c.mapping("compute.efficiency.group_conv_by_channels_per_group")
        if not table:
            c.fail("compute.efficiency.group_conv_by_channels_per_group", "must have at least one entry")
        for cpg in table:
            if not cpg.isdigit() or int(cpg) < 1:
                c.fail(f"compute.efficiency.group_conv_by_channels_per_group.{cpg}",
                       "must be keyed by a positive integer channels-per-group")
            c.number(f"compute.efficiency.group_conv_by_channels_per_group.{cpg}", 0.0, 1.0, low_open=True)
        c.number("compute.op_overhead_s")
        c.number("compute.invoke_overhead_s")
        for k in ("param_cache_bytes", "activation_bytes"):
            c.number(f"memory.{k}")
        for k in ("onchip_bandwidth_bytes_per_s", "offchip_bandwidth_bytes_per_s", "host_link_bandwidth_bytes_per_s"):
            c.number(f"memory.{k}", low_open=True)
        c.number("memory.host_link_latency_s")
        c.string("memory.param_stream_from", ("offchip", "host_link"))
        for k in MEMORY_OP_KINDS:
            c.number(f"memory_ops.{k}", 0.0, 1.0, low_open=True)
        types = c.string_list("support.data_types", PRECISIONS)
        for t in types:
            if t not in peaks:
                c.fail("support.data_types", f"lists {t!r} but compute.peak_macs_per_s has no rate for it")
        ops = c.mapping("support.ops")
        for op, constraints in ops.items():
            if op not in SUPPORT_OPS:
                c.fail(f"support.ops.{op}", f"is not an op kind{closest(op, SUPPORT_OPS)}")
            c.mapping(f"support.ops.{op}")
            for key, values in constraints.items():
                field = f"support.ops.{op}.{key}"
                if key not in CONSTRAINT_KEYS:
                    c.fail(field, f"is not a constraint; use one of {sorted(CONSTRAINT_KEYS)}")
                want = CONSTRAINT_KEYS[key]
                if key == "max_channels":
                    c.integer(field)
                elif not isinstance(values, list) or not all(isinstance(v, want) and not isinstance(v, bool)
                                                             for v in values):
                    c.fail(field, f"must be a list of {want.__name__}, got {values!r}")
        c.string_list("support.activations", ACTIVATIONS)
        rank = c.get("support.max_nonunit_dims", required=False)
        if rank is not None:
            c.integer("support.max_nonunit_dims")
        c.integer("segments.max_npu_segments")
        c.number("segments.cpu_round_trip_s")
        c.string("host.profile")
        c.number("host.speed_factor", low_open=True)
        _check_retarget(c)
    else:
        c.integer("threads")
        predictors = c.mapping("predictors")
        if not predictors:
            c.fail("predictors", "must name at least one precision")
        for p, kinds in predictors.items():
            if p not in PRECISIONS:
                c.fail(f"predictors.{p}", f"is not a precision; use one of {list(PRECISIONS)}")
            c.mapping(f"predictors.{p}")
            c.number(f"invoke_overhead_s.{p}")
            c.number(f"peak_macs_per_s.{p}", low_open=True)
            for k, coeffs in kinds.items():
                if k not in CPU_KINDS:
                    c.fail(f"predictors.{p}.{k}", f"is not a kernel kind; use one of {list(CPU_KINDS)}")
                for coef in ("fixed_s", "per_mac_s", "per_byte_s"):
                    c.number(f"predictors.{p}.{k}.{coef}")
                if "channel_align" in coeffs:
                    c.integer(f"predictors.{p}.{k}.channel_align")
                for coef in coeffs:
                    if coef == "channel_align":
                        continue
                    if coef not in CPU_OPTIONAL_TERMS + ("fixed_s", "per_mac_s", "per_byte_s"):
                        c.fail(f"predictors.{p}.{k}.{coef}", f"is not a predictor term; use fixed_s, per_mac_s, "
                               f"per_byte_s or one of {list(CPU_OPTIONAL_TERMS)}")
                    c.number(f"predictors.{p}.{k}.{coef}")
            if p in (data.get("context_factor") or {}):
                c.number(f"context_factor.{p}", low_open=True)
            for key in CPU_CONTEXT_KEYS[1:3]:
                if p in (data.get(key) or {}):
                    c.number(f"{key}.{p}")
            if p in (data.get("context_param_cache_curve") or {}):
                _check_param_cache_curve(c, f"context_param_cache_curve.{p}", data["context_param_cache_curve"][p])
            for k, table in (data.get("residuals") or {}).get(p, {}).items():
                _check_residuals(c, f"residuals.{p}.{k}", table)
            for k in ("conv", "add"):
                if k not in kinds:
                    c.fail(f"predictors.{p}.{k}", "is missing (every CPU profile needs conv and add predictors)")
    return data


def _check_retarget(c):
    """The optional ``retarget`` section: rules by name, their parameters' types, and the fields each reads."""
    if c.get("retarget", required=False) is None:
        return
    c.mapping("retarget")
    rules = c.mapping("retarget.rules")
    for rule, params in rules.items():
        field = f"retarget.rules.{rule}"
        c.mapping(field)
        for key, want in RETARGET_RULES[rule][1].items():
            value = params.get(key)
            if value is None:
                continue
            if want is bool and not isinstance(value, bool):
                c.fail(f"{field}.{key}", f"must be true or false, got {value!r}")
            elif want is int:
                c.integer(f"{field}.{key}")
            elif want is float:
                c.number(f"{field}.{key}", low_open=True)
            elif want is dict:
                if not isinstance(value, dict) or not all(isinstance(v, list) and all(isinstance(a, str) for a in v)
                                                          for v in value.values()):
                    c.fail(f"{field}.{key}", "must map each activation to a list of fallback activations")
        for needed in RETARGET_RULES[rule][2]:
            if c.get(needed, required=False) is None:
                c.fail(needed, f"is missing, and retarget rule {rule!r} needs it (or drop the rule)")


def param_cache_s(points, param_bytes):
    """A parameter-cache curve (``[(bytes, seconds)]`` points, or None) read at ``param_bytes``: 0 up to the
    first point, interpolated between points, and past the last one on at the last segment's slope."""
    if not points or param_bytes <= points[0][0]:
        return 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if param_bytes <= x1:
            return y0 + (y1 - y0) * (param_bytes - x0) / (x1 - x0)
    return y1 + (y1 - y0) / (x1 - x0) * (param_bytes - x1)


def _check_param_cache_curve(c, field, points):
    """A parameter-cache curve: two or more ``[bytes, seconds]`` points, bytes rising, seconds never falling."""
    if (not isinstance(points, list) or len(points) < 2
            or any(not isinstance(pt, list) or len(pt) != 2 or not all(isinstance(v, (int, float))
                                                                      and not isinstance(v, bool)
                                                                      and math.isfinite(v) and v >= 0 for v in pt)
                   for pt in points)):
        c.fail(field, f"must be a list of two or more [parameter bytes, seconds] pairs of non-negative numbers, "
                      f"not {points!r}")
    if any(b[0] <= a[0] or b[1] < a[1] for a, b in zip(points, points[1:])):
        c.fail(field, "must have rising parameter bytes and seconds that never fall")


def _check_residuals(c, field, table):
    """A kernel-regression table of a CPU predictor (export.cost.cpu_residual)."""
    if not isinstance(table, dict):
        c.fail(field, "must be a mapping with points, log_ratio, scale, bandwidth and prior")
    for key in ("bandwidth", "prior"):
        c.number(f"{field}.{key}", low_open=key == "bandwidth", value=table.get(key, "missing"))
    points, ratios, scale = table.get("points"), table.get("log_ratio"), table.get("scale")
    if not isinstance(scale, list) or not scale or not all(isinstance(v, (int, float)) and v > 0 for v in scale):
        c.fail(f"{field}.scale", "must be a list of positive numbers, one per feature")
    if (not isinstance(points, list) or not isinstance(ratios, list) or len(points) != len(ratios)
            or any(not isinstance(pt, list) or len(pt) != len(scale) for pt in points)):
        c.fail(f"{field}.points", f"must be a list of {len(scale)}-number points, one per log_ratio entry")


# ------------------------------------------------------------------------- typed profiles ----
# A validated profile is read through frozen dataclasses: ``profile.compute.channel_alignment``. Data keyed
# by precision, kernel kind, op kind or rule (peak rates, predictors, support.ops, retarget.rules) stays a
# dict, of typed values where the values have fixed fields. Optional fields absent from the file are None.
# The typed objects share their values with ``Profile.raw`` (the validated dict) and copy nothing.

class TypedRecord:
    """Base of the typed profile sections and the estimator's cost rows: reading a field that does not
    exist raises an AttributeError naming the closest one."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        valid = [f.name for f in dataclasses.fields(self)]
        raise AttributeError(f"{type(self).__name__} has no field {name!r}{closest(name, valid)}")


def _section(of, depth=0, optional=False):
    """A field holding a typed section ``of`` (under ``depth`` levels of data keys, e.g. precision -> kind)."""
    meta = {"of": of, "depth": depth}
    return dataclasses.field(default=None, metadata=meta) if optional else dataclasses.field(metadata=meta)


def _typed(cls, data, **extra):
    """A ``cls`` from its validated dict (plus ``extra`` fields): each field by name, nested sections by their
    ``_section`` type."""
    values = dict(extra)
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _nested(f.metadata["of"], data[f.name], f.metadata["depth"]) \
                if "of" in f.metadata else data[f.name]
    return cls(**values)


def _nested(cls, value, depth):
    if depth == 0:
        return _typed(cls, value)
    return {k: _nested(cls, v, depth - 1) for k, v in value.items()}


@dataclasses.dataclass(frozen=True)
class Efficiency(TypedRecord):
    """``compute.efficiency``: the fraction of peak an NPU reaches per op kind."""
    conv: float
    conv1x1: float
    depthwise: float
    dense: float
    group_conv_by_channels_per_group: dict   # channels per group (a digit string) -> efficiency


@dataclasses.dataclass(frozen=True)
class Compute(TypedRecord):
    """``compute``: peak MAC rate per precision, clock, channel alignment, efficiencies and overheads."""
    peak_macs_per_s: dict                    # precision -> MACs/s
    clock_hz: float
    channel_alignment: int
    efficiency: Efficiency = _section(Efficiency)
    op_overhead_s: float
    invoke_overhead_s: float


@dataclasses.dataclass(frozen=True)
class Memory(TypedRecord):
    """``memory``: on-chip sizes, bandwidths and the host link."""
    param_cache_bytes: int
    activation_bytes: int
    onchip_bandwidth_bytes_per_s: float
    offchip_bandwidth_bytes_per_s: float
    host_link_bandwidth_bytes_per_s: float
    host_link_latency_s: float
    param_stream_from: str                   # "offchip" or "host_link"


@dataclasses.dataclass(frozen=True)
class MemoryOps(TypedRecord):
    """``memory_ops``: the fraction of on-chip bandwidth each memory-bound op group reaches."""
    elementwise: float
    concat: float
    slice: float
    shuffle: float
    pool: float
    reshape: float


@dataclasses.dataclass(frozen=True)
class OpConstraints(TypedRecord):
    """One entry of ``support.ops``: what the NPU takes of that op kind (None: no constraint)."""
    kernel_sizes: list = None
    strides: list = None
    pool_sizes: list = None
    forms: list = None
    max_channels: int = None
    modes: list = None


@dataclasses.dataclass(frozen=True)
class Support(TypedRecord):
    """``support``: data types, supported ops with their constraints, activations, tensor rank."""
    data_types: list
    ops: dict = _section(OpConstraints, depth=1)   # op kind -> OpConstraints
    activations: list
    max_nonunit_dims: int = None


@dataclasses.dataclass(frozen=True)
class Segments(TypedRecord):
    """``segments``: the segment rule."""
    max_npu_segments: int
    cpu_round_trip_s: float


@dataclasses.dataclass(frozen=True)
class Host(TypedRecord):
    """``host``: the CPU profile that runs what the NPU does not, and its speed against that profile."""
    profile: str
    speed_factor: float


@dataclasses.dataclass(frozen=True)
class Retarget(TypedRecord):
    """``retarget``: rule name -> its parameters (a dict; see :data:`RETARGET_RULES`), in the order to apply."""
    rules: dict


@dataclasses.dataclass(frozen=True)
class CpuPredictor(TypedRecord):
    """One fitted CPU predictor (see :data:`CPU_OPTIONAL_TERMS`; an absent term is None and counts 0)."""
    fixed_s: float
    per_mac_s: float
    per_byte_s: float
    per_in_byte_s: float = None
    per_out_byte_s: float = None
    per_param_byte_s: float = None
    per_group_s: float = None
    per_group_pixel_s: float = None
    per_pixel_s: float = None
    channel_align: int = None                # output channels padded to this (None: 1)

    def term(self, name):
        """Coefficient ``name`` (0.0 when the predictor has no such term)."""
        value = getattr(self, name)
        return 0.0 if value is None else value


@dataclasses.dataclass(frozen=True)
class ResidualTable(TypedRecord):
    """A kernel-regression table correcting one CPU predictor (:func:`kerasnets.export.cost.cpu_residual`)."""
    points: list
    log_ratio: list
    scale: list
    bandwidth: float
    prior: float


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class Profile(TypedRecord):
    """A validated hardware profile (an :class:`NpuProfile` or a :class:`CpuProfile`): typed fields, plus
    ``raw`` (the validated dict, ``inherits`` resolved) that :meth:`to_dict` copies for writing it back."""
    name: str
    kind: str
    description: str
    sources: list
    device_label: str = None
    inherits: str = None
    assumptions: dict = None
    fitted_to: list = None
    fitted_fields: dict = None
    raw: dict = dataclasses.field(default=None, compare=False)
    path: str = dataclasses.field(default=None, compare=False)

    is_npu = property(lambda self: self.kind == "npu")

    def __repr__(self):  # the fields would print the whole file
        return f"{type(self).__name__}({self.name!r}, path={self.path!r})"

    def __hash__(self):  # by name, as equal profiles have equal names (the fields themselves hold dicts)
        return hash((self.kind, self.name))

    def to_dict(self):
        """A deep copy of the profile's data, as validated (the form :func:`parse_profile` takes and files hold)."""
        return copy.deepcopy(self.raw)

    def to_json(self):
        """The profile file's text (of :meth:`to_dict`)."""
        return json.dumps(self.raw, indent=1, sort_keys=False) + "\n"


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class NpuProfile(Profile):
    """An accelerator described analytically (``kind: npu``)."""
    __hash__ = Profile.__hash__  # a dataclass subclass would get one over its (unhashable) fields
    compute: Compute = _section(Compute)
    memory: Memory = _section(Memory)
    memory_ops: MemoryOps = _section(MemoryOps)
    support: Support = _section(Support)
    segments: Segments = _section(Segments)
    host: Host = _section(Host)
    retarget: Retarget = _section(Retarget, optional=True)

    def default_precision(self):
        """int8 (the NPU's native type) when supported, else its first data type."""
        types = self.support.data_types
        return "int8" if "int8" in types else types[0]

    def peak_macs(self, precision):
        """Peak MACs/s at ``precision`` (None when the profile has no rate for it)."""
        return self.compute.peak_macs_per_s.get(precision)

    def group_conv_efficiency(self, channels_per_group):
        """Efficiency at ``channels_per_group``, log-linearly interpolated in the profile's table."""
        table = sorted((int(k), v) for k, v in self.compute.efficiency.group_conv_by_channels_per_group.items())
        x = math.log2(max(1, channels_per_group))
        if x <= math.log2(table[0][0]):
            return table[0][1]
        for (c0, e0), (c1, e1) in zip(table, table[1:]):
            x0, x1 = math.log2(c0), math.log2(c1)
            if x <= x1:
                return e0 + (e1 - e0) * (x - x0) / (x1 - x0)
        return table[-1][1]

    def best_channels_per_group(self):
        table = self.compute.efficiency.group_conv_by_channels_per_group
        return int(max(table, key=lambda k: table[k]))

    def host_cpu(self):
        """The CPU profile that runs what the NPU does not, and its speed factor."""
        return load_profile(self.host.profile), float(self.host.speed_factor)


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class CpuProfile(Profile):
    """A CPU described by fitted predictors (``kind: cpu``); the per-precision dicts are keyed by precision."""
    __hash__ = Profile.__hash__
    threads: int
    invoke_overhead_s: dict
    peak_macs_per_s: dict
    predictors: dict = _section(CpuPredictor, depth=2)       # precision -> kernel kind -> CpuPredictor
    residuals: dict = _section(ResidualTable, depth=2, optional=True)  # precision -> kernel kind -> table
    measured_on: dict = None
    fit: dict = None
    context_factor: dict = None
    context_fit: list = None
    context_per_op_s: dict = None
    context_per_param_byte_s: dict = None
    context_param_cache_curve: dict = None
    calibration: dict = None

    def default_precision(self):
        """float32 when fitted, else the first fitted precision."""
        return "float32" if "float32" in self.predictors else sorted(self.predictors)[0]

    def peak_macs(self, precision):
        """Peak MACs/s at ``precision`` (None when the profile has no rate for it)."""
        return self.peak_macs_per_s.get(precision)

    def residual(self, precision, kind):
        """The :class:`ResidualTable` correcting predictor ``kind`` at ``precision``, or None."""
        return (self.residuals or {}).get(precision, {}).get(kind)

    def context(self, precision):
        """The in-model context at ``precision``: (factor, seconds per op, seconds per parameter byte)."""
        return ((self.context_factor or {}).get(precision, 1.0), (self.context_per_op_s or {}).get(precision, 0.0),
                (self.context_per_param_byte_s or {}).get(precision, 0.0))

    def param_cache_curve(self, precision):
        """The parameter-cache curve at ``precision`` as ``[(bytes, seconds)]`` points, or None: a model
        whose parameters total more bytes than the first point pays the seconds interpolated between the
        points, and past the last one the last segment's slope (they are fetched from memory each inference)."""
        points = (self.context_param_cache_curve or {}).get(precision)
        return [tuple(pt) for pt in points] if points else None

    def uncached_param_s(self, precision, param_bytes):
        """Seconds a model with ``param_bytes`` of parameters pays on top at ``precision`` (0 without a curve)."""
        return param_cache_s(self.param_cache_curve(precision), param_bytes)

    def host_cpu(self):
        """Itself at speed factor 1 (a CPU profile runs everything)."""
        return self, 1.0


def parse_profile(data, label="<profile>", path=None):
    """Resolve ``inherits``, validate and type a profile dict: an :class:`NpuProfile` or :class:`CpuProfile`."""
    if not isinstance(data, dict):
        raise ProfileError(f"profile {label} must be a JSON object, not {type(data).__name__}; fix the file.")
    data = validate(_resolve(data, label), label)
    return _typed(NpuProfile if data["kind"] == "npu" else CpuProfile, data, raw=data, path=path)


@functools.lru_cache(maxsize=64)
def _load_cached(path, mtime, by_name):
    label = repr(os.path.basename(path)[:-5]) if path.endswith(".json") else repr(path)
    data = _read(path, label)
    profile = parse_profile(data, label, path)
    stem = os.path.basename(path)[:-5]
    if by_name and profile.name != stem:
        raise ProfileError(f"profile {label}: field 'name' is {profile.name!r} but the file is {stem}.json; "
                           "make them equal.")
    return profile


def load_profile(name_or_path):
    """A :class:`Profile` by name (``edgetpu_usb``) or by path to a JSON file.

    Raises :class:`ProfileError` (one sentence) for an unknown name or a malformed file.
    """
    if isinstance(name_or_path, Profile):
        return name_or_path
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ProfileError(f"profile {name_or_path!r} is of type {type(name_or_path).__name__}; pass a profile name "
                           f"(one of {list_profiles()}), a path to a profile JSON or a Profile.")
    text = os.fspath(name_or_path)
    if not isinstance(text, str) or not text.strip():
        raise ProfileError(f"profile {text!r} is empty; pass a profile name (one of {list_profiles()}) or a path to "
                           "a profile JSON.")
    by_name = not (text.endswith(".json") or os.sep in text)
    if not by_name:
        path = text
        if os.path.isdir(path):
            raise ProfileError(f"profile path {path!r} is a folder; pass a profile JSON file.")
        if not os.path.isfile(path):
            what = "is not a regular file" if os.path.exists(path) else "does not exist"
            raise ProfileError(f"profile file {path!r} {what}; check the path.")
    else:
        path = _find(text)
        if path is None:
            close = difflib.get_close_matches(text, list_profiles(), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ProfileError(f"profile {text!r} is unknown{hint}; use one of {list_profiles()} or a path to a "
                               "JSON file.")
    return _load_cached(os.path.abspath(path), os.path.getmtime(path), by_name)
