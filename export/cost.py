"""The accelerator cost estimator: per-layer latency of a Keras model on a hardware profile.

Two steps, so that re-costing is cheap (the fits and the partitioner's ``min_latency``
policy cost the same graph many times): :func:`analyze` (:mod:`kerasnets.export.graph`) describes
the model once, :func:`estimate_graph` (:mod:`kerasnets.export.costing`) costs it for a placement.
:func:`estimate` does both for a model, placing ops with the partitioner's rules
(:func:`kerasnets.export.placement.place`). This module is the estimator's public face: the names
below are the ones scripts and tests use.
"""
from kerasnets.export.costing import (CPU_TERMS, ELEMENT_BYTES, MEMORY_GROUP, RESIDUAL_FEATURES, ROW_FIELDS, CostRow,
                            check_precision, check_profile_precision, cpu_features, cpu_predictor_kind, cpu_residual,
                            estimate_graph, format_table, gemm_channels, padded_work, residual_point)
from kerasnets.export.graph import CONV_KINDS, ModelGraph, Op, analyze
from kerasnets.export.placement import check_policy, place
from kerasnets.export.profiles import load_profile

__all__ = ["CONV_KINDS", "CPU_TERMS", "ELEMENT_BYTES", "MEMORY_GROUP", "RESIDUAL_FEATURES", "ROW_FIELDS", "CostRow",
           "ModelGraph", "Op", "analyze", "check_precision", "check_profile_precision", "cpu_features",
           "cpu_predictor_kind", "cpu_residual", "estimate", "estimate_graph", "format_table", "gemm_channels",
           "padded_work", "residual_point"]


def estimate(model, profile, precision=None, policy="max_npu", cpu_precision="float32"):
    """Per-layer and total cost of ``model`` (a Keras model or an analyzed graph) on ``profile``.

    Ops are placed by the partitioner (:func:`kerasnets.export.placement.place`) under ``policy``
    (default ``max_npu``: the Edge TPU compiler's rule); each row of ``layers`` (a :class:`CostRow`)
    carries the placement and its reason in the compiler's words (``placement_reason``).
    """
    check_precision(precision)
    check_precision(cpu_precision, "cpu_precision", allow_none=False)
    check_policy(policy)
    profile = load_profile(profile)
    precision = precision or profile.default_precision()
    check_profile_precision(profile, precision)
    graph = model if isinstance(model, ModelGraph) else analyze(model)
    decisions = place(graph, profile, policy=policy, precision=precision)
    result = estimate_graph(graph, profile, precision, {d["name"]: d["placement"] for d in decisions},
                            cpu_precision)
    why = {d["name"]: d["message"] for d in decisions}
    for row in result["layers"]:
        if row.name in why:
            row.placement_reason = why[row.name]
    result["policy"] = policy
    return result
