"""The host-CPU profile for this machine: a quick calibration, and a cache of it per CPU.

The shipped ``host_cpu`` profile was fitted on one machine (its ``measured_on`` says which);
on another CPU its predictors are off by the other machine's speed, kind by kind, and not
uniformly: on an AMD EPYC (measured) int8 convs cost up to 17x the prediction of the Xeon the
profile was fitted on where MACs dominate, and 0.5-2x where per-op and per-pixel costs do. The
full fit (``kerasnets-estimate --calibrate``, :mod:`kerasnets.export.calibrate`) takes about ten minutes;
:func:`quick_calibrate` (``kerasnets-estimate --calibrate=quick``) takes one or two:

* it times a fixed small set of kernels (:func:`quick_kernels`: a few of every kind the
  predictors cover, from the full fit's fixed set, plus tiny ones where the fixed per-op cost
  dominates) and four random networks (:func:`quick_networks`, built from the zoo's blocks, no
  zoo model) in LiteRT here, interleaved in one run, and LiteRT's per-invoke cost;
* it rescales each predictor kind and precision (:func:`fit_scales`): a factor per group of
  its coefficients (per-MAC, fixed, the rest), one for all, one for the per-MAC term and one
  for the others, or one each, whichever predicts that kind's kernels best left out one at a
  time; an int8 kind may instead be rebuilt from the float32 predictor when that predicts its
  kernels clearly better (a CPU without int8 dot-product instructions). Kinds without kernels
  take their family's factors (:func:`apply_scales`);
* it replaces the per-invoke overhead by the one measured here and rescales the in-model
  context (the context factor, and the per-op and per-parameter-byte terms) by two factors
  per precision fitted on the whole networks (:func:`context_scale`).

:func:`host_profile` is what ``kerasnets-run`` uses: the ``host_cpu`` profile as found when it
was fitted on this CPU, with these threads and this LiteRT; otherwise a full fit shipped for this CPU
(:data:`SHIPPED_HOSTS_DIR`); otherwise a quick calibration,
run once and cached in :func:`cache_dir` under a name keyed by CPU model, threads and LiteRT
version (:func:`cache_path`). The profile is written atomically at the end, so an
interrupted calibration leaves nothing behind.
"""
import copy
import dataclasses
import datetime
import json
import math
import os
import re
import time

import numpy as np

from kerasnets.export import calibrate, cost
from kerasnets.export.profiles import CPU_CONTEXT_KEYS, ProfileError, load_profile, param_cache_s, parse_profile
from kerasnets.backend import keras
from kerasnets.errors import PathError, UsageError
from kerasnets.host import cpu_name, litert_version, machine
from kerasnets.io import atomic_write
from kerasnets.resources import probe_writable

# How many kernels of each kind of export.calibrate.kernel_specs the quick calibration times
# (spread evenly over the kind's fixed list); kinds not named get two.
QUICK_KERNELS_PER_KIND = {"conv": 8, "conv1x1": 8, "depthwise": 6, "group_conv": 8, "dense": 3, "activation": 5,
                          "softmax": 1, "reshape": 1}
# The random networks the quick calibration times whole (seed and input sizes): small to large inputs,
# each redrawn smaller while above 1.5e8 MACs.
QUICK_NETWORK_SEED = 101
QUICK_NETWORK_SIZES = (32, 48, 96, 160)
COMPUTE_KINDS = ("conv", "conv1x1", "depthwise", "group_conv", "dense")
# Bumped when the quick calibration's kernels or fit change: a cached calibration of another version is redone.
QUICK_CALIBRATION_VERSION = 3
# Which precisions' predictors may stand in for another's: an int8 kernel on a CPU without the int8
# dot-product instructions of the machine the base was fitted on costs what a float32 one costs there (measured:
# an AMD EPYC against the shipped profile's Xeon). Only from this many kernels on, and only when that predicts
# them (left out in turn) this much better than the kind's own predictor.
CROSS_SOURCES = {"int8": ("float32",)}
CROSS_SOURCE_KERNELS = 6
CROSS_SOURCE_GAIN = 0.7
# The groups of predictor coefficients the quick calibration scales apart: the per-MAC term, the fixed per-op
# cost, and the rest (per-byte, per-pixel and per-group terms).
TERM_GROUPS = ("mac", "fixed", "rest")
L = keras.layers
# The in-model context terms in seconds per op or byte, which the quick calibration scales together (the factor
# on the kernels is scaled apart; the base's parameter-cache curve describes another CPU's caches, and the one
# the probes measure here replaces it).
ABSOLUTE_CONTEXT_KEYS = CPU_CONTEXT_KEYS[1:3]


