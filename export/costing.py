"""Costing an analyzed graph on a hardware profile for a given placement (NPU or CPU per op).

:func:`estimate_graph` costs the ops of a :class:`kerasnets.export.graph.ModelGraph` and sums them
into totals: latency, fps, MAC utilization, parameter cache used and streamed, and the
transfers across the host link.

On an NPU profile an op costs ``overhead * tflite_ops + max(compute, memory)`` where
compute is the MACs after channel-alignment padding over ``peak * efficiency(kind,
shape)``, and memory is the bytes it moves (activations with channels padded, plus its
parameters, read from the on-chip cache or streamed when the cache is full) over the
bandwidth that applies. Concat, shuffle, slice, pooling and element-wise ops have no MACs
and cost memory traffic. On a CPU profile each op kind has a fitted linear predictor,
corrected near measured kernels and scaled by the fitted in-model context
(:mod:`kerasnets.export.calibrate`). Every row (a :class:`CostRow`) carries a ``reason`` saying which
effect set its cost.
"""
import dataclasses
import math

import numpy as np

from kerasnets.export.graph import CONV_KINDS, ModelGraph, analyze
from kerasnets.export.profiles import TypedRecord, load_profile
from kerasnets.errors import UsageError

ELEMENT_BYTES = {"int8": 1, "int16": 2, "float16": 2, "float32": 4}
# Op kinds whose cost is memory traffic, and the memory_ops efficiency each one uses.
MEMORY_GROUP = {"add": "elementwise", "multiply": "elementwise", "batchnorm": "elementwise",
                "activation": "elementwise", "softmax": "elementwise", "concat": "concat", "slice": "slice",
                "pad": "slice",  # a copy into a larger buffer, as a slice is a copy out of one
                "shuffle": "shuffle", "max_pool": "pool", "avg_pool": "pool", "global_pool": "pool",
                "adaptive_pool": "pool", "reshape": "reshape"}


@dataclasses.dataclass
class CostRow(TypedRecord):
    """One row of an estimate: an op (or a tensor crossing the host link), where it runs and what it costs.

    Made by one factory (:func:`_row`); :meth:`as_dict` is its JSON form. ``placement`` is ``npu``, ``cpu``,
    ``host`` (the model input) or ``link`` (a transfer). Optional fields are None where a row has no such
    key: the op fields on transfers, ``param_cache`` where an NPU op has no parameters, ``free`` on ops that
    run, ``placement_reason`` until :func:`kerasnets.export.cost.estimate` gives the partitioner's message.
    """
    name: str
    kind: str
    placement: str
    precision: str
    tflite_ops: list
    macs: int
    params: int
    padded_macs: int = 0
    efficiency: float = None         # fraction of peak of an NPU MAC op
    compute_ms: float = 0.0
    memory_ms: float = 0.0
    overhead_ms: float = 0.0
    stream_ms: float = 0.0           # streaming parameters that miss the NPU's cache
    latency_ms: float = 0.0
    bound: str = ""                  # compute, memory, overhead or link ("" for free ops)
    bytes_in: int = 0
    bytes_out: int = 0
    channels_padded: int = 0
    reason: str = ""
    class_name: str = None           # the op fields: None on transfers
    in_shapes: list = None
    out_shape: list = None
    activation: str = None
    param_cache: str = None          # "cached" or "streamed" for NPU ops with parameters
    free: bool = None                # True: removed at inference (folded, fused or an identity)
    placement_reason: str = None

    @property
    def layout(self):
        """Which :data:`ROW_LAYOUTS` key order :meth:`as_dict` writes."""
        if self.kind == "transfer":
            return "transfer"
        if self.kind == "input" or self.free:
            return "free"
        return "npu" if self.placement == "npu" else "cpu"

    def as_dict(self):
        """The row as JSON: the keys of its layout, those whose value is None left out (but ``efficiency``)."""
        return {k: v for k in ROW_LAYOUTS[self.layout] + ("placement_reason",)
                if (v := getattr(self, k)) is not None or k == "efficiency"}


