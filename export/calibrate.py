"""Fitting profiles to measurements, and proving the fit.

* :func:`fit_profile_to_points` fits a few named fields of an NPU profile to published
  whole-model latencies (the Edge TPU's two calibration points, the M55H's three rows),
  by Nelder-Mead on the squared log error; every other field stays as the file states it.
* :func:`run_microbenchmarks` times single kernels in LiteRT on this machine (conv-BN-ReLU
  kxk, 1x1, depthwise, group conv across channels per group, dense, add, multiply,
  concat, slice, channel shuffle, pooling, activations, softmax, reshape; int8 and
  float32; several resolutions and channel counts), and :func:`fit_host_profile` fits one
  linear predictor per kernel kind and precision,
  ``time = fixed_s + per_mac_s * work + per_byte_s * bytes`` (+ ``per_group_s * groups``
  for grouped convs; hard-swish, hard-sigmoid and sigmoid each get their own), by
  non-negative least squares on relative error (nn-Meter's kernel-level approach, with
  analytic features).
* :func:`validate_host_profile` converts zoo models at two resolutions in int8 and
  float32, measures them in LiteRT in the same run and compares with the estimate:
  share within +-10%, mean absolute % error, Spearman rank correlation, worst five.
"""
import copy
import datetime
import itertools
import math
import os
import platform
import time

import numpy as np

from kerasnets.stats import randomize_batch_norm

from export import cost, litert_timing
from export.profiles import load_profile, parse_profile
from kerasnets.backend import keras

L = keras.layers


# ------------------------------------------------------- NPU point fitting ----

def _set(data, dotted, value):
    node = data
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value