# ------------------------------------------------------------ what is timed ----

# The quick calibration's parameter-cache probe sizes (MiB; the full fit's are calibrate.PARAM_CACHE_PROBE_MIB).
QUICK_PROBE_MIB = (2, 4, 6, 10, 14, 18, 24, 32)


def _tiny_kernel_specs():
    """Kernels of a few hundred MACs to a few thousand, where a predictor's fixed per-op cost dominates (the
    cost of every op of a small model at a small input)."""
    cbr = calibrate.conv_bn_relu6
    specs = []
    for res, c in ((4, 8), (8, 16)):
        specs += [("conv", (res, res, c), lambda x, c=c: cbr(x, c, 3, 1)),
                  ("conv1x1", (res, res, c), lambda x, c=c: cbr(x, c, 1, 1)),
                  ("depthwise", (res, res, 2 * c), lambda x: L.ReLU(6.0)(L.BatchNormalization()(
                      L.DepthwiseConv2D(3, 1, padding="same", use_bias=False)(x)))),
                  ("group_conv", (res, res, 2 * c), lambda x, c=c: cbr(x, 2 * c, 3, 1, groups=4))]
    specs += [("dense", (64,), lambda x: L.Dense(10)(x)), ("add", (4, 4, 8), lambda x: L.Add()([x, x]))]
    return specs


def quick_kernels():
    """The quick calibration's kernels: ``(kind, Keras model)`` pairs, a few of every kind
    (:data:`QUICK_KERNELS_PER_KIND`) taken evenly from :func:`kerasnets.export.calibrate.kernel_specs`'s fixed set,
    and tiny ones of the compute kinds (:func:`_tiny_kernel_specs`)."""
    specs = calibrate.kernel_specs(samples=0)
    by_kind = {}
    for spec in specs:
        by_kind.setdefault(spec[0], []).append(spec)
    chosen = []
    for kind, group in by_kind.items():
        count = min(QUICK_KERNELS_PER_KIND.get(kind, 2), len(group))
        for i in sorted({int(round(v)) for v in np.linspace(0, len(group) - 1, count)}):
            chosen.append(group[i])
    chosen += _tiny_kernel_specs()
    return [(kind, calibrate.kernel_model(shape, body, i)) for i, (kind, shape, body) in enumerate(chosen)]


def quick_networks():
    """The quick calibration's whole networks (random, from the zoo's blocks; see
    :func:`kerasnets.export.calibrate.network_models`)."""
    return calibrate.network_models(len(QUICK_NETWORK_SIZES), seed=QUICK_NETWORK_SEED, max_macs=1.5e8,
                                    sizes=QUICK_NETWORK_SIZES)


def measure_quick(threads=1, precisions=("int8", "float32"), rounds=15, kernels=None, networks=None, log=None,
                  probe_mib=QUICK_PROBE_MIB):
    """Time the quick set in LiteRT here: returns ``(kernels, samples, overhead, networks)``
    (see :func:`kerasnets.export.calibrate.time_kernels`); ``kernels`` / ``networks`` replace the
    default sets (:func:`quick_kernels`, :func:`quick_networks`); the samples also hold the
    parameter-cache probe at ``probe_mib`` (:func:`kerasnets.export.calibrate.param_cache_probes`)."""
    kernels = quick_kernels() if kernels is None else list(kernels)
    networks = quick_networks() if networks is None else list(networks)
    probes = calibrate.param_cache_probes(precisions, probe_mib) if probe_mib else ()
    if log:
        log(f"quick calibration: timing {len(kernels)} kernels, {len(networks)} networks and {len(probes)} "
            f"parameter-cache probes in {', '.join(precisions)}, {threads} thread(s), {rounds} interleaved rounds")
    samples, overhead, nets = calibrate.time_kernels(kernels, networks, precisions, threads=threads, rounds=rounds,
                                                     log=log, probes=probes)
    return kernels, samples, overhead, nets