ROW_FIELDS = tuple(f.name for f in dataclasses.fields(CostRow))
# The key order of CostRow.as_dict by layout (placement_reason last): the order rows have always had, kept
# because plan.json is written with unsorted keys.
_OP_KEYS = ("name", "kind", "class_name", "tflite_ops", "placement", "macs", "params", "in_shapes", "out_shape",
            "activation", "precision")
ROW_LAYOUTS = {
    "free": _OP_KEYS + ("padded_macs", "bytes_in", "bytes_out", "channels_padded", "compute_ms", "memory_ms",
                        "overhead_ms", "stream_ms", "latency_ms", "bound", "efficiency", "reason", "free"),
    "npu": _OP_KEYS + ("padded_macs", "efficiency", "compute_ms", "memory_ms", "stream_ms", "param_cache",
                       "overhead_ms", "bound", "latency_ms", "bytes_in", "bytes_out", "channels_padded", "reason"),
    "cpu": _OP_KEYS + ("padded_macs", "efficiency", "compute_ms", "memory_ms", "overhead_ms", "stream_ms",
                       "latency_ms", "bound", "bytes_in", "bytes_out", "channels_padded", "reason"),
    "transfer": ("name", "kind", "tflite_ops", "placement", "precision", "macs", "padded_macs", "params",
                 "bytes_in", "bytes_out", "channels_padded", "compute_ms", "memory_ms", "overhead_ms", "stream_ms",
                 "latency_ms", "bound", "efficiency", "reason"),
}


def _row(op, placement, precision, **cost):
    """The one place a :class:`CostRow` is made: the fields of ``op`` (an Op, or a transfer's name) and ``cost``."""
    if isinstance(op, str):
        return CostRow(op, "transfer", placement, precision, [], 0, 0, **cost)
    return CostRow(op.name, op.kind, placement, precision, list(op.tflite_ops), op.macs, op.weights + op.biases,
                   class_name=op.class_name, in_shapes=[list(s) for s in op.in_shapes], out_shape=list(op.out_shape),
                   activation=op.activation if op.kind in CONV_KINDS + ("add", "multiply") else "", **cost)


def _align(c, a):
    return int(math.ceil(c / a) * a) if c else 0


def _padded_channels(shape, a):
    return tuple(shape[:-1]) + (_align(shape[-1], a),) if shape else shape


def _act_bytes(shapes, elem, align=1):
    return sum(int(np.prod(_padded_channels(s, align))) for s in shapes) * elem


def _param_bytes(op, precision):
    elem = ELEMENT_BYTES[precision]
    return op.weights * elem + op.biases * (4 if precision in ("int8", "int16") else elem)


def _fmt_count(n):
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return str(int(n))


