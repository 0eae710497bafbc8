"""Placement: which ops of an analyzed graph run on the NPU in int8 and which on the CPU in float.

:func:`place` walks the analyzed graph in order and decides per op, with the Edge TPU
compiler's words: an op the profile supports is "Mapped to <device>"; the first one it
does not ("Operation not supported", "Operation is working on an unsupported data type",
"Tensor has unsupported rank (up to 3 innermost dimensions mapped)") ends the NPU
segment, and under the profile's segment rule (``segments.max_npu_segments``, 1 on the
Edge TPU) every later op runs on the CPU ("More than one subgraph is not supported").

Policies:

* ``max_npu``: as much as the segment rule allows on the NPU (the compiler's behaviour);
* ``float_head``: as ``max_npu``, but the classifier head after the pooled features
  (:func:`kerasnets.heads.float_head_layer_names`) is kept in float on the CPU (the
  quantization paper's split);
* ``min_latency``: the single cut inside the ``max_npu`` segment that minimises the
  estimated total latency, boundary transfer included.
"""
from kerasnets.export.costing import ELEMENT_BYTES, estimate_graph
from kerasnets.export.graph import CONV_KINDS, ModelGraph
from kerasnets.export.profiles import load_profile
from kerasnets.errors import KerasnetsError

POLICIES = ("max_npu", "float_head", "min_latency")

NOT_SUPPORTED = "Operation not supported"
BAD_TYPE = "Operation is working on an unsupported data type"
BAD_RANK = "Tensor has unsupported rank (up to 3 innermost dimensions mapped)"
SUBGRAPH = "More than one subgraph is not supported"


class PartitionError(KerasnetsError, ValueError):
    """A partition request that cannot be honoured."""


def check_policy(policy):
    """Refuse (PartitionError) a policy that is not one of :data:`POLICIES`."""
    if not isinstance(policy, str) or policy not in POLICIES:
        raise PartitionError(f"policy {policy!r} is unknown; use one of {', '.join(POLICIES)}.")


def _mapped(profile):
    return f"Mapped to {profile.device_label or 'NPU'}"


def support_problem(op, profile, precision):
    """``None`` if ``profile`` runs ``op`` at ``precision``, else (compiler message, detail)."""
    sup = profile.support
    ops = sup.ops
    label = profile.device_label or "NPU"
    names = "/".join(dict.fromkeys(op.tflite_ops)) or op.class_name
    if precision not in sup.data_types:
        return BAD_TYPE, f"{names} in {precision}; {label} runs {', '.join(sup.data_types)} only"
    if op.kind == "unknown":
        return NOT_SUPPORTED, f"layer {op.class_name} has no {label} kernel"
    if op.kind not in ops:
        extra = ""
        if op.kind == "activation":
            extra = f" ({op.activation.upper()})"
        return NOT_SUPPORTED, f"{names}{extra} is not supported by {label}"
    c = ops[op.kind]
    sizes = c.pool_sizes if op.kind in ("max_pool", "avg_pool") else c.kernel_sizes
    if sizes and op.kernel and any(k not in sizes for k in op.kernel):
        return NOT_SUPPORTED, f"{names} with {op.kernel[0]}x{op.kernel[1]} window; {label} takes {sizes}"
    if c.strides and op.strides and any(s not in c.strides for s in op.strides):
        return NOT_SUPPORTED, f"{names} with stride {op.strides[0]}; {label} takes strides {c.strides}"
    if op.kind == "group_conv" and c.forms and op.form not in c.forms:
        hint = f"; build with group_conv='{c.forms[0]}'" if c.forms else ""
        what = "grouped CONV_2D" if op.form == "native" else "split group conv"
        return NOT_SUPPORTED, f"{what} (groups={op.groups}) is not supported by {label}{hint}"
    if op.kind == "shuffle" and c.modes and op.form not in c.modes:
        return NOT_SUPPORTED, f"channel shuffle mode {op.form!r}; {label} takes {c.modes}"
    if c.max_channels and max(op.cin, op.cout) > c.max_channels:
        return NOT_SUPPORTED, f"{names} with {max(op.cin, op.cout)} channels; {label} takes at most {c.max_channels}"
    act = op.activation if op.kind in CONV_KINDS + ("add", "multiply", "activation", "softmax") else "linear"
    if act not in sup.activations:
        fused = op.kind != "activation"
        return NOT_SUPPORTED, (f"{names} with fused {act.upper()}" if fused else f"{act.upper()}") + \
            f": {label} has no {act} activation"
    rank = sup.max_nonunit_dims
    if rank and op.nonunit_dims > rank:
        return BAD_RANK, (f"{names} makes a tensor with {op.nonunit_dims} non-unit dimensions"
                          + (f" (channel shuffle mode {op.form!r}; use shuffle='low_rank')" if op.kind == "shuffle" else ""))
    return None