# ------------------------------------------------------------- the rescaling ----

def _geomean(values):
    return float(math.exp(np.mean(np.log(values))))


def _group_of(term):
    return "mac" if term == "per_mac_s" else "fixed" if term == "fixed_s" else "rest"


# The models _fit_kind chooses among: which term groups share a factor.
_MODELS = ((("mac", "fixed", "rest"),), (("mac",), ("fixed", "rest")), (("mac",), ("fixed",), ("rest",)))


def _fit_model(model, group, source):
    """Factors per term group under ``model`` (NNLS on relative error) for ``group``'s kernels predicted
    by ``source``'s predictor, or None when one comes out zero."""
    x = np.array([[sum(r["parts"][source][g] for g in tied) for tied in model] for r in group], float)
    y = np.array([r["measured_ms"] for r in group], float)
    if len(model) == 1:
        return {g: _geomean(y / x[:, 0]) for g in TERM_GROUPS} if np.all(x[:, 0] > 0) else None
    coef = calibrate.nnls_relative(x, y)
    if np.any(coef <= 0):
        return None
    return {g: float(c) for tied, c in zip(model, coef) for g in tied}


def _predict(scale, r):
    return sum(scale[g] * r["parts"][scale["source"]][g] for g in TERM_GROUPS)


def _fit_kind(group, sources):
    """The scale of one kind's kernels: ``{"source", "mac", "fixed", "rest"}``.

    Tries each source predictor (the kind's own precision first) under each model of
    :data:`_MODELS` (one factor for all term groups; one for the per-MAC term and one for the
    others; one each; a model with k > 1 factors from 2k kernels on) and keeps the one that
    predicts the kernels best when each is left out in turn; a later candidate must do better
    by a relative 5% to replace an earlier (simpler) one, the other precision's predictor is
    tried from :data:`CROSS_SOURCE_KERNELS` kernels on and must do better by a relative
    ``1 - CROSS_SOURCE_GAIN``.
    """
    best, best_err = None, math.inf
    for source in sources:
        if not all(source in r["parts"] for r in group):
            continue
        if source != sources[0] and len(group) < CROSS_SOURCE_KERNELS:
            continue
        for model in _MODELS:
            if len(model) > 1 and len(group) < 2 * len(model):
                continue
            factors = _fit_model(model, group, source)
            if factors is None:
                continue
            errors = []
            for i, r in enumerate(group):
                others = group[:i] + group[i + 1:]
                loo = (_fit_model(model, others, source) or _fit_model(_MODELS[0], others, source)
                       if others else factors)
                if loo is None:
                    break
                errors.append(abs(_predict(dict(loo, source=source), r) / r["measured_ms"] - 1))
            else:
                err = float(np.mean(errors))
                if best is None or err < (0.95 if source == best["source"] else CROSS_SOURCE_GAIN) * best_err:
                    best, best_err = dict(factors, source=source), err
    return best