def _npu_row(op, profile, precision, cache):
    comp, mem = profile.compute, profile.memory
    a = comp.channel_alignment
    peak = comp.peak_macs_per_s[precision]
    eff_table = comp.efficiency
    elem = ELEMENT_BYTES[precision]
    padded, eff, stream_ms, param_cache = 0, None, 0.0, None
    reasons = []
    n_ops = len(op.tflite_ops) or 1
    in_bytes = _act_bytes(op.in_shapes, elem, a)
    out_bytes = _act_bytes([op.out_shape], elem, a)
    act_bytes = in_bytes + out_bytes
    spill = max(0, act_bytes - mem.activation_bytes)
    mem_s = (act_bytes - spill) / mem.onchip_bandwidth_bytes_per_s + spill / mem.offchip_bandwidth_bytes_per_s
    if spill:
        reasons.append(f"activations {_fmt_count(act_bytes)}B exceed the {_fmt_count(mem.activation_bytes)}B "
                       "on-chip activation memory, the excess goes off-chip")
    compute_s = 0.0
    if op.kind in CONV_KINDS:
        positions = int(np.prod(op.out_shape[:-1])) if op.kind != "dense" else int(np.prod(op.out_shape[:-1]) or 1)
        k = int(np.prod(op.kernel)) if op.kernel else 1
        cout_p = _align(op.cout, a)
        if op.kind == "depthwise":
            padded = positions * cout_p * k
            eff = eff_table.depthwise
            reasons.append(f"depthwise {op.kernel[0]}x{op.kernel[1]}: {k} MACs per output, runs at "
                           f"{eff:.0%} of peak")
        elif op.kind == "group_conv" and op.form == "split":
            g = op.groups
            cpg_in, cpg_out = op.cin // g, op.cout // g
            padded = g * positions * _align(cpg_out, a) * _align(cpg_in, a) * k
            eff = eff_table.conv if k > 1 else eff_table.conv1x1
            reasons.append(f"group conv split into {g} convs of {cpg_in}->{cpg_out} channels plus SPLIT and "
                           f"CONCATENATION ({n_ops} ops), each padded to {a} channels")
        elif op.kind == "group_conv":
            cpg = op.cin // op.groups
            padded = positions * cout_p * cpg * k
            eff = profile.group_conv_efficiency(cpg)
            best = profile.best_channels_per_group()
            reasons.append(f"group conv at {cpg} channels per group runs at {eff:.0%} of peak"
                           + (" (the profile's best)" if cpg == best else f" (best at {best} per group)"))
        elif op.kind == "dense":
            padded = positions * cout_p * _align(op.cin, a)
            eff = eff_table.dense
            reasons.append(f"fully connected runs at {eff:.0%} of peak")
        else:
            padded = positions * cout_p * _align(op.cin, a) * k
            eff = eff_table.conv1x1 if k == 1 else eff_table.conv
            reasons.append(f"{'1x1' if k == 1 else f'{op.kernel[0]}x{op.kernel[1]}'} conv runs at {eff:.0%} of peak")
        if op.macs and padded > op.macs * 1.001:
            chan = []
            if op.kind != "group_conv" or op.form == "native":
                if _align(op.cin, a) != op.cin and op.kind not in ("depthwise", "group_conv"):
                    chan.append(f"in {op.cin}->{_align(op.cin, a)}")
                if cout_p != op.cout:
                    chan.append(f"out {op.cout}->{cout_p}")
            pad_txt = ", ".join(chan) if chan else "per group"
            reasons.append(f"channels padded to the alignment of {a} ({pad_txt}): "
                           f"{padded / op.macs - 1:.0%} extra MACs")
        compute_s = padded / (peak * eff)
        pbytes = _param_bytes(op, precision)
        mem_s += pbytes / mem.onchip_bandwidth_bytes_per_s
        if pbytes:
            if cache["used"] + pbytes <= mem.param_cache_bytes:
                cache["used"] += pbytes
                param_cache = "cached"
            else:
                cache["streamed"] += pbytes
                from_host = mem.param_stream_from == "host_link"
                bw = mem.host_link_bandwidth_bytes_per_s if from_host else mem.offchip_bandwidth_bytes_per_s
                stream_ms = pbytes / bw * 1e3
                param_cache = "streamed"
                reasons.append(f"{_fmt_count(pbytes)}B of parameters do not fit the remaining parameter cache: "
                               f"streamed from {'the host' if from_host else 'off-chip memory'} every inference")
    elif op.kind in MEMORY_GROUP:
        group = MEMORY_GROUP[op.kind]
        eff_mem = getattr(profile.memory_ops, group)
        mem_s = act_bytes / (mem.onchip_bandwidth_bytes_per_s * eff_mem)
        what = {"concat": "concat copies its inputs", "shuffle": "channel shuffle is a reshape-transpose-reshape "
                "copy", "slice": "channel slice copies its part", "pool": "pooling reads its input once",
                "elementwise": "element-wise op reads its inputs and writes its output",
                "reshape": "reshape"}[group]
        if op.kind == "pad":
            what = "zero padding copies its input into a larger buffer"
        reasons.append(f"{what}: no MACs, {_fmt_count(act_bytes)}B of memory traffic")
    overhead_s = comp.op_overhead_s * n_ops
    bound = "compute" if compute_s >= mem_s else "memory"
    if op.kind in MEMORY_GROUP and op.kind != "reshape":
        bound = "memory"
    if overhead_s > max(compute_s, mem_s):
        bound = "overhead"
        reasons.append(f"fixed per-op overhead ({n_ops} op{'s' if n_ops > 1 else ''}) dominates")
    return _row(op, "npu", precision, padded_macs=int(padded), efficiency=eff, compute_ms=compute_s * 1e3,
                memory_ms=mem_s * 1e3, stream_ms=stream_ms, param_cache=param_cache, overhead_ms=overhead_s * 1e3,
                bound=bound, latency_ms=(overhead_s + max(compute_s, mem_s)) * 1e3 + stream_ms, bytes_in=in_bytes,
                bytes_out=out_bytes, channels_padded=_align(op.out_shape[-1], a) if op.out_shape else 0,
                reason="; ".join(reasons))