def _nelder_mead(f, x0, steps, iterations=300, tol=1e-10):
    n = len(x0)
    simplex = [np.array(x0, float)] + [np.array(x0, float) + np.eye(n)[i] * steps[i] for i in range(n)]
    values = [f(x) for x in simplex]
    for _ in range(iterations):
        order = np.argsort(values)
        simplex = [simplex[i] for i in order]
        values = [values[i] for i in order]
        if abs(values[-1] - values[0]) < tol:
            break
        centroid = np.mean(simplex[:-1], axis=0)
        xr = centroid + (centroid - simplex[-1])
        fr = f(xr)
        if fr < values[0]:
            xe = centroid + 2 * (centroid - simplex[-1])
            fe = f(xe)
            simplex[-1], values[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < values[-2]:
            simplex[-1], values[-1] = xr, fr
        else:
            xc = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(xc)
            if fc < values[-1]:
                simplex[-1], values[-1] = xc, fc
            else:
                simplex = [simplex[0] + 0.5 * (s - simplex[0]) for s in simplex]
                values = [f(s) for s in simplex]
    best = int(np.argmin(values))
    return simplex[best], values[best]


def fit_profile_to_points(profile, points, free, iterations=400):
    """Fit the ``free`` parameters of an NPU profile to measured whole-model latencies.

    Args:
      profile: a profile name or dict (the starting point; its other fields stay fixed).
      points: list of ``(model_name, (height, width), latency_ms)``.
      free: ``{parameter: {"paths": {dotted_field: multiplier}, "low": x, "high": y}}``;
        each parameter value ``v`` sets every listed field to ``v * multiplier`` (so tied
        fields, such as a group-conv curve that peaks at the conv efficiency, move together).

    Returns ``(fitted profile data, report)``, the report listing each point's prediction.
    """
    import kerasnets
    from export import partition

    base = copy.deepcopy(load_profile(profile).data if isinstance(profile, str) else profile)
    base.pop("inherits", None)
    graphs = []
    for name, (h, w), target in points:
        graph = cost.analyze(kerasnets.get_model(name, input_shape=(h, w, 3)))
        decisions = partition.place(graph, parse_profile(copy.deepcopy(base)), "max_npu")
        graphs.append((graph, {d["name"]: d["placement"] for d in decisions}, target))
    names = list(free)

    def apply(x):
        data = copy.deepcopy(base)
        for name, v in zip(names, x):
            spec = free[name]
            value = min(max(math.exp(v), spec["low"]), spec["high"])
            for path, mult in spec["paths"].items():
                _set(data, path, min(value * mult, 1.0) if "efficiency" in path else value * mult)
        return data

    def loss(x):
        prof = parse_profile(apply(x))
        err = 0.0
        for graph, placement, target in graphs:
            ms = cost.estimate_graph(graph, prof, placement=placement)["totals"]["latency_ms"]
            err += math.log(ms / target) ** 2
        return err

    x0 = []
    for name in names:
        first_path, mult = next(iter(free[name]["paths"].items()))
        node = base
        for p in first_path.split("."):
            node = node[p]
        x0.append(math.log(node / mult))
    x, err = _nelder_mead(loss, x0, [0.3] * len(x0), iterations)
    fitted = apply(x)
    prof = parse_profile(copy.deepcopy(fitted))
    report = []
    for (name, size, target), (graph, placement, _) in zip(points, graphs):
        ms = cost.estimate_graph(graph, prof, placement=placement)["totals"]["latency_ms"]
        report.append({"model": name, "input": list(size), "measured_ms": target, "predicted_ms": round(ms, 4),
                       "error_pct": round(100 * (ms / target - 1), 2)})
    fitted["fitted_to"] = report
    fitted["fitted_fields"] = {name: {p: round(min(math.exp(v), free[name]["high"]) * m, 6)
                                      for p, m in free[name]["paths"].items()} for name, v in zip(names, x)}
    return fitted, report


# ---------------------------------------------------- host micro-benchmarks ----

def _cbr(x, filters, k, s, groups=1):
    x = L.Conv2D(filters, k, s, padding="same", groups=groups, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    return L.ReLU(6.0)(x)


def kernel_specs(quick=False):
    """The sampled kernels: ``(kind, builder args)``; ``quick`` keeps about a third of them."""
    from kerasnets import layers as kl
    specs = []
    for res, cin, cout, k, s in ((112, 3, 32, 3, 2), (56, 16, 32, 3, 1), (56, 32, 32, 3, 1), (28, 32, 64, 3, 1),
                                 (28, 64, 64, 3, 2), (14, 64, 128, 3, 1), (14, 128, 128, 3, 1), (7, 128, 256, 3, 1),
                                 (56, 24, 96, 3, 1), (28, 48, 192, 5, 1), (14, 96, 96, 5, 2), (32, 8, 16, 3, 1),
                                 (56, 32, 128, 3, 2), (28, 96, 96, 3, 1)):
        specs.append(("conv", (res, res, cin), lambda x, cout=cout, k=k, s=s: _cbr(x, cout, k, s)))
    for res, cin, cout in ((56, 16, 96), (56, 96, 24), (28, 32, 192), (28, 192, 32), (14, 64, 384), (14, 384, 64),
                           (7, 160, 960), (7, 960, 320), (56, 24, 144), (28, 144, 48), (14, 96, 576), (7, 320, 1280),
                           (112, 32, 16), (28, 116, 116)):
        specs.append(("conv1x1", (res, res, cin), lambda x, cout=cout: _cbr(x, cout, 1, 1)))
    for res, c, k, s in ((112, 32, 3, 1), (112, 96, 3, 2), (56, 144, 3, 1), (28, 192, 3, 1), (14, 384, 3, 1),
                         (14, 576, 3, 1), (7, 960, 3, 1), (28, 144, 5, 1), (28, 240, 5, 2), (7, 672, 5, 1),
                         (56, 48, 3, 2), (14, 116, 3, 1)):
        specs.append(("depthwise", (res, res, c), lambda x, k=k, s=s: L.ReLU(6.0)(L.BatchNormalization()(
            L.DepthwiseConv2D(k, s, padding="same", use_bias=False)(x)))))
    for res, cin, cout, cpg, k in ((28, 64, 64, 8, 3), (28, 128, 128, 8, 3), (14, 256, 256, 8, 3), (28, 96, 96, 2, 3),
                                   (28, 96, 96, 4, 3), (28, 96, 96, 16, 3), (28, 96, 96, 32, 3), (14, 192, 192, 24, 3),
                                   (56, 64, 64, 8, 3), (28, 240, 60, 80, 1), (14, 480, 120, 160, 1), (28, 384, 96, 48, 1),
                                   (14, 96, 480, 32, 1), (7, 368, 368, 8, 3)):
        specs.append(("group_conv", (res, res, cin), lambda x, cout=cout, cpg=cpg, k=k, cin=cin: _cbr(
            x, cout, k, 1, groups=cin // cpg)))
    for cin, cout in ((1280, 1000), (1024, 1000), (576, 1024), (960, 1280), (512, 10), (2048, 1000), (4096, 1000),
                      (1280, 10)):
        specs.append(("dense", (cin,), lambda x, cout=cout: L.Dense(cout)(x)))
    shapes = ((112, 112, 16), (56, 56, 24), (28, 28, 32), (14, 14, 96), (7, 7, 160), (28, 28, 116))
    for shp in shapes:
        specs.append(("add", shp, lambda x: L.Add()([x, x])))
        specs.append(("concat", shp, lambda x: L.Concatenate()([x, x])))
    for shp in ((56, 56, 24), (28, 28, 96), (14, 14, 480), (7, 7, 960)):
        specs.append(("multiply", shp, lambda x: L.Multiply()([x, x])))
    for shp in ((56, 56, 48), (28, 28, 116), (14, 14, 232), (7, 7, 464)):
        specs.append(("slice", shp, lambda x: kl.ChannelSlice(0, x.shape[-1] // 2)(x)))
    for shp, g in (((56, 56, 48), 2), ((28, 28, 116), 2), ((14, 14, 232), 2), ((7, 7, 464), 2), ((28, 28, 240), 3),
                   ((14, 14, 480), 3)):
        specs.append(("shuffle", shp, lambda x, g=g: kl.ChannelShuffle(g, mode="low_rank")(x)))
    for shp, k, s in (((112, 112, 24), 3, 2), ((56, 56, 24), 3, 2), ((32, 32, 64), 2, 2), ((16, 16, 128), 2, 2),
                      ((56, 56, 64), 2, 2)):
        specs.append(("max_pool", shp, lambda x, k=k, s=s: L.MaxPooling2D(k, s, padding="same")(x)))
    for shp in ((56, 56, 24), (28, 28, 240), (14, 14, 480), (7, 7, 512)):
        specs.append(("avg_pool", shp, lambda x: L.AveragePooling2D(3, 2, padding="same")(x)))
    for shp in ((7, 7, 1280), (7, 7, 960), (14, 14, 576), (7, 7, 2048), (28, 28, 96), (56, 56, 72)):
        specs.append(("global_pool", shp, lambda x: L.GlobalAveragePooling2D(keepdims=True)(x)))
    for shp, layer in (((28, 28, 120), kl.HardSwish), ((14, 14, 480), kl.HardSwish), ((56, 56, 16), kl.HardSwish),
                       ((112, 112, 16), kl.HardSwish), ((7, 7, 960), kl.HardSwish), ((28, 28, 72), kl.HardSwish),
                       ((1, 1, 480), kl.HardSigmoid), ((1, 1, 96), kl.HardSigmoid), ((1, 1, 960), kl.HardSigmoid),
                       ((14, 14, 240), kl.HardSigmoid), ((1, 1, 240), lambda: L.Activation("sigmoid")),
                       ((1, 1, 1152), lambda: L.Activation("sigmoid")), ((14, 14, 96), lambda: L.Activation("sigmoid"))):
        specs.append(("activation", shp, lambda x, layer=layer: layer()(x)))
    for n in (1000, 10, 100):
        specs.append(("softmax", (n,), lambda x: L.Softmax()(x)))
    for shp in ((1, 1, 1280), (7, 7, 512)):
        specs.append(("reshape", shp, lambda x: L.Flatten()(x)))
    if quick:
        specs = specs[::3]
    return specs


def _kernel_model(shape, body, index):
    x = keras.Input(shape, name="input")
    model = keras.Model(x, body(x), name=f"kernel{index}")
    return randomize_batch_norm(model, seed=index, beta_std=0.3, mean_std=0.1)


def _convert(model, precision, calibration=4):
    from export import tflite
    shape = tuple(model.input_shape[1:])
    images = np.random.default_rng(0).uniform(-1, 1, (calibration,) + shape).astype(np.float32)
    if precision == "int8":
        return tflite.convert(model, "int8", representative_data=images, calibration_count=calibration)
    return tflite.convert(model, precision)


def _empty_model():
    x = keras.Input((1, 1, 8), name="input")
    return keras.Model(x, L.Add()([x, x]), name="invoke_overhead")


def run_microbenchmarks(precisions=("int8", "float32"), threads=1, quick=False, min_seconds=0.1, log=None):
    """Time every kernel of :func:`kernel_specs` in LiteRT; one sample dict per (kernel, precision).

    Each sample has ``kind``, ``precision``, ``work`` and ``bytes`` (the estimator's
    features for that op), ``ms`` (the median invoke minus the median invoke of a
    one-op model: LiteRT's per-invoke overhead) and the shapes.
    """
    samples = []
    overhead = {}
    for precision in precisions:
        overhead[precision] = litert_timing.time_model(_convert(_empty_model(), precision), threads, runs=50,
                                                       warmup=10, min_seconds=min_seconds)["median_ms"]
    for i, (kind, shape, body) in enumerate(kernel_specs(quick)):
        model = _kernel_model(shape, body, i)
        graph = cost.analyze(model)
        ops = [op for op in graph.ops if not op.is_free]
        for precision in precisions:
            content = _convert(model, precision)
            timing = litert_timing.time_model(content, threads, runs=10, warmup=3, min_seconds=min_seconds)
            work = nbytes = groups = 0
            for op in ops:
                w, b, g = cost.cpu_features(op, precision)
                work, nbytes, groups = work + w, nbytes + b, groups + g
            sample = {"kind": cost.cpu_predictor_kind(ops[0]) if ops else kind, "spec_kind": kind,
                      "precision": precision, "input": list(shape), "work": int(work), "bytes": int(nbytes),
                      "groups": int(groups),
                      "measured_ms": timing["median_ms"], "ms": max(timing["median_ms"] - overhead[precision], 1e-4),
                      "ops": len(ops)}
            samples.append(sample)
            if log:
                log(f"{kind:12s} {precision:8s} {str(shape):18s} {timing['median_ms']:.4f} ms")
    return samples, overhead


def _nnls_relative(features, targets):
    """Non-negative least squares on relative error, by trying every subset of features."""
    a = features / targets[:, None]
    b = np.ones_like(targets)
    best, best_err = np.zeros(features.shape[1]), math.inf
    for r in range(1, features.shape[1] + 1):
        for subset in itertools.combinations(range(features.shape[1]), r):
            coef, *_ = np.linalg.lstsq(a[:, subset], b, rcond=None)
            if np.any(coef < 0):
                continue
            full = np.zeros(features.shape[1])
            full[list(subset)] = coef
            err = float(np.sum((a @ full - b) ** 2))
            if err < best_err:
                best, best_err = full, err
    return best


def fit_host_profile(samples, overhead, threads=1, name="host_cpu"):
    """A ``cpu`` profile dict fitted to micro-benchmark samples (see :func:`run_microbenchmarks`)."""
    predictors = {}
    peak = {}
    fit_report = {}
    for precision in sorted({s["precision"] for s in samples}):
        predictors[precision] = {}
        rows = [s for s in samples if s["precision"] == precision]
        peak[precision] = max((s["work"] / (s["ms"] * 1e-3) for s in rows
                               if s["kind"] in ("conv", "conv1x1") and s["ms"] > 0), default=1e10)
        for kind in sorted({s["kind"] for s in rows}):
            group = [s for s in rows if s["kind"] == kind]
            x = np.array([[max(s["ops"], 1), s["work"], s["bytes"], s.get("groups", 0)] for s in group], float)
            if not x[:, 3].any():
                x = x[:, :3]
            t = np.array([s["ms"] * 1e-3 for s in group])
            coef = _nnls_relative(x, t)
            predictors[precision][kind] = {"fixed_s": float(coef[0]), "per_mac_s": float(coef[1]),
                                           "per_byte_s": float(coef[2])}
            if x.shape[1] == 4:
                predictors[precision][kind]["per_group_s"] = float(coef[3])
            pred = x @ coef
            fit_report[f"{precision}/{kind}"] = {"samples": len(group),
                                                 "mean_abs_pct_error": float(np.mean(np.abs(pred / t - 1)) * 100)}
        for kind, fb in (("conv", "conv1x1"), ("add", "multiply")):
            if kind not in predictors[precision] and fb in predictors[precision]:
                predictors[precision][kind] = dict(predictors[precision][fb])
    return {
        "name": name, "kind": "cpu", "device_label": "host CPU",
        "description": f"This machine's CPU in LiteRT (XNNPACK), {threads} thread(s), fitted by "
                       "kerasnets-estimate --calibrate from kernel micro-benchmarks.",
        "sources": ["export.calibrate.run_microbenchmarks + fit_host_profile (measured on this machine)"],
        "measured_on": {"machine": platform.machine(), "processor": _cpu_name(), "cores": os.cpu_count(),
                        "date": datetime.date.today().isoformat(), "threads": threads},
        "threads": int(threads), "invoke_overhead_s": {p: v * 1e-3 for p, v in overhead.items()},
        "peak_macs_per_s": peak, "predictors": predictors, "fit": fit_report,
    }


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# ---------------------------------------------------------------- validation ----

def _spearman(a, b):
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if len(a) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _breakdown(result):
    by = {}
    for r in result["layers"]:
        by[r["kind"]] = by.get(r["kind"], 0.0) + r["latency_ms"]
    total = sum(by.values()) or 1.0
    top = sorted(by.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{k} {v / total:.0%}" for k, v in top)


def validate_host_profile(profile="host_cpu", models=None, resolutions=(96, 128), precisions=("int8", "float32"),
                          threads=1, min_seconds=0.3, log=None):
    """Estimate and measure zoo models in LiteRT in one run; returns the validation report dict."""
    import kerasnets
    profile = load_profile(profile)
    models = list(models or kerasnets.list_models())
    rows = []
    for name in models:
        for res in resolutions:
            model = kerasnets.get_model(name, input_shape=(res, res, 3), classes=1000)
            graph = cost.analyze(model)
            for precision in precisions:
                t0 = time.perf_counter()
                est = cost.estimate_graph(graph, profile, precision)
                content = _convert(model, precision, calibration=2)
                timing = litert_timing.time_model(content, threads, runs=5, warmup=2, min_seconds=min_seconds)
                pred = est["totals"]["latency_ms"]
                row = {"model": name, "input": res, "precision": precision, "predicted_ms": pred,
                       "measured_ms": timing["median_ms"], "error_pct": 100 * (pred / timing["median_ms"] - 1),
                       "runs": timing["runs"], "macs": est["totals"]["macs"], "breakdown": _breakdown(est),
                       "seconds": time.perf_counter() - t0}
                rows.append(row)
                if log:
                    log(f"{name:26s} {res:4d} {precision:8s} predicted {pred:9.3f} ms measured "
                        f"{timing['median_ms']:9.3f} ms error {row['error_pct']:+6.1f}%")
    err = np.array([r["error_pct"] for r in rows])
    summary = {"count": len(rows), "within_10pct": float(np.mean(np.abs(err) <= 10)) if len(rows) else 0.0,
               "mean_abs_pct_error": float(np.mean(np.abs(err))) if len(rows) else 0.0,
               "spearman": _spearman([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows])}
    for precision in precisions:
        sub = [r for r in rows if r["precision"] == precision]
        if sub:
            e = np.array([r["error_pct"] for r in sub])
            summary[precision] = {"count": len(sub), "within_10pct": float(np.mean(np.abs(e) <= 10)),
                                  "mean_abs_pct_error": float(np.mean(np.abs(e))),
                                  "spearman": _spearman([r["predicted_ms"] for r in sub],
                                                        [r["measured_ms"] for r in sub])}
    worst = sorted(rows, key=lambda r: -abs(r["error_pct"]))[:5]
    for r in worst:
        r["reason"] = (f"{'over' if r['error_pct'] > 0 else 'under'}-predicted by {abs(r['error_pct']):.0f}%; "
                       f"predicted time is {r['breakdown']}")
    return {"profile": profile.name, "threads": threads, "resolutions": list(resolutions),
            "precisions": list(precisions), "method": f"LiteRT, {threads} thread(s), median of >= 5 invokes "
            f"and >= {min_seconds} s after 2 warm-ups; estimate from profile {profile.name}",
            "summary": summary, "worst": worst, "rows": rows}


def format_validation(report):
    s = report["summary"]
    lines = [f"host CPU validation: {s['count']} model/size/precision cases, {report['method']}",
             f"within +-10%: {s['within_10pct']:.0%}   mean |error|: {s['mean_abs_pct_error']:.1f}%   "
             f"Spearman: {s['spearman']:.3f}"]
    for p in report["precisions"]:
        if p in s:
            lines.append(f"  {p:8s} within +-10%: {s[p]['within_10pct']:.0%}  mean |error|: "
                         f"{s[p]['mean_abs_pct_error']:.1f}%  Spearman: {s[p]['spearman']:.3f}")
    lines.append("worst five:")
    for r in report["worst"]:
        lines.append(f"  {r['model']} {r['input']}x{r['input']} {r['precision']}: predicted {r['predicted_ms']:.2f} ms, "
                     f"measured {r['measured_ms']:.2f} ms ({r['reason']})")
    return "\n".join(lines)