def fit_scales(rows, kinds):
    """How to rescale each predictor kind and precision from kernels timed here.

    Args:
      rows: one per kernel: ``precision``, ``kind``, ``measured_ms`` (its time here, less the
        per-invoke overhead) and ``parts``: for each source precision, the base profile's
        prediction of the kernel alone with that precision's predictor, split into the parts
        of its term groups (:data:`TERM_GROUPS`: ``mac``, the per-MAC term; ``fixed``, the fixed
        per-op cost; ``rest``, the per-byte, per-pixel and per-group terms).
      kinds: ``{precision: [predictor kinds]}``, the kinds to rescale (the base profile's).

    Returns ``(scales, measured)``. ``scales[precision][kind]`` is ``{"source", "mac", "fixed",
    "rest"}``: the new predictor is the base's ``source`` predictor of that kind (its own
    precision's, or the other one's: on a CPU whose int8 kernels lack the dot-product
    instructions of the machine the base was fitted on, int8 convs cost what float32 ones
    cost, not what int8 ones cost there) with each term group's coefficients multiplied by its
    factor, chosen by :func:`_fit_kind`. A kind without kernels takes its family's most common
    source and the geometric mean of the factors of the family's kinds with that source
    (compute: conv, 1x1, depthwise, group conv, dense; memory: the rest), else of all kinds.
    ``measured[precision]`` counts each measured kind's kernels.
    """
    scales, measured = {}, {}
    for precision, names in kinds.items():
        sub = [r for r in rows if r["precision"] == precision and r["measured_ms"] > 0]
        sources = [precision] + [s for s in CROSS_SOURCES.get(precision, ()) if any(s in r["parts"] for r in sub)]
        own = {}
        for kind in sorted({r["kind"] for r in sub}):
            group = [r for r in sub if r["kind"] == kind]
            fitted = _fit_kind(group, sources)
            if fitted is not None:
                own[kind] = (fitted, len(group))
        if not own:
            continue
        scales[precision], measured[precision] = {}, {k: n for k, (_, n) in own.items()}
        for kind in names:
            if kind in own:
                scales[precision][kind] = own[kind][0]
                continue
            family = [f for k, (f, _) in own.items() if (k in COMPUTE_KINDS) == (kind in COMPUTE_KINDS)]
            family = family or [f for f, _ in own.values()]
            votes = [f["source"] for f in family]
            source = max(sorted(set(votes)), key=lambda v: (votes.count(v), v == precision))
            family = [f for f in family if f["source"] == source]
            scales[precision][kind] = dict({g: _geomean([f[g] for f in family]) for g in TERM_GROUPS},
                                           source=source)
    return scales, measured


def apply_scales(data, scales):
    """Profile data with each scaled predictor rebuilt from its ``source`` predictor (default: its
    own) with ``per_mac_s`` multiplied by ``mac``, ``fixed_s`` by ``fixed`` and the other terms by
    ``rest`` (``channel_align`` kept); a predictor taken from the other precision drops its
    kernel-regression table (fitted on the other precision's kernels). The peak MAC rate is
    divided by the own-source compute kinds' mean ``mac`` factor."""
    out = copy.deepcopy(data)
    for precision, by_kind in scales.items():
        table = out["predictors"].get(precision, {})
        for kind, f in by_kind.items():
            source = f.get("source", precision)
            if kind not in data["predictors"].get(source, {}) or kind not in table:
                continue
            table[kind] = {k: v if k == "channel_align" else v * f[_group_of(k)]
                           for k, v in data["predictors"][source][kind].items()}
            if source != precision:
                out.get("residuals", {}).get(precision, {}).pop(kind, None)
        compute = [f["mac"] for k, f in by_kind.items() if k in COMPUTE_KINDS and f.get("source", precision) ==
                   precision]
        if compute and min(compute) > 0 and precision in out.get("peak_macs_per_s", {}):
            out["peak_macs_per_s"][precision] /= _geomean(compute)
    return out


def context_scale(rows):
    """Factors on the in-model context that fit whole networks: ``(factor, absolute)``.

    ``rows`` are ``(measured - invoke overhead, kernel part, absolute part)`` per network (ms):
    the predicted model time split into the kernels scaled by the context factor and the
    per-op and per-parameter-byte terms. Two non-negative factors by least squares on relative
    error when three networks or more tell them apart, else one for both, the geometric mean
    of measured over predicted.
    """
    rows = [(max(m, 1e-6), k, a) for m, k, a in rows if k + a > 0]
    if not rows:
        return 1.0, 1.0
    single = _geomean([m / (k + a) for m, k, a in rows])
    if len(rows) >= 3 and all(a > 0 for _, _, a in rows):
        factor, absolute = calibrate.nnls_relative(np.array([[k, a] for _, k, a in rows], float),
                                                   np.array([m for m, _, _ in rows], float))
        if factor > 0 and absolute > 0:
            return float(factor), float(absolute)
    return single, single