def _decision(op, placement, message, detail="", segment=0):
    return {"name": op.name, "kind": op.kind, "tflite_ops": list(op.tflite_ops), "placement": placement,
            "message": message, "detail": detail, "segment": segment}


def _place_rule(graph, profile, precision, cpu_from=None, cpu_message=None):
    """The segment rule over the graph; ops at index >= ``cpu_from`` are forced to the CPU."""
    decisions = {}
    max_segments = profile.segments.max_npu_segments
    segments, in_npu, cpu_seen = 0, False, False
    for op in graph.ops:
        if op.kind == "input":
            decisions[op.name] = _decision(op, "host", "Model input")
            continue
        if op.fused_into:
            continue
        if op.kind == "identity" and (cpu_from is None or op.index < cpu_from):
            src = decisions.get(op.inputs[0]) if op.inputs else None
            placement = src["placement"] if src else ("npu" if in_npu else "cpu")
            decisions[op.name] = _decision(op, placement, "Removed at inference (no op)",
                                           segment=segments if placement == "npu" else 0)
            continue
        if cpu_from is not None and op.index >= cpu_from:
            problem = cpu_message
        else:
            problem = support_problem(op, profile, precision)
        if problem:
            decisions[op.name] = _decision(op, "cpu", *problem)
            in_npu, cpu_seen = False, True
            continue
        if not in_npu:
            # One segment: the first unsupported op ends NPU mapping for good, even before it began.
            if segments >= max_segments or (cpu_seen and max_segments == 1):
                decisions[op.name] = _decision(op, "cpu", SUBGRAPH,
                                               f"supported, but the profile allows {max_segments} NPU "
                                               f"segment{'s' if max_segments > 1 else ''}")
                continue
            segments += 1
            in_npu = True
        decisions[op.name] = _decision(op, "npu", _mapped(profile), segment=segments)
    out = []
    for op in graph.ops:
        if op.fused_into:
            head = decisions[op.fused_into]
            d = _decision(op, head["placement"], f"{head['message']} (fused)", op.fused_note, head["segment"])
        else:
            d = decisions[op.name]
        out.append(d)
    return out


def place(graph, profile, policy="max_npu", precision=None):
    """Decide NPU or CPU for every op of ``graph``; one dict per op (name, placement, message, detail).

    A CPU profile runs everything on the CPU.
    """
    check_policy(policy)
    profile = load_profile(profile)
    if not isinstance(graph, ModelGraph):
        raise PartitionError(f"place() needs the graph export.cost.analyze(model) returns, not "
                             f"{type(graph).__name__}; analyze the model first.")
    if precision is not None and (not isinstance(precision, str) or precision not in ELEMENT_BYTES):
        raise PartitionError(f"precision {precision!r} is unknown; use one of {sorted(ELEMENT_BYTES)}.")
    precision = precision or profile.default_precision()
    if not profile.is_npu:
        return [_decision(op, "host" if op.kind == "input" else "cpu",
                          "Model input" if op.kind == "input" else f"Runs on {profile.device_label or 'the CPU'}")
                for op in graph.ops]
    if policy == "float_head":
        start = graph.float_head_start()
        msg = (BAD_TYPE, "float32 classifier head: the float_head policy keeps everything after the pooled "
                         "features in float on the CPU")
        return _place_rule(graph, profile, precision, start, msg)
    decisions = _place_rule(graph, profile, precision)
    if policy == "max_npu":
        return decisions
    # min_latency: every single cut inside the first NPU segment, plus "nothing on the NPU".
    first = [d for d in decisions if d["placement"] == "npu" and d["segment"] == 1]
    npu_indices = sorted({graph.by_name[d["name"]].index for d in first if not graph.by_name[d["name"]].fused_into})
    candidates = [None] + npu_indices
    best, best_ms = None, None
    for cut in candidates:
        cut_from = 0 if cut is None else cut + 1
        msg = ("Kept on the CPU by the min_latency policy", "")
        trial = _place_rule(graph, profile, precision, cut_from, msg)
        ms = estimate_graph(graph, profile, precision,
                            {d["name"]: d["placement"] for d in trial})["totals"]["latency_ms"]
        if best_ms is None or ms < best_ms - 1e-9:
            best, best_ms = (cut, trial), ms
    cut, trial = best
    after = graph.ops[cut].name if cut is not None else "the model input"
    for d in trial:
        if d["message"].startswith("Kept on the CPU by the min_latency policy"):
            d["detail"] = (f"the cut after {after} minimises the estimated total ({best_ms:.3f} ms), "
                           "boundary transfer included")
    return trial