# Activations whose CPU kernels differ enough to get their own fitted predictor
# (int8 HARD_SWISH and LOGISTIC are lookup/table kernels, not the fused clamp of ReLU).
CPU_ACTIVATION_KINDS = ("hard_swish", "hard_sigmoid", "sigmoid")


def cpu_predictor_kind(op):
    """Which fitted predictor of a CPU profile costs ``op``."""
    if op.kind == "conv":
        return "conv1x1" if op.kernel == (1, 1) else "conv"
    if op.kind == "activation" and op.activation in CPU_ACTIVATION_KINDS:
        return f"activation_{op.activation}"
    if op.kind == "batchnorm":
        return "multiply"
    if op.kind == "adaptive_pool":
        return "avg_pool"
    return op.kind


# The terms of a CPU predictor: coefficient name -> the feature of cpu_features it multiplies.
CPU_TERMS = {"per_mac_s": "work", "per_byte_s": "bytes", "per_in_byte_s": "in_bytes", "per_out_byte_s": "out_bytes",
             "per_param_byte_s": "param_bytes", "per_group_s": "groups", "per_group_pixel_s": "group_pixels",
             "per_pixel_s": "pixels"}


def gemm_channels(op):
    """Output channels one GEMM of ``op`` computes (per group for grouped convs), or 0 for
    ops that are no GEMM: what a CPU kernel tiles and pads to its register-block width."""
    if op.kind in ("conv", "depthwise", "dense") and op.out_shape:
        return int(op.out_shape[-1])
    if op.kind == "group_conv" and op.out_shape:
        return max(int(op.out_shape[-1]) // max(op.groups, 1), 1)
    return 0


def padded_work(work, channels, align):
    """``work`` scaled for output channels padded to a multiple of ``align`` (XNNPACK's GEMM
    microkernels compute whole register blocks of output channels)."""
    if not channels or align <= 1:
        return work
    return work * (-(-channels // align) * align) / channels


def cpu_features(op, precision, align=1):
    """The variables of the CPU predictors for ``op``: ``work`` (MACs, or elements touched for
    memory ops), ``bytes`` (activations in and out plus parameters), its parts ``in_bytes``,
    ``out_bytes`` and ``param_bytes``, and ``groups`` (the group count of a grouped conv,
    else 0: each group is a separate GEMM) and ``group_pixels`` (groups times output pixels:
    XNNPACK's int8 grouped conv costs about 40 ns per group and output pixel here, whatever
    the MACs), ``pixels`` (output pixels: per-pixel work of a kernel's loops and
    requantization, which dominates int8 convs with few channels); ``work`` counts output
    channels padded to ``align`` (the predictor's
    ``channel_align``), ``channels`` is what is padded (:func:`gemm_channels`)."""
    elem = ELEMENT_BYTES[precision]
    work = op.macs
    if op.kind in ("max_pool", "avg_pool", "adaptive_pool", "global_pool"):
        work = op.elements_out() * (int(np.prod(op.kernel)) if op.kernel else 1)
    elif op.kind in MEMORY_GROUP:
        work = op.elements_out()
    in_bytes, out_bytes = _act_bytes(op.in_shapes, elem), _act_bytes([op.out_shape], elem)
    param_bytes = _param_bytes(op, precision)
    groups = op.groups if op.kind == "group_conv" else 0
    pixels = int(np.prod(op.out_shape[:-1])) if op.out_shape else 0
    return {"work": padded_work(work, gemm_channels(op), align), "bytes": in_bytes + out_bytes + param_bytes,
            "in_bytes": in_bytes, "out_bytes": out_bytes, "param_bytes": param_bytes, "groups": groups,
            "group_pixels": groups * pixels, "pixels": pixels, "channels": gemm_channels(op)}


# Features of the kernel regression that corrects a CPU predictor (log scale).
RESIDUAL_FEATURES = ("work", "in_bytes", "out_bytes", "param_bytes", "groups", "group_pixels")


def residual_point(feats):
    """The point of a kernel in the residual regression's feature space."""
    return np.log1p(np.array([float(feats.get(f, 0)) for f in RESIDUAL_FEATURES]))


def cpu_residual(table, feats):
    """Multiplicative correction of a fitted CPU predictor for a kernel with features ``feats``.

    ``table`` (a :class:`~kerasnets.export.profiles.ResidualTable`, or None) holds measured
    kernels of one kind (``points``, their ``log_ratio`` of measured over predicted time), the
    feature ``scale`` and the ``bandwidth``: a Nadaraya-Watson average of nearby log ratios
    with a prior weight ``prior`` at zero, so far from every measured kernel the correction
    fades to 1.
    """
    if not table:
        return 1.0
    pts = np.asarray(table.points, float)
    d2 = np.sum(((pts - residual_point(feats)) / np.asarray(table.scale, float)) ** 2, axis=1)
    w = np.exp(-d2 / (2 * table.bandwidth ** 2))
    return float(np.exp(np.dot(w, table.log_ratio) / (w.sum() + table.prior)))


# The predictor that stands in for a kind a CPU profile has not fitted (followed until one is fitted;
# ``add``, the cheapest element-wise kernel, ends every chain).
CPU_FALLBACK = {"conv1x1": "conv", "group_conv": "conv", "depthwise": "conv", "dense": "conv",
                "multiply": "add", "activation": "add", "softmax": "add", "concat": "add", "slice": "add",
                "pad": "slice", "shuffle": "add", "max_pool": "add", "avg_pool": "add", "global_pool": "add",
                "reshape": "add", "activation_hard_swish": "activation", "activation_hard_sigmoid": "activation",
                "activation_sigmoid": "activation"}


def cpu_predictor_used(kind, table):
    """The predictor of ``table`` (a CPU profile's predictors of one precision) that costs ``kind``."""
    used = kind
    while used not in table:  # e.g. activation_hard_swish -> activation -> add
        used = CPU_FALLBACK.get(used, "add")
    return used


def _cpu_row(op, profile, precision, speed_factor):
    table = profile.predictors[precision]
    kind = cpu_predictor_kind(op)
    used = cpu_predictor_used(kind, table)
    coef = table[used]
    feats = cpu_features(op, precision, coef.channel_align or 1)
    term = {name: coef.term(name) * feats[f] for name, f in CPU_TERMS.items()}
    parts = {"fixed": coef.fixed_s + term["per_group_s"] + term["per_group_pixel_s"] + term["per_pixel_s"],
             "compute": term["per_mac_s"],
             "memory": term["per_byte_s"] + term["per_in_byte_s"] + term["per_out_byte_s"] + term["per_param_byte_s"]}
    extra = 0.0
    if op.kind == "group_conv" and op.form == "split" and "group_conv" not in table:
        extra = (op.groups + 1) * table.get("slice", table["add"]).fixed_s
    n = len(op.tflite_ops) if op.kind in ("batchnorm", "adaptive_pool") else 1
    # The linear predictor's error on measured kernels near this one (kernel regression).
    local = cpu_residual(profile.residual(precision, used), feats)
    # In a whole model the kernels run slower than alone (weights and activations are no
    # longer warm in the caches; every weight is fetched again each inference): the
    # profile's context factor, per-op and per-parameter-byte terms, fitted on whole networks.
    context, context_per_op_s, context_per_param_byte_s = profile.context(precision)
    per_op = (context_per_op_s * n + context_per_param_byte_s * feats["param_bytes"]) / speed_factor
    scale = context * local / speed_factor
    t = (sum(parts.values()) * n + extra) * scale + per_op
    bound = max(parts, key=parts.get)
    reason = f"fitted {used} predictor ({profile.name}, {precision})"
    if used != kind:
        reason += f", no {kind} predictor fitted"
    if local != 1.0:
        reason += f", x{local:.3g} from measured {used} kernels of similar shape"
    if context != 1.0 or per_op:
        reason += f", in-model context x{context:.3g} + {per_op * 1e6:.2g} us"
    if speed_factor != 1.0:
        reason += f", host speed factor {speed_factor:g}"
    return _row(op, "cpu", precision, padded_macs=int(op.macs), compute_ms=parts["compute"] * n * scale * 1e3,
                memory_ms=parts["memory"] * n * scale * 1e3, overhead_ms=(parts["fixed"] * n * scale + per_op) * 1e3,
                latency_ms=t * 1e3, bound={"fixed": "overhead"}.get(bound, bound), bytes_in=feats["in_bytes"],
                bytes_out=feats["out_bytes"], channels_padded=op.out_shape[-1] if op.out_shape else 0, reason=reason)


def _transfer_row(name, nbytes, profile, extra_s=0.0, why=""):
    mem = profile.memory
    t = nbytes / mem.host_link_bandwidth_bytes_per_s + mem.host_link_latency_s + extra_s
    reason = (f"{_fmt_count(nbytes)}B over the host link ({mem.host_link_bandwidth_bytes_per_s / 1e6:.0f} MB/s + "
              f"{mem.host_link_latency_s * 1e6:.0f} us)" + (f"; {why}" if why else ""))
    return _row(name, "link", "", bytes_in=nbytes, bytes_out=nbytes, memory_ms=t * 1e3, latency_ms=t * 1e3,
                bound="link", reason=reason)


def check_precision(precision, label="precision", allow_none=True):
    """Refuse (UsageError) a precision the estimator does not know; None means the profile's default."""
    if precision is None and allow_none:
        return
    if not isinstance(precision, str) or precision not in ELEMENT_BYTES:
        raise UsageError(f"{label} {precision!r} is unknown; use one of {sorted(ELEMENT_BYTES)}.")


def check_profile_precision(profile, precision):
    """Refuse (UsageError) costing a CPU profile at a precision it has no predictors for."""
    if not profile.is_npu and precision not in profile.predictors:
        raise UsageError(f"profile {profile.name} has no {precision} predictors; use one of "
                         f"{sorted(profile.predictors)} or recalibrate.")


def estimate_graph(graph, profile, precision=None, placement=None, cpu_precision="float32"):
    """Cost an analyzed graph on ``profile``.

    Args:
      graph: a :class:`ModelGraph` from :func:`analyze`.
      profile: a profile name or :class:`kerasnets.export.profiles.Profile`.
      precision: the NPU's (or the CPU profile's) precision; the profile's default if None.
      placement: op name -> ``"npu"`` or ``"cpu"`` for every non-free op (fused ops follow
        their head); all-NPU is *not* assumed: None means every op on the NPU for an NPU
        profile (use :func:`estimate` for the partitioner's placement) and on the CPU for a
        CPU profile.
      cpu_precision: precision of what runs on the host CPU next to an NPU.

    Returns a dict with ``layers`` (one :class:`CostRow` per op, plus transfer rows) and ``totals``.
    """
    if not isinstance(graph, ModelGraph):
        graph = analyze(graph)  # a Keras model (analyze refuses anything else)
    check_precision(precision)
    check_precision(cpu_precision, "cpu_precision", allow_none=False)
    if placement is not None and not isinstance(placement, dict):
        raise UsageError(f"placement must be a dict of layer name -> 'npu' or 'cpu', not {type(placement).__name__}.")
    profile = load_profile(profile)
    precision = precision or profile.default_precision()
    host, speed = profile.host_cpu()
    check_profile_precision(profile, precision)
    if profile.is_npu and cpu_precision not in host.predictors:
        cpu_precision = host.default_precision()
    cache = {"used": 0, "streamed": 0}
    rows = []
    place_of = {}
    link = {"bytes": 0}
    for op in graph.ops:
        head = graph.head_of(op)
        if op.kind == "input":
            device = "host"
        elif not profile.is_npu:
            device = "cpu"
        elif placement is None:
            device = "npu"
        else:
            device = placement.get(head.name, placement.get(op.name, "cpu"))
        if op.kind == "identity" and op.inputs:
            device = place_of.get(op.inputs[0], device)
        place_of[op.name] = device
        if op.kind == "input":
            rows.append(_row(op, device, "", channels_padded=op.out_shape[-1], reason="model input"))
            continue
        # Tensors crossing between host/CPU and NPU.
        if profile.is_npu and device in ("npu", "cpu"):
            for src in op.inputs:
                from_host = place_of.get(src, "host") == "host"
                src_dev = "cpu" if from_host else place_of[src]
                if src_dev != device:
                    key = (src, device)
                    if key in link:
                        continue
                    link[key] = True
                    src_op = graph.by_name[src]
                    nbytes = _act_bytes([src_op.out_shape], ELEMENT_BYTES[precision])
                    if device == "npu":
                        first = from_host
                        why = "model input to the NPU" if first else "CPU island back to the NPU"
                        extra = 0.0 if first else profile.segments.cpu_round_trip_s
                        rows.append(_transfer_row(f"<to npu: {src}>", nbytes, profile, extra, why))
                    else:
                        rows.append(_transfer_row(f"<to cpu: {src}>", nbytes, profile, 0.0,
                                                  "boundary tensor from the NPU to the CPU"))
        if op.is_free:
            free_precision = {"npu": precision, "cpu": cpu_precision if profile.is_npu else precision}
            rows.append(_row(op, device, free_precision.get(device, ""),
                             channels_padded=op.out_shape[-1] if op.out_shape else 0,
                             reason=op.fused_note or "removed at inference (no op)", free=True))
            continue
        if device == "npu":
            row = _npu_row(op, profile, precision, cache)
        elif profile.is_npu:
            row = _cpu_row(op, host, cpu_precision, speed)
        else:
            row = _cpu_row(op, profile, precision, 1.0)
        if op.kind == "unknown":
            row.reason += f"; layer {op.class_name} is not modeled, costed as a generic op"
        rows.append(row)
    if profile.is_npu:
        for name in graph.outputs:
            if place_of.get(name) == "npu":
                rows.append(_transfer_row(f"<to host: {name}>", _act_bytes([graph.by_name[name].out_shape],
                                                                           ELEMENT_BYTES[precision]),
                                          profile, 0.0, "model output back to the host"))
    _charge_uncached_params(graph, rows, host, precision if not profile.is_npu else cpu_precision,
                            1.0 if not profile.is_npu else speed)
    totals = _totals(graph, rows, profile, precision, cache, host, cpu_precision)
    return {"model": graph.name, "profile": profile.name, "precision": precision, "layers": rows, "totals": totals}


def _charge_uncached_params(graph, rows, host, precision, speed_factor):
    """Add, in place, what the CPU rows' parameters cost on top when together they do not fit the host
    profile's caches (:meth:`~kerasnets.export.profiles.CpuProfile.uncached_param_s`, the measured
    parameter-cache curve), spread over the rows by their parameter bytes."""
    cpu = [(r, _param_bytes(graph.by_name[r.name], precision)) for r in rows
           if r.placement == "cpu" and not r.free and r.name in graph.by_name]
    total = sum(b for _, b in cpu)
    extra_s = host.uncached_param_s(precision, total) if total else 0.0
    if extra_s <= 0:
        return
    start = host.param_cache_curve(precision)[0][0]
    for r, b in cpu:
        if b:
            extra_ms = extra_s * b / total / speed_factor * 1e3
            r.memory_ms += extra_ms
            r.latency_ms += extra_ms
            r.reason += (f", + {extra_ms * 1e3:.2g} us for parameters that do not fit the caches "
                         f"({_fmt_count(total)}B in all, over {start / 2**20:.3g} MiB)")


def _totals(graph, rows, profile, precision, cache, host, cpu_precision):
    npu_ms = sum(r.latency_ms for r in rows if r.placement == "npu")
    cpu_ms = sum(r.latency_ms for r in rows if r.placement == "cpu")
    link_ms = sum(r.latency_ms for r in rows if r.placement == "link")
    any_cpu = any(r.placement == "cpu" for r in rows)
    any_npu = any(r.placement == "npu" for r in rows)
    if profile.is_npu:
        invoke_ms = (profile.compute.invoke_overhead_s if any_npu else 0.0) * 1e3
        if any_cpu:
            invoke_ms += host.invoke_overhead_s[cpu_precision] * 1e3
    else:
        invoke_ms = profile.invoke_overhead_s[precision] * 1e3
    peak = profile.peak_macs(precision)
    latency = npu_ms + cpu_ms + link_ms + invoke_ms
    macs = graph.total_macs()
    npu_macs = sum(r.macs for r in rows if r.placement == "npu")
    out = {"latency_ms": latency, "fps": 1e3 / latency if latency > 0 else math.inf,
           "macs": macs, "npu_macs": npu_macs, "params": sum(r.params for r in rows),
           "mac_utilization": (macs / (latency * 1e-3 * peak)) if peak and latency > 0 else None,
           "npu_ms": npu_ms, "cpu_ms": cpu_ms, "transfer_ms": link_ms, "invoke_ms": invoke_ms,
           "peak_macs_per_s": peak}
    if profile.is_npu:
        out.update(param_cache_bytes=profile.memory.param_cache_bytes, param_cache_used_bytes=cache["used"],
                   param_cache_remaining_bytes=profile.memory.param_cache_bytes - cache["used"],
                   param_streamed_bytes=cache["streamed"],
                   # TFLite ops as the compiler counts them: fused and folded layers are not ops.
                   npu_ops=sum(len(r.tflite_ops) for r in rows if r.placement == "npu" and not r.free),
                   cpu_ops=sum(len(r.tflite_ops) for r in rows if r.placement == "cpu" and not r.free))
    return out


def format_table(result, top=None):
    """A human-readable per-layer table plus totals."""
    t = result["totals"]
    lines = [f"{result['model']} on {result['profile']} ({result['precision']})",
             f"{'layer':34s} {'kind':12s} {'where':5s} {'MACs':>8s} {'params':>7s} {'ch':>5s} {'comp ms':>8s} "
             f"{'mem ms':>7s} {'ms':>7s} {'bound':8s} reason"]
    rows = [r for r in result["layers"] if r.latency_ms > 0 or r.kind not in ("input", "identity")]
    if top:
        rows = sorted(rows, key=lambda r: -r.latency_ms)[:top]
    for r in rows:
        lines.append(f"{r.name[:34]:34s} {r.kind[:12]:12s} {r.placement[:5]:5s} {_fmt_count(r.macs):>8s} "
                     f"{_fmt_count(r.params):>7s} {r.channels_padded:5d} {r.compute_ms:8.4f} "
                     f"{r.memory_ms:7.4f} {r.latency_ms:7.4f} {r.bound[:8]:8s} {r.reason}")
    util = t["mac_utilization"]
    lines.append(f"total: {t['latency_ms']:.3f} ms ({t['fps']:.1f} fps), {_fmt_count(t['macs'])} MACs, "
                 f"MAC utilization {util:.1%}" if util is not None else f"total: {t['latency_ms']:.3f} ms")
    if "param_cache_used_bytes" in t:
        lines.append(f"NPU {t['npu_ms']:.3f} ms, CPU {t['cpu_ms']:.3f} ms, transfers {t['transfer_ms']:.3f} ms, "
                     f"invoke {t['invoke_ms']:.3f} ms; parameter cache used {t['param_cache_used_bytes'] / 2**20:.2f} MiB,"
                     f" remaining {t['param_cache_remaining_bytes'] / 2**20:.2f} MiB, streamed "
                     f"{t['param_streamed_bytes'] / 2**20:.2f} MiB")
    return "\n".join(lines)