def _without_context(data):
    out = copy.deepcopy(data)
    for key in CPU_CONTEXT_KEYS:
        out.pop(key, None)
    return out


def _network_predictions(data, networks, label):
    profile = parse_profile(copy.deepcopy(data), label)
    out = []
    for net in networks:
        est = cost.estimate_graph(cost.analyze(net["model"]), profile, net["precision"])["totals"]
        out.append((est["cpu_ms"], est["latency_ms"]))
    return out


def rescale_profile(base, kernels, samples, overhead, networks, threads=1):
    """The quick-calibrated profile data: ``base`` (a profile) rescaled to what was measured here.

    ``kernels``, ``samples``, ``overhead`` and ``networks`` are what :func:`measure_quick`
    returns (samples name their kernel by index). Each kernel is predicted alone by the base
    profile without in-model context, split by term group and by source precision;
    :func:`fit_scales` says how to rescale each predictor kind, :func:`apply_scales` does it;
    the per-invoke overhead becomes the one measured, and the context terms are multiplied by
    the factors :func:`context_scale` fits on the whole networks.
    The result records what it was fitted on (``measured_on``: CPU model, cores, threads,
    LiteRT version, date) and how (``calibration``).
    """
    probes = [s for s in samples if s.get("kind") == calibrate.PARAM_CACHE_PROBE_KIND]
    samples = [s for s in samples if s.get("kind") != calibrate.PARAM_CACHE_PROBE_KIND]
    precisions = [p for p in sorted({s["precision"] for s in samples}) if p in base.predictors]
    if not precisions:
        raise UsageError(f"the quick calibration measured no precision profile {base.name} has predictors for "
                         f"({', '.join(sorted(base.predictors))}); measure int8 and/or float32.")
    # The prediction of a kernel alone is linear in its predictor's coefficients: its part from each
    # group of them is the prediction of a profile with the other groups' coefficients zero; and each
    # precision's kernels are also predicted with the other precision's predictors.
    alone = _without_context(base.raw)
    parts = {}
    for source in precisions:
        for g in TERM_GROUPS:
            mask = {h: float(h == g) for h in TERM_GROUPS}
            scales = {p: {k: dict(mask, source=source) for k in base.predictors[source]
                          if k in base.predictors[p]} for p in precisions}
            parts[source, g] = parse_profile(apply_scales(alone, scales), f"{base.name!r} ({source} {g} terms)")
    graphs, rows = {}, []
    for s in samples:
        if s["precision"] not in precisions:
            continue
        graph = graphs.get(s["kernel"]) or graphs.setdefault(s["kernel"], cost.analyze(kernels[s["kernel"]][1]))
        row = {"kind": s["kind"], "precision": s["precision"], "measured_ms": s["ms"], "parts": {}}
        for (source, g), prof in parts.items():
            row["parts"].setdefault(source, {})[g] = cost.estimate_graph(graph, prof, s["precision"])["totals"][
                "cpu_ms"]
        row["predicted_ms"] = sum(row["parts"][s["precision"]].values())
        rows.append(row)
    scales, measured = fit_scales(rows, {p: sorted(base.predictors[p]) for p in precisions})
    data = apply_scales(base.raw, scales)
    data.pop("inherits", None)
    data.pop("context_param_cache_curve", None)
    data["invoke_overhead_s"] = dict(data.get("invoke_overhead_s", {}),
                                     **{p: overhead[p] * 1e-3 for p in precisions if p in overhead})
    fit = {}
    for precision in precisions:
        for kind in measured.get(precision, {}):
            group = [r for r in rows if r["precision"] == precision and r["kind"] == kind]
            f = scales[precision][kind]
            after = [_predict(f, r) for r in group]
            fit[f"{precision}/{kind}"] = {
                "samples": len(group), "scale": f,
                "before_mean_abs_pct_error": float(np.mean([abs(r["predicted_ms"] / r["measured_ms"] - 1)
                                                            for r in group]) * 100),
                "mean_abs_pct_error": float(np.mean([abs(a / r["measured_ms"] - 1)
                                                     for a, r in zip(after, group)]) * 100)}
    before = _network_predictions(base.raw, networks, f"{base.name!r}")
    curves = calibrate.fit_param_cache([s for s in probes if s["precision"] in precisions])
    streamed = [param_cache_s(curves.get(n["precision"]), calibrate.network_param_bytes(n["model"], n["precision"]))
                * 1e3 for n in networks]
    scaled = _network_predictions(data, networks, "'quick calibration'")
    kernel_only = copy.deepcopy(data)
    for key in ABSOLUTE_CONTEXT_KEYS:
        kernel_only.pop(key, None)
    kernel_part = _network_predictions(kernel_only, networks, "'quick calibration'")
    factors = {}
    for precision in precisions:
        rows = [(n["measured_ms"] - data["invoke_overhead_s"][precision] * 1e3 - extra, k, cpu_ms - k)
                for n, (cpu_ms, _), (k, _), extra in zip(networks, scaled, kernel_part, streamed)
                if n["precision"] == precision]
        if not rows:
            continue
        factor, absolute = context_scale(rows)
        factors[precision] = {"factor": factor, "per_op_and_param_byte": absolute}
        data.setdefault("context_factor", {})[precision] = data.get("context_factor", {}).get(precision, 1.0) * factor
        for key in ABSOLUTE_CONTEXT_KEYS:
            if precision in data.get(key, {}):
                data[key][precision] *= absolute
    if curves:
        data["context_param_cache_curve"] = curves
    after = _network_predictions(data, networks, "'quick calibration'")
    here = dict(machine(), **identity(threads), date=datetime.date.today().isoformat())
    base_on = base.measured_on or {}
    data.update({
        "name": "host_cpu",
        "description": f"This machine's CPU ({here['processor']}) in LiteRT {here['litert']} (XNNPACK), {threads} "
                       f"thread(s): the predictors of profile {base.name} (fitted on "
                       f"{base_on.get('processor', 'an unrecorded CPU')}) rescaled per kernel kind by "
                       f"kerasnets-estimate --calibrate=quick from {len(kernels)} kernels and "
                       f"{len({n['name'] for n in networks})} random networks timed here.",
        "sources": list(base.sources) + ["kerasnets.export.hostfit.quick_calibrate (measured on this machine)"],
        "measured_on": here, "threads": int(threads), "fit": fit,
        "context_fit": [{"network": n["name"], "input": n["input"], "precision": n["precision"],
                         "measured_ms": n["measured_ms"], "shipped_predicted_ms": b[1], "fitted_ms": a[1]}
                        for n, b, a in zip(networks, before, after)],
        "calibration": {"method": "quick", "version": QUICK_CALIBRATION_VERSION, "base": {"name": base.name, "path": base.path, "measured_on": base_on},
                        "scales": scales, "measured_kinds": measured, "context_scale": factors,
                        "kernels": len(kernels), "networks": len({n["name"] for n in networks})},
    })
    parse_profile(copy.deepcopy(data), "'quick calibration'")  # valid, or a ProfileError here and not at use
    return data


def _base_profile(base):
    """The profile a quick calibration rescales: ``base`` (a name, path or profile), by default
    ``host_cpu`` as the loader finds it, unless that is itself a quick calibration, then the shipped one."""
    if base is None:
        found = load_profile("host_cpu")
        if (found.calibration or {}).get("method") == "quick":
            return load_profile(SHIPPED_HOST_PROFILE)
        return found
    return load_profile(base)


SHIPPED_HOST_PROFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiles", "host_cpu.json")
# Full fits (kerasnets-estimate --calibrate) shipped for CPUs we build on: one per CPU model, thread count and LiteRT
# version, chosen by host_profile when the host_cpu profile found was fitted elsewhere.
SHIPPED_HOSTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiles", "hosts")


def shipped_host_profile(here):
    """The shipped full fit for ``here`` (:func:`identity`) in :data:`SHIPPED_HOSTS_DIR`, or None."""
    if not os.path.isdir(SHIPPED_HOSTS_DIR):
        return None
    for name in sorted(os.listdir(SHIPPED_HOSTS_DIR)):
        if name.endswith(".json"):
            profile = load_profile(os.path.join(SHIPPED_HOSTS_DIR, name))
            if (profile.measured_on or {}).get("processor") and not profile_mismatches(profile, here):
                return profile
    return None


def quick_calibrate(base=None, threads=1, precisions=("int8", "float32"), rounds=15, kernels=None, networks=None,
                    log=None):
    """Measure the quick set here (:func:`measure_quick`) and return the rescaled profile data
    (:func:`rescale_profile`) of ``base`` (default: see :func:`_base_profile`). Writes nothing."""
    calibrate.check_precisions(precisions)
    for name, value in (("threads", threads), ("rounds", rounds)):
        calibrate.check_count(name, value)
    base = _base_profile(base)
    started = time.time()
    kernels, samples, overhead, nets = measure_quick(threads, precisions, rounds, kernels, networks, log)
    data = rescale_profile(base, kernels, samples, overhead, nets, threads)
    data["calibration"]["rounds"] = rounds
    data["calibration"]["seconds"] = round(time.time() - started, 1)
    return data


# --------------------------------------------------------- which profile here ----

def identity(threads=1):
    """What a host profile must match to be this machine's: CPU model, threads, LiteRT version."""
    return {"processor": cpu_name(), "threads": int(threads), "litert": litert_version()}


def profile_mismatches(profile, here):
    """``[(field, the profile's value, this machine's)]`` where ``profile`` was fitted elsewhere
    (CPU model, thread count, LiteRT version; a field the profile does not record is not compared)."""
    on = profile.measured_on or {}
    theirs = {"processor": on.get("processor"), "threads": profile.threads,
              "litert": on.get("litert")}
    return [(k, theirs[k], here[k]) for k in ("processor", "threads", "litert")
            if theirs[k] is not None and theirs[k] != here[k]]


_LABELS = {"processor": "CPU", "threads": "thread count", "litert": "LiteRT version"}


def describe_mismatches(profile, diffs):
    """One sentence naming both values of every field in which ``profile`` differs from here."""
    parts = [f"{_LABELS[k]} {theirs!r} (here {mine!r})" for k, theirs, mine in diffs]
    return f"profile {profile.name} was fitted with another " + ", ".join(parts)


def cache_dir():
    """Where quick calibrations are cached: ``$XDG_CACHE_HOME/kerasnets``, else ``~/.cache/kerasnets``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "kerasnets")


def cache_path(here, folder=None):
    """The cache file of a quick calibration for ``here`` (:func:`identity`): one per CPU model,
    thread count and LiteRT version."""
    cpu = re.sub(r"[^A-Za-z0-9.]+", "_", str(here["processor"])).strip("_")[:80] or "cpu"
    litert = re.sub(r"[^A-Za-z0-9.]+", "_", str(here["litert"]))
    return os.path.join(folder or cache_dir(), f"host_cpu-{cpu}-{here['threads']}t-litert{litert}.json")


@dataclasses.dataclass
class HostProfile:
    """The host profile :func:`host_profile` chose, why (``source``), its file and what to tell the user."""
    profile: object
    source: str
    path: str = None
    messages: list = dataclasses.field(default_factory=list)


def _read_cache(path, here, messages, calibrating=True):
    """The cached quick calibration at ``path`` when it is usable here, else None (saying why in ``messages``)."""
    if not os.path.isfile(path):
        return None
    then = "calibrating again" if calibrating else "not used"
    try:
        profile = load_profile(path)
    except ProfileError as e:
        messages.append(f"the cached quick calibration {path} is unusable ({e}); {then}")
        return None
    if profile_mismatches(profile, here):
        messages.append(f"the cached quick calibration {path} is for another machine; {then}")
        return None
    if (profile.calibration or {}).get("version") != QUICK_CALIBRATION_VERSION:
        messages.append(f"the cached quick calibration {path} was made by another version of it; {then}")
        return None
    return profile


def host_profile(threads=1, allow_calibration=True, log=None, folder=None, base="host_cpu"):
    """The host-CPU profile to estimate this machine with, as a :class:`HostProfile`.

    ``base`` (default ``host_cpu`` as the loader finds it) when it was fitted on this CPU with
    ``threads`` and this LiteRT version; else (for the default base) a full fit shipped for this CPU
    (:func:`shipped_host_profile`); else the quick calibration cached for this machine in
    ``folder`` (default :func:`cache_dir`); else, with ``calibrate``, a quick calibration run
    now (:func:`quick_calibrate`, one or two minutes) and cached. Without ``allow_calibration``, or when
    the cache folder is not writable, ``base`` itself, with a message saying so. Every
    message (also given to ``log``) is one sentence.
    """
    say = log or (lambda m: None)
    profile = load_profile(base)
    here = identity(threads)
    diffs = profile_mismatches(profile, here)
    if not diffs:
        return HostProfile(profile, "as found", profile.path)
    messages = [describe_mismatches(profile, diffs)]
    shipped = shipped_host_profile(here) if base == "host_cpu" else None
    if shipped is not None:
        messages.append(f"estimating with the full fit shipped for this CPU, {shipped.path}")
        for m in messages:
            say(m)
        return HostProfile(shipped, "shipped for this CPU", shipped.path, messages)
    path = cache_path(here, folder)
    cached = _read_cache(path, here, messages, calibrating=allow_calibration)
    if cached is not None:
        messages.append(f"estimating with the quick calibration for this machine cached at {path}")
        for m in messages:
            say(m)
        return HostProfile(cached, "cache", path, messages)
    if not allow_calibration:
        messages.append(f"estimating with profile {profile.name} as found, not fitted to this machine (quick "
                        "calibration off; kerasnets-estimate --calibrate=quick fits it here in about 2.5 minutes)")
        for m in messages:
            say(m)
        return HostProfile(profile, "as found", profile.path, messages)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        probe_writable(os.path.dirname(path))
    except OSError as e:
        messages.append(f"cannot cache a quick calibration in {os.path.dirname(path)} "
                        f"({e.strerror or e}); estimating with profile {profile.name} as found")
        for m in messages:
            say(m)
        return HostProfile(profile, "as found", profile.path, messages)
    for m in messages:
        say(m)
    say(f"quick calibration of the host CPU profile for this machine (once; cached at {path})")
    data = quick_calibrate(base=profile, threads=threads,
                           log=log and (lambda m: None if m.startswith("timing round") else log(m)))
    try:
        atomic_write(path, json.dumps(data, indent=1) + "\n")
    except PathError as e:
        messages.append(f"the quick calibration could not be cached ({e}); it is used for this run only")
        say(messages[-1])
        path = None
    messages.append(f"estimating with a quick calibration for this machine ({data['calibration']['seconds']} s)")
    say(messages[-1])
    return HostProfile(parse_profile(data, "'host_cpu (quick calibration)'", path=path), "quick calibration", path,
                       messages)


def profile_for_here(name_or_path="host_cpu", threads=1, log=None):
    """The profile ``name_or_path`` names, as a :class:`HostProfile`; ``host_cpu`` by name means this
    machine's host profile as :func:`host_profile` finds it without calibrating (as found when it was
    fitted on this CPU, else the full fit shipped for this CPU, else the quick calibration cached
    here, else as found, saying so). Any other name or a path is taken as given (``source`` "as named")."""
    calibrate.check_count("threads", threads)
    if name_or_path != "host_cpu":
        profile = load_profile(name_or_path)
        return HostProfile(profile, "as named", profile.path)
    return host_profile(threads=threads, allow_calibration=False, log=log)
