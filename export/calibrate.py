"""Fitting profiles to measurements, and proving the fit.

* :func:`fit_profile_to_points` fits a few named fields of an NPU profile to published
  whole-model latencies (the Edge TPU's two calibration points, the M55H's three rows),
  by Nelder-Mead on the squared log error; every other field stays as the file states it.
* :func:`run_microbenchmarks` times kernels in LiteRT on this machine, int8 and float32:
  a fixed set covering every kind (conv-BN-ReLU kxk, 1x1, depthwise, group conv across
  channels per group, dense, add, multiply, concat, slice, channel shuffle, pooling,
  activations, softmax, reshape), random draws of the compute kinds, and every distinct
  kernel of random networks built from the zoo's blocks (:func:`network_models`;
  nn-Meter samples its kernels from real architectures the same way), plus those whole
  networks, and the parameter-cache probe (:func:`param_cache_probes`: chains of dense layers
  of 2-48 MiB of parameters). Everything is timed in interleaved rounds, taking the 10th percentile of
  window medians (:func:`kerasnets.export.litert_timing.time_interleaved`): on this shared VM a
  single stretch of timing can land in a slow period and read up to 2x.
* :func:`fit_host_profile` fits one predictor per kernel kind and precision,
  ``time = fixed_s + per_mac_s * MACs (output channels padded to the fitted
  channel_align) + per-byte and per-output-pixel terms (+ per group and per group-pixel
  for grouped convs)``,
  by non-negative least squares on relative error; a kernel-regression table corrects each
  near the measured kernels; the probe gives the parameter-cache curve (:func:`fit_param_cache`:
  what a model pays on top when its parameters do not fit the caches); and the whole networks
  fit the in-model context (a factor, a per-op and a per-parameter-byte term: kernels in a
  model are slower than alone).
* :func:`validate_host_profile` converts zoo models at two resolutions in int8 and
  float32 and an anchor (mobilenet_v2_100 at 224x224), measures them all in LiteRT in the
  same way, in one run, and compares with the estimate (:func:`summarize_validation`):
  (a) each case's latency relative to the anchor, predicted against measured (share within
  +-10%, target 90% per precision), (b) Spearman rank correlation (target 0.97), (c) the
  absolute error and the measurement's own spread between repeat passes; worst five. No
  zoo model is used by the fit.

The quick calibration (rescaling these predictors for another CPU) is :mod:`kerasnets.export.hostfit`.
"""
import copy
import dataclasses
import datetime
import itertools
import json
import math
import time

import numpy as np

import kerasnets
from kerasnets.export import cost, litert_timing, partition, tflite
from kerasnets.export.placement import place
from kerasnets.export.profiles import CPU_CONTEXT_KEYS, load_profile, param_cache_s, parse_profile
from kerasnets import layers as kl
from kerasnets.backend import keras
from kerasnets.builder import build_model
from kerasnets.host import machine
from kerasnets.io import atomic_write
from kerasnets.spec import Block, ModelSpec, Top
from kerasnets.stats import randomize_batch_norm
from kerasnets.errors import UsageError

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

    base = copy.deepcopy(load_profile(profile).raw if isinstance(profile, str) else profile)
    base.pop("inherits", None)
    graphs = []
    for name, (h, w), target in points:
        graph = cost.analyze(kerasnets.get_model(name, input_shape=(h, w, 3)))
        decisions = place(graph, parse_profile(copy.deepcopy(base)), "max_npu")
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

def conv_bn_relu6(x, filters, k, s, groups=1):
    """Conv2D (no bias, 'same' padding) -> BatchNorm -> ReLU6: the conv kernel the calibration times."""
    x = L.Conv2D(filters, k, s, padding="same", groups=groups, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    return L.ReLU(6.0)(x)


def kernel_specs(quick=False, samples=8, seed=0):
    """The kernels to time: ``(kind, input shape, builder)``: a fixed set covering every kind,
    plus ``samples`` random ones per compute kind (:func:`_sampled_kernel_specs`);
    ``quick`` keeps about a third of them."""
    specs = []
    for res, cin, cout, k, s in ((112, 3, 32, 3, 2), (56, 16, 32, 3, 1), (56, 32, 32, 3, 1), (28, 32, 64, 3, 1),
                                 (28, 64, 64, 3, 2), (14, 64, 128, 3, 1), (14, 128, 128, 3, 1), (7, 128, 256, 3, 1),
                                 (56, 24, 96, 3, 1), (28, 48, 192, 5, 1), (14, 96, 96, 5, 2), (32, 8, 16, 3, 1),
                                 (56, 32, 128, 3, 2), (28, 96, 96, 3, 1)):
        specs.append(("conv", (res, res, cin), lambda x, cout=cout, k=k, s=s: conv_bn_relu6(x, cout, k, s)))
    for res, cin, cout in ((56, 16, 96), (56, 96, 24), (28, 32, 192), (28, 192, 32), (14, 64, 384), (14, 384, 64),
                           (7, 160, 960), (7, 960, 320), (56, 24, 144), (28, 144, 48), (14, 96, 576), (7, 320, 1280),
                           (112, 32, 16), (28, 116, 116)):
        specs.append(("conv1x1", (res, res, cin), lambda x, cout=cout: conv_bn_relu6(x, cout, 1, 1)))
    for res, c, k, s in ((112, 32, 3, 1), (112, 96, 3, 2), (56, 144, 3, 1), (28, 192, 3, 1), (14, 384, 3, 1),
                         (14, 576, 3, 1), (7, 960, 3, 1), (28, 144, 5, 1), (28, 240, 5, 2), (7, 672, 5, 1),
                         (56, 48, 3, 2), (14, 116, 3, 1)):
        specs.append(("depthwise", (res, res, c), lambda x, k=k, s=s: L.ReLU(6.0)(L.BatchNormalization()(
            L.DepthwiseConv2D(k, s, padding="same", use_bias=False)(x)))))
    for res, cin, cout, cpg, k in ((28, 64, 64, 8, 3), (28, 128, 128, 8, 3), (14, 256, 256, 8, 3), (28, 96, 96, 2, 3),
                                   (28, 96, 96, 4, 3), (28, 96, 96, 16, 3), (28, 96, 96, 32, 3), (14, 192, 192, 24, 3),
                                   (56, 64, 64, 8, 3), (28, 240, 60, 80, 1), (14, 480, 120, 160, 1), (28, 384, 96, 48, 1),
                                   (14, 96, 480, 32, 1), (7, 368, 368, 8, 3)):
        specs.append(("group_conv", (res, res, cin), lambda x, cout=cout, cpg=cpg, k=k, cin=cin: conv_bn_relu6(
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
    specs += _sampled_kernel_specs(np.random.default_rng(seed), samples)
    if quick:
        specs = specs[::3]
    return specs


def _sampled_kernel_specs(rng, count, max_macs=1.5e8):
    """``count`` random kernels per compute kind, nn-Meter style: configurations drawn from
    the ranges mobile backbones use (channels a multiple of 4 from 8 to 512, feature maps
    from 7 to 112, kernel 1/3/5, stride 1/2, 2 to 64 channels per group), redrawn while
    a kernel would exceed ``max_macs``."""
    res_choices = (7, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112)

    def ch(lo, hi):
        return int(rng.integers(lo // 4, hi // 4 + 1)) * 4

    def draw(kind):
        res = int(rng.choice(res_choices))
        k, s = int(rng.choice([3, 3, 5])), int(rng.choice([1, 1, 2]))
        if kind == "conv":
            cin, cout = (3 if rng.random() < 0.15 else ch(8, 256)), ch(8, 256)
            return cin * cout * k * k * res * res / s ** 2, (res, res, cin), \
                lambda x: conv_bn_relu6(x, cout, k, s)
        if kind == "conv1x1":
            cin, cout = ch(8, 512), ch(8, 512)
            return cin * cout * res * res, (res, res, cin), lambda x: conv_bn_relu6(x, cout, 1, 1)
        if kind == "depthwise":
            c = ch(16, 960)
            return c * k * k * res * res / s ** 2, (res, res, c), lambda x: L.ReLU(6.0)(L.BatchNormalization()(
                L.DepthwiseConv2D(k, s, padding="same", use_bias=False)(x)))
        cpg, groups, k = int(rng.choice([2, 4, 8, 8, 16, 24, 32, 64])), int(rng.choice([2, 3, 4, 6, 8, 16])), \
            int(rng.choice([1, 3, 3]))
        cin = cpg * groups
        cout = cin if k == 3 else max(ch(16, 256) // groups, 1) * groups
        return cin * cout // groups * k * k * res * res, (res, res, cin), \
            lambda x: conv_bn_relu6(x, cout, k, 1, groups=groups)

    specs = []
    for _ in range(count):
        for kind in ("conv", "conv1x1", "depthwise", "group_conv"):
            while True:
                macs, shape, body = draw(kind)
                if macs <= max_macs and shape[-1] <= 512 * (2 if kind == "depthwise" else 1):
                    break
            specs.append((kind, shape, body))
    return specs


def random_network_spec(rng, index=0):
    """A random mobile backbone (a :class:`kerasnets.spec.ModelSpec`) for fitting the in-model
    context factor: a conv stem, four stages of random block kinds (inverted residual with
    or without squeeze-excite and hard-swish, fused (edge) residual, depthwise separable,
    ghost, RegNetX group conv, ShuffleNet V2, plain conv) at random widths and depths, and a pooled classifier top.
    Drawn from the zoo's building blocks, not copied from any zoo model."""

    # Channel counts a multiple of 4, as in GhostNet or MobileNetV3 (12, 20, 36, 92, ...),
    # so that the fit sees output-channel padding to the kernels' block width.
    def ch(v, div=4):
        return max(div, int(round(v / div)) * div)

    act = str(rng.choice(["relu", "relu6", "hard_swish"]))
    width = ch(rng.choice([16, 24, 32]))
    blocks = [Block("conv", width, 3, 2, act=act)]
    for stage in range(4):
        kind = str(rng.choice(["ir", "ir_se", "er", "ds", "ghost", "regnet_x", "shuffle_v2", "conv"]))
        out = ch(width * rng.uniform(1.3, 2.2))
        for i in range(int(rng.integers(1, 4))):
            stride = 2 if i == 0 and stage > 0 else 1
            block_act = act if kind != "regnet_x" else "relu"
            if kind in ("ir", "ir_se"):
                mid = ch(width * rng.choice([3, 4, 6]))
                se = 0.25 if kind == "ir_se" else 0.0
                blocks.append(Block("ir", out, int(rng.choice([3, 5])), stride, mid=mid, se=se,
                                    se_channels=ch(mid * se) if se else 0, act=block_act))
            elif kind == "er":
                blocks.append(Block("er", out, 3, stride, mid=ch(width * rng.choice([4, 8])), act=block_act))
            elif kind == "ds":
                blocks.append(Block("ds", out, 3, stride, act=block_act))
            elif kind == "ghost":
                blocks.append(Block("ghost", out, 3, stride, mid=ch(width * 3), act="relu"))
            elif kind == "regnet_x":
                gw = int(rng.choice([8, 16]))
                out = ch(out, gw)
                blocks.append(Block("regnet_x", out, 3, stride, mid=out, group_width=gw, act="relu"))
            elif kind == "shuffle_v2" and (stride == 2 or out == width):
                blocks.append(Block("shuffle_v2", out, 3, stride, act="relu"))
            else:
                blocks.append(Block("conv", out, 3, stride, act=block_act))
            width = out
    top = Top("pool_conv_fc", channels=ch(width * 4), act=act) if rng.random() < 0.4 else Top("pool_fc")
    return ModelSpec(f"random_net{index}", tuple(blocks), top)


def network_models(count=8, seed=1, max_macs=3e8, sizes=None):
    """``count`` random networks (Keras models, see :func:`random_network_spec`) at random
    input sizes from 64 to 160 (or at ``sizes[i]``), each redrawn smaller while it exceeds
    ``max_macs``."""
    rng = np.random.default_rng(seed)
    models = []
    for i in range(count):
        spec = random_network_spec(rng, i)
        res = int(rng.choice([64, 80, 112, 144, 160]))
        if sizes:
            res = int(sizes[i % len(sizes)])
        while True:
            model = build_model(spec, keras.Input((res, res, 3), name="input"), classes=1000)
            if res <= 48 or cost.analyze(model).total_macs() <= max_macs:
                break
            res -= 16
        model = randomize_batch_norm(model, seed=1000 + i, beta_std=0.3, mean_std=0.1)
        model.kerasnets_spec = json.dumps(dataclasses.asdict(spec))  # a str: Keras wraps dict attributes
        models.append(model)
    return models


def build_network(spec, size):
    """Rebuild a random network from its spec (``model.kerasnets_spec``, JSON) at ``size``."""
    spec = json.loads(spec) if isinstance(spec, str) else spec
    spec = ModelSpec(spec["name"], tuple(Block(**b) for b in spec["blocks"]), Top(**spec["top"]),
                     tuple(spec["default_size"]))
    return build_model(spec, keras.Input((size, size, 3), name="input"), classes=1000)


def kernel_model(shape, body, index):
    """A one-kernel Keras model: ``body`` applied to an input of ``shape``, BatchNorm statistics randomized
    (seeded by ``index``) so that folding them is not a no-op."""
    x = keras.Input(shape, name="input")
    model = keras.Model(x, body(x), name=f"kernel{index}")
    return randomize_batch_norm(model, seed=index, beta_std=0.3, mean_std=0.1)


TIMED_PRECISIONS = ("int8", "float32")


def check_count(name, value, low=1):
    """Refuse (UsageError) ``value`` unless it is an integer >= ``low``; ``name`` names it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UsageError(f"{name}={value!r} must be an integer >= {low}.")


def check_precisions(precisions):
    """Refuse (UsageError) anything but a non-empty list of the precisions timed on the host (int8, float32)."""
    if isinstance(precisions, str) or not isinstance(precisions, (list, tuple)) or not precisions:
        raise UsageError(f"precisions={precisions!r} must be a non-empty list of int8 and/or float32.")
    for precision in precisions:
        _check_precision(precision)


def _check_precision(precision):
    if not isinstance(precision, str) or precision not in TIMED_PRECISIONS:
        raise UsageError(f"precision {precision!r} is not timed on the host CPU; use int8 and/or float32.")


def _convert(model, precision, calibration=4):
    """A kernel to TFLite at batch 1: float32, or full-integer int8 calibrated on random data."""
    _check_precision(precision)
    if precision == "float32":
        return tflite.convert(model, precision)
    rng = np.random.default_rng(0)
    images = [rng.uniform(-1, 1, (calibration,) + tuple(t.shape[1:])).astype(np.float32) for t in model.inputs]
    return tflite.convert(model, "int8", representative_data=images, calibration_count=calibration)


def network_kernels(model):
    """The kernels of ``model`` as the estimator sees them: one Keras model per op that costs
    time (with the ops fused into it: BN, activation), deduplicated by configuration.

    Returns a list of ``(sub_model, ops)``; timing these alone and the whole model in the
    same run gives the in-model context, and they are kernel samples drawn from real blocks
    (nn-Meter's kernel-level prediction, with configurations from whole networks).
    """
    graph = cost.analyze(model)
    shapes = {op.name: tuple(op.out_shape) for op in graph.ops}
    fused = {}
    for op in graph.ops:
        if op.fused_into:
            fused.setdefault(graph.head_of(op).name, []).append(op.name)
    seen, kernels = set(), []
    for head in graph.ops:
        if head.is_free:
            continue
        names = [head.name] + fused.get(head.name, [])
        ops = [graph.by_name[n] for n in names]
        key = repr([(o.kind, o.class_name, o.in_shapes, o.out_shape, o.kernel, o.strides, o.groups, o.activation,
                     o.form) for o in ops])
        if key in seen:
            continue
        seen.add(key)
        part = {"device": "kernel", "layers": names, "inputs": list(dict.fromkeys(head.inputs)),
                "outputs": [names[-1]]}
        kernels.append((partition.build_part(model, part, shapes), [head]))
    return kernels


def _empty_model():
    x = keras.Input((1, 1, 8), name="input")
    return keras.Model(x, L.Add()([x, x]), name="invoke_overhead")


def _sum_features(ops, precision):
    total = {}
    for op in ops:
        for k, v in cost.cpu_features(op, precision).items():
            total[k] = total.get(k, 0) + int(v)
    total["channels"] = cost.gemm_channels(ops[0]) if ops else 0
    return total


# The parameter-cache probe (:func:`param_cache_probes`): chains of square dense layers of 1 MiB of parameters
# each at every precision, this many MiB in all. A model's parameters are read once per inference, so a chain that
# fits the caches runs at the in-cache rate per byte and one that does not fetches the bytes over it from memory
# (measured on a 2-core AMD EPYC VM, float32: 21 us/MiB up to 12 MiB, 50-100 us/MiB from 24 MiB on, the
# memory-bound rate drifting with the neighbours' load).
PARAM_CACHE_PROBE_MIB = (2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 32, 48)
PARAM_CACHE_PROBE_KIND = "param_cache"


def param_cache_probes(precisions=("int8", "float32"), sizes_mib=PARAM_CACHE_PROBE_MIB):
    """The parameter-cache probe models: ``[(precision, model)]``, for each precision one chain of
    1 MiB dense layers per size in ``sizes_mib`` (float32 512x512, int8 1024x1024)."""
    check_precisions(precisions)
    probes = []
    for precision in precisions:
        width = 512 if precision == "float32" else 1024
        for mib in sizes_mib:
            x = keras.Input((width,), name="input")
            y = x
            for i in range(max(1, int(mib))):
                y = L.Dense(width, name=f"dense{i}")(y)
            probes.append((precision, keras.Model(x, y, name=f"param_cache_{mib}mib_{precision}")))
    return probes


def run_microbenchmarks(precisions=("int8", "float32"), threads=1, quick=False, rounds=15, samples=8, networks=16,
                        seed=0, log=None):
    """Time kernels and random networks in LiteRT: the kernels of :func:`kernel_specs`, the
    random networks of :func:`network_models`, and every distinct kernel of those networks
    (:func:`network_kernels`).

    Everything is converted and loaded first, then timed together in ``rounds``
    interleaved rounds (:func:`kerasnets.export.litert_timing.time_interleaved`), so that a slow
    period of a shared machine does not land on a few kernels only. Returns
    ``(samples, overhead, networks)``: one sample dict per (kernel, precision) with
    ``kind``, ``precision``, the estimator's features (``work``, ``bytes``, ``in_bytes``,
    ``out_bytes``, ``param_bytes``, ``groups``) and ``ms`` (steady invoke time minus that
    of a one-op model, LiteRT's per-invoke overhead); the overhead per precision; and one
    dict per (network, precision) with the Keras ``model`` and its steady ``measured_ms``.
    Unless ``quick``, the samples also hold the parameter-cache probe (:func:`param_cache_probes`),
    with ``kind`` ``"param_cache"``.
    """
    check_precisions(precisions)
    for name, value, low in (("threads", threads, 1), ("rounds", rounds, 1), ("samples", samples, 1),
                             ("networks", networks, 0), ("seed", seed, 0)):
        check_count(name, value, low)
    specs = kernel_specs(quick, samples=samples, seed=seed)
    nets = network_models(max(2, networks // 3) if quick else networks, seed=seed + 1)
    kernels = [(kind, kernel_model(shape, body, i)) for i, (kind, shape, body) in enumerate(specs)]
    for net in nets:
        kernels += [("network", sub) for sub, _ in network_kernels(net)]
    probes = () if quick else param_cache_probes(precisions)
    return time_kernels(kernels, nets, precisions, threads=threads, rounds=rounds, log=log, probes=probes)


def _load_probes(probes, threads, log=None):
    """Ready interpreters and sample metadata for ``probes`` (see :func:`param_cache_probes`), both keyed
    ``("probe", j)``: the metadata is a ``"param_cache"`` sample awaiting its ``ms``."""
    interpreters, meta = {}, {}
    for j, (precision, model) in enumerate(probes):
        ops = [op for op in cost.analyze(model).ops if not op.is_free]
        interpreters[("probe", j)] = litert_timing.load(_convert(model, precision, calibration=1), threads)
        meta[("probe", j)] = dict(kind=PARAM_CACHE_PROBE_KIND, spec_kind=PARAM_CACHE_PROBE_KIND, precision=precision,
                                  input=list(model.input_shape[1:]), ops=len(ops), kernel=-1,
                                  **_sum_features(ops, precision))
    if log and probes:
        log(f"converted {len(probes)} parameter-cache probes")
    return interpreters, meta


def time_kernels(kernels, nets, precisions=("int8", "float32"), threads=1, rounds=15, log=None, probes=()):
    """Convert, load and time ``kernels`` (``(kind, Keras model)`` pairs), whole networks
    ``nets`` (Keras models with a ``kerasnets_spec``) and ``probes`` (``(precision, Keras model)``
    pairs, see :func:`param_cache_probes`) in LiteRT, all interleaved in one run.

    Returns ``(samples, overhead, networks)`` as :func:`run_microbenchmarks` describes; each
    kernel sample also records ``kernel``, the index of its model in ``kernels``; each probe one
    is a sample of kind ``"param_cache"`` with its ``param_bytes`` and ``ms``.
    """
    check_precisions(precisions)
    interpreters, meta = _load_probes(probes, threads, log)
    for precision in precisions:
        interpreters[("overhead", precision)] = litert_timing.load(_convert(_empty_model(), precision), threads)
    for i, (kind, model) in enumerate(kernels):
        shape = model.input_shape[1:] if len(model.inputs) == 1 else model.input_shape[0][1:]
        ops = [op for op in cost.analyze(model).ops if not op.is_free]
        for precision in precisions:
            interpreters[(i, precision)] = litert_timing.load(_convert(model, precision), threads)
            meta[(i, precision)] = dict(kind=cost.cpu_predictor_kind(ops[0]) if ops else kind, spec_kind=kind,
                                        precision=precision, input=list(shape), ops=len(ops), kernel=i,
                                        **_sum_features(ops, precision))
        if log and (i + 1) % 50 == 0:
            log(f"converted {i + 1}/{len(kernels)} kernels")
    for j, model in enumerate(nets):
        for precision in precisions:
            interpreters[("net", j, precision)] = litert_timing.load(_convert(model, precision, calibration=2), threads)
        if log:
            log(f"converted network {j + 1}/{len(nets)} ({model.input_shape[1]}x{model.input_shape[2]})")
    timing = litert_timing.time_interleaved(interpreters, rounds=rounds, log=log)
    overhead = {p: timing[("overhead", p)]["steady_ms"] for p in precisions}
    samples_out = []
    for key, sample in meta.items():
        ms = timing[key]["steady_ms"]
        sample.update(measured_ms=ms, ms=max(ms - overhead[sample["precision"]], 1e-4))
        samples_out.append(sample)
    network_out = [{"model": model, "name": model.name, "input": list(model.input_shape[1:]), "precision": p,
                    "measured_ms": timing[("net", j, p)]["steady_ms"], "spec": model.kerasnets_spec}
                   for j, model in enumerate(nets) for p in precisions]
    return samples_out, overhead, network_out


def save_timings(path, samples, overhead, networks, threads=1):
    """Write what :func:`run_microbenchmarks` measured to ``path`` (JSON), so that
    :func:`load_timings` can refit without measuring again; networks are stored by their
    spec and input size."""
    nets = [{k: v for k, v in n.items() if k != "model"} for n in networks]
    atomic_write(path, json.dumps({"threads": threads, "overhead_ms": overhead, "samples": samples,
                                   "networks": nets}) + "\n")


def load_timings(path, threads=None):
    """Read :func:`save_timings` output back as ``(samples, overhead, networks)``; with
    ``threads``, refuse timings measured with another thread count."""
    try:
        with open(path) as f:
            data = json.load(f)
        samples, overhead, nets = data["samples"], data["overhead_ms"], data["networks"]
        saved_threads = data.get("threads", 1)
        networks = [dict(n, model=build_network(n["spec"], n["input"][0])) for n in nets]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--samples={path} is not a timings file written by kerasnets-estimate --calibrate "
                         f"--samples ({type(e).__name__}: {e}); delete it or pass another path to measure again.")
    if threads is not None and saved_threads != threads:
        raise UsageError(f"--samples={path} was measured with {saved_threads} thread(s), not --threads={threads}; "
                         f"pass --threads={saved_threads} or another --samples path to measure again.")
    return samples, overhead, networks


def nnls_relative(features, targets):
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


# Terms fitted for compute kernels (cost.CPU_TERMS); memory ops get fixed, per-MAC (elements) and per-byte.
_COMPUTE_TERMS = ("per_mac_s", "per_in_byte_s", "per_out_byte_s", "per_param_byte_s", "per_group_s",
                  "per_group_pixel_s", "per_pixel_s")
_MEMORY_TERMS = ("per_mac_s", "per_byte_s")
_COMPUTE_KINDS = ("conv", "conv1x1", "depthwise", "group_conv", "dense")


def _fit_residuals(group, log_ratio, min_samples=8, prior=0.5):
    """Kernel-regression table correcting one linear predictor (see :func:`kerasnets.export.cost.cpu_residual`).

    The bandwidth is chosen by leave-one-out error among a few candidates; returns the
    table (None when there are too few samples) and the leave-one-out log corrections
    (the honest in-sample figure for the fit report).
    """
    if len(group) < min_samples:
        return None, np.zeros(len(group))
    pts = np.array([cost.residual_point(s) for s in group])
    scale = np.maximum(pts.std(axis=0), 1e-3)
    d2 = np.sum(((pts[:, None, :] - pts[None, :, :]) / scale) ** 2, axis=2)
    best = None
    for bandwidth in (0.1, 0.2, 0.35, 0.5, 0.8):
        w = np.exp(-d2 / (2 * bandwidth ** 2))
        np.fill_diagonal(w, 0.0)
        loo = w @ log_ratio / (w.sum(axis=1) + prior)
        err = float(np.mean(np.abs(np.exp(log_ratio - loo) - 1)))
        if best is None or err < best[0]:
            best = (err, bandwidth, loo)
    table = {"points": np.round(pts, 5).tolist(), "log_ratio": np.round(log_ratio, 5).tolist(),
             "scale": np.round(scale, 5).tolist(), "bandwidth": best[1], "prior": prior}
    return table, best[2]


def fit_host_profile(samples, overhead, threads=1, name="host_cpu", networks=None):
    """A ``cpu`` profile dict fitted to micro-benchmark samples (see :func:`run_microbenchmarks`).

    Each kernel kind and precision gets ``time = fixed_s + sum(coefficient * feature)``,
    fitted by non-negative least squares on relative error: for compute kernels the
    features are MACs, input, output and parameter bytes, output pixels, the group count
    and groups x output pixels; for memory ops elements and bytes. A kernel-regression table then
    corrects each predictor near the measured kernels (:func:`_fit_residuals`). With
    ``networks`` (whole random networks timed in the same run) each precision also gets an
    in-model context (:func:`_fit_context`): kernels inside a model run slower than alone
    (cold weights and activations) and pay a per-op cost of their own.
    """
    check_count("threads", threads)
    if not isinstance(samples, (list, tuple)) or not samples or not all(isinstance(s, dict) for s in samples):
        raise UsageError("samples must be the non-empty list of sample dicts run_microbenchmarks returns; measure "
                         "again.")
    if not isinstance(overhead, dict):
        raise UsageError(f"overhead must be the dict of per-precision invoke overheads run_microbenchmarks returns, "
                         f"not {type(overhead).__name__}.")
    if not isinstance(name, str) or not name:
        raise UsageError(f"name={name!r} must be a non-empty profile name.")
    predictors = {}
    peak = {}
    fit_report = {}
    residuals = {}
    probes = [s for s in samples if s.get("kind") == PARAM_CACHE_PROBE_KIND]
    samples = [s for s in samples if s.get("kind") != PARAM_CACHE_PROBE_KIND]
    if not samples:
        raise UsageError("samples hold no kernel timings, only parameter-cache probes; measure again.")
    for precision in sorted({s["precision"] for s in samples}):
        predictors[precision] = {}
        rows = [s for s in samples if s["precision"] == precision]
        peak[precision] = max((s["work"] / (s["ms"] * 1e-3) for s in rows
                               if s["kind"] in ("conv", "conv1x1") and s["ms"] > 0), default=1e10)
        for kind in sorted({s["kind"] for s in rows}):
            group = [s for s in rows if s["kind"] == kind]
            compute = kind in _COMPUTE_KINDS and len(group) >= 8
            terms = _COMPUTE_TERMS if compute else _MEMORY_TERMS
            features = [cost.CPU_TERMS[t] for t in terms]
            t = np.array([s["ms"] * 1e-3 for s in group])
            best = None
            # Compute kernels: also the output-channel block width that explains the times best.
            for align in ((1, 4, 8, 16, 32) if compute and any(s.get("channels") for s in group) else (1,)):
                padded = [dict(s, work=cost.padded_work(s["work"], s.get("channels", 0), align)) for s in group]
                x = np.array([[max(s["ops"], 1)] + [s.get(f, 0) for f in features] for s in padded], float)
                used = [0] + [i + 1 for i in range(len(terms)) if x[:, i + 1].any()]
                coef = np.zeros(x.shape[1])
                coef[used] = nnls_relative(x[:, used], t)
                err = float(np.mean(np.abs(x @ coef / t - 1)))
                if best is None or err < best[0] - 1e-3:
                    best = (err, align, x, coef, padded)
            _, align, x, coef, group = best
            entry = {"fixed_s": float(coef[0]), "per_mac_s": 0.0, "per_byte_s": 0.0}
            entry.update({term: float(c) for term, c in zip(terms, coef[1:]) if c or term in entry})
            if align > 1:
                entry["channel_align"] = align
            predictors[precision][kind] = entry
            pred = x @ coef
            report = {"samples": len(group), "linear_mean_abs_pct_error": float(np.mean(np.abs(pred / t - 1)) * 100)}
            table, loo = _fit_residuals(group, np.log(t / np.maximum(pred, 1e-12)))
            if table:
                residuals.setdefault(precision, {})[kind] = table
                pred = pred * np.exp(loo)
            report["mean_abs_pct_error"] = float(np.mean(np.abs(pred / t - 1)) * 100)
            fit_report[f"{precision}/{kind}"] = report
        for kind, fb in (("conv", "conv1x1"), ("add", "multiply")):
            if kind not in predictors[precision] and fb in predictors[precision]:
                predictors[precision][kind] = dict(predictors[precision][fb])
    data = {
        "name": name, "kind": "cpu", "device_label": "host CPU",
        "description": f"This machine's CPU in LiteRT (XNNPACK), {threads} thread(s), fitted by "
                       "kerasnets-estimate --calibrate from kernel micro-benchmarks and random networks.",
        "sources": ["kerasnets.export.calibrate.run_microbenchmarks + fit_host_profile (measured on this machine)"],
        "measured_on": {**machine(), "date": datetime.date.today().isoformat(), "threads": threads},
        "threads": int(threads), "invoke_overhead_s": {p: v * 1e-3 for p, v in overhead.items()},
        "peak_macs_per_s": peak, "predictors": predictors, "residuals": residuals, "fit": fit_report,
    }
    curves = fit_param_cache(probes)
    if curves:
        data["context_param_cache_curve"] = curves
    if networks:
        _fit_context(data, networks)
    return data


# The parameter-cache fit: the in-cache rate is the line through this many smallest probes; a probe is over the
# caches where it runs more than PARAM_CACHE_NOISE (relative) above that line.
PARAM_CACHE_BASE_POINTS = 3
PARAM_CACHE_NOISE = 0.1


def fit_param_cache(probes):
    """Per precision, the parameter-cache curve the probe samples (kind ``"param_cache"``, see
    :func:`param_cache_probes`) measure: ``[[bytes, seconds], ...]``, what a chain of that many
    parameter bytes costs over the line through the smallest ones (the in-cache rate), from the
    last size that fits on. A precision whose probes all fit (or with too few) gets no curve."""
    curves = {}
    for precision in sorted({s["precision"] for s in probes}):
        pts = sorted((float(s["param_bytes"]), float(s["ms"]) * 1e-3) for s in probes if s["precision"] == precision)
        if len(pts) < PARAM_CACHE_BASE_POINTS + 1:
            continue
        x = np.array([b for b, _ in pts])
        t = np.array([v for _, v in pts])
        slope, intercept = np.polyfit(x[:PARAM_CACHE_BASE_POINTS], t[:PARAM_CACHE_BASE_POINTS], 1)
        base = intercept + max(slope, 0.0) * x
        # Never falling: a larger chain costs at least what a smaller one did over the line.
        extra = np.maximum.accumulate(np.where(t > (1 + PARAM_CACHE_NOISE) * base, t - base, 0.0))
        over = np.flatnonzero(extra > 0)
        if not len(over) or over[0] == 0:
            continue
        first = over[0] - 1
        curves[precision] = [[int(b), float(e)] for b, e in zip(x[first:], extra[first:])]
    return curves


def network_param_bytes(model, precision):
    """The parameter bytes of Keras ``model`` at ``precision`` as the estimator counts them (what the
    parameter-cache curve is read at)."""
    return sum(cost.cpu_features(op, precision)["param_bytes"] for op in cost.analyze(model).ops if not op.is_free)


def _context_rows(profile, networks, precision):
    """Per network of ``precision``: ``(network, [kernel sum ms, ops, parameter MB])`` with ``profile``
    (a profile without in-model context)."""
    rows = []
    for net in networks:
        if net["precision"] != precision:
            continue
        graph = cost.analyze(net["model"])
        est = cost.estimate_graph(graph, profile, precision)
        costed = [r for r in est["layers"] if r.placement == "cpu" and not r.free]
        ops = sum(len(r.tflite_ops) if r.kind in ("batchnorm", "adaptive_pool") else 1 for r in costed)
        params = sum(cost.cpu_features(graph.by_name[r.name], precision)["param_bytes"] for r in costed)
        rows.append((net, [est["totals"]["cpu_ms"], ops, params / 1e6]))
    return rows


def _fit_context(data, networks):
    """Fit each precision's in-model context on whole random networks, in place:
    ``measured - invoke overhead - parameter-cache term = context_factor * sum of kernel predictions +
    context_per_op_s * ops + context_per_param_byte_s * parameter bytes`` (weights that
    stay hot in the caches when a kernel runs alone are fetched again in a model), by
    non-negative least squares on relative error. The parameter-cache term is the one the
    probes measured (``context_param_cache_curve``, :func:`fit_param_cache`), kept as measured."""
    curves = data.pop("context_param_cache_curve", None)
    for key in CPU_CONTEXT_KEYS:
        data.pop(key, None)
    for key in CPU_CONTEXT_KEYS[:3]:
        data[key] = {}
    data["context_fit"] = []
    plain = parse_profile(copy.deepcopy(data), f"{data['name']!r}")
    if curves:
        data["context_param_cache_curve"] = curves
    for precision in data["predictors"]:
        rows = _context_rows(plain, networks, precision)
        if len(rows) < 3:
            continue
        x = np.array([f for _, f in rows], float)
        stream_ms = np.array([param_cache_s((curves or {}).get(precision), f[2] * 1e6) * 1e3 for _, f in rows])
        target = np.maximum([net["measured_ms"] - data["invoke_overhead_s"][precision] * 1e3 for net, _ in rows]
                            - stream_ms, 1e-6)
        coef = nnls_relative(x, target)
        factor, per_op_ms, per_mb_ms = coef
        factor = factor if factor > 0 else 1.0
        data["context_factor"][precision] = float(factor)
        data["context_per_op_s"][precision] = float(per_op_ms) * 1e-3
        data["context_per_param_byte_s"][precision] = float(per_mb_ms) * 1e-9
        for (net, f), pred, extra in zip(rows, x @ np.array([factor, per_op_ms, per_mb_ms]), stream_ms):
            data["context_fit"].append({"network": net["name"], "input": net["input"], "precision": precision,
                                        "ops": f[1], "param_mb": f[2], "measured_ms": net["measured_ms"],
                                        "kernel_sum_ms": f[0], "param_cache_ms": float(extra),
                                        "fitted_ms": float(pred + extra)
                                        + data["invoke_overhead_s"][precision] * 1e3})


def _spearman(a, b):
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if len(a) < 2 or ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _error_summary(predicted, measured):
    """Share within +-10%, mean absolute % error and Spearman rank correlation of ``predicted``
    against ``measured`` (sequences of the same length)."""
    err = 100 * (np.asarray(predicted, float) / np.asarray(measured, float) - 1)
    return {"count": len(err), "within_10pct": float(np.mean(np.abs(err) <= 10)) if len(err) else 0.0,
            "mean_abs_pct_error": float(np.mean(np.abs(err))) if len(err) else 0.0,
            "spearman": _spearman(predicted, measured)}


def _breakdown(result):
    by = {}
    for r in result["layers"]:
        by[r.kind] = by.get(r.kind, 0.0) + r.latency_ms
    total = sum(by.values()) or 1.0
    top = sorted(by.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{k} {v / total:.0%}" for k, v in top)


#: One zoo model per family: the validation's default model list (no zoo model is used by any fit).
VALIDATION_MODELS = ("mobilenet_v2_035", "mobilenet_v2_100", "axspine_middle", "shufflenet_v1_g3_x1_0",
                     "shufflenet_v2_x1_0", "ghostnet_100", "repghostnet_100", "efficientnet_edgetpu_s",
                     "mobilenet_v3_large_100", "mobilenet_v3_small_100", "regnetx_002")
#: The case every validation case is compared with, in the same precision and the same run: an
#: estimator ranks architectures, and a ratio is what a shared machine measures steadily.
ANCHOR = ("mobilenet_v2_100", 224)
#: What the validation aims for: (a) share of cases whose predicted / measured latency relative to
#: the anchor is within +-10%, each precision; (b) Spearman rank correlation, each precision.
TARGETS = {"relative_within_10pct": 0.90, "spearman": 0.97}


def summarize_validation(rows, anchor_rows, precisions):
    """The validation summary of measured ``rows`` (zoo cases) against ``anchor_rows`` (one per precision).

    Every row holds ``precision``, ``predicted_ms``, ``measured_ms`` and, when the run timed
    more passes, ``pass_ms`` (every pass, the first one first; or ``repeat_ms``, the passes after
    a first one of ``measured_ms``); the anchor rows hold the same. Adds
    ``relative_error_pct`` to each row (predicted / measured of the case's latency relative to
    its precision's anchor, minus 1) and returns ``{count, within_10pct, mean_abs_pct_error,
    spearman}`` of the absolute error over all rows, the same per precision, ``relative`` (the
    same figures relative to the anchor, per precision and ``all``), ``targets`` (met or not,
    per precision) and, with more passes, ``repeat`` (how far the later passes' absolute and
    relative measurements land from the first pass's: the measurement's own spread in this run).
    """
    anchors = {a["precision"]: a for a in anchor_rows}

    def passes(row):
        return row.get("pass_ms") or [row["measured_ms"]] + list(row.get("repeat_ms") or [])

    for r in rows:
        a = anchors.get(r["precision"])
        if a is None:
            raise UsageError(f"no anchor case measured in {r['precision']}; time the anchor in every precision.")
        r["relative_predicted"] = r["predicted_ms"] / a["predicted_ms"]
        r["relative_measured"] = r["measured_ms"] / a["measured_ms"]
        r["relative_error_pct"] = 100 * (r["relative_predicted"] / r["relative_measured"] - 1)
        mine, theirs = passes(r), passes(a)
        if len(mine) > 1:
            r["pass_relative"] = [m / am for m, am in zip(mine, theirs)]
    summary = _error_summary([r["predicted_ms"] for r in rows], [r["measured_ms"] for r in rows])
    relative = {"all": _error_summary([r["relative_predicted"] for r in rows],
                                      [r["relative_measured"] for r in rows])}
    targets = {"relative_within_10pct": TARGETS["relative_within_10pct"], "spearman": TARGETS["spearman"],
               "met": {}}
    for precision in precisions:
        sub = [r for r in rows if r["precision"] == precision]
        if not sub:
            continue
        summary[precision] = _error_summary([r["predicted_ms"] for r in sub], [r["measured_ms"] for r in sub])
        rel = relative[precision] = _error_summary([r["relative_predicted"] for r in sub],
                                                   [r["relative_measured"] for r in sub])
        targets["met"][precision] = {
            "relative_within_10pct": rel["within_10pct"] >= TARGETS["relative_within_10pct"],
            "spearman": bool(rel["spearman"] >= TARGETS["spearman"])}
    summary["relative"] = relative
    summary["targets"] = targets
    repeated = [r for r in rows if len(passes(r)) > 1]
    if repeated:
        firsts = [passes(r)[0] for r in repeated for _ in passes(r)[1:]]
        again = [m for r in repeated for m in passes(r)[1:]]
        spread = _error_summary(again, firsts)
        rel_spread = _error_summary([m for r in repeated for m in r["pass_relative"][1:]],
                                    [r["pass_relative"][0] for r in repeated for _ in r["pass_relative"][1:]])
        estimate = _error_summary([r["predicted_ms"] for r in repeated for _ in passes(r)[1:]], again)
        summary["repeat"] = {"passes": len(passes(repeated[0])), "within_10pct": spread["within_10pct"],
                             "mean_abs_pct_diff": spread["mean_abs_pct_error"],
                             "relative_within_10pct": rel_spread["within_10pct"],
                             "relative_mean_abs_pct_diff": rel_spread["mean_abs_pct_error"],
                             "estimate_within_10pct": estimate["within_10pct"],
                             "estimate_mean_abs_pct_error": estimate["mean_abs_pct_error"]}
    return summary


def validate_host_profile(profile="host_cpu", models=None, resolutions=(96, 128), precisions=("int8", "float32"),
                          threads=1, rounds=15, repeats=1, anchor=ANCHOR, log=None, probe_mib=()):
    """Estimate and measure zoo models in LiteRT in one run; returns the validation report dict.

    Every case (``models``, default :data:`VALIDATION_MODELS`, at each of ``resolutions`` in
    each precision) and the ``anchor`` (a model name and square size, default mobilenet_v2_100
    at 224x224, added when the list lacks it) are converted and loaded first and all are timed
    together in interleaved rounds (:func:`kerasnets.export.litert_timing.time_interleaved`), the
    measurement the fit uses. The report scores (a) each case's latency relative to the anchor
    of its precision, predicted against measured, (b) the Spearman rank correlation and (c) the
    absolute error (:func:`summarize_validation`, against :data:`TARGETS`). With ``repeats`` > 1
    the same loaded models are timed that many times (``pass_ms``): the errors are against each
    case's fastest pass (a busy machine only ever slows a pass down), and ``summary["repeat"]``
    says how far the later passes land from the first (the measurement's own spread within a
    run, absolute and relative to the anchor).

    With ``probe_mib`` (sizes in MiB, e.g. :data:`PARAM_CACHE_PROBE_MIB`) the run also times the
    parameter-cache probe (:func:`param_cache_probes`) with the cases, and ``in_run_cache`` scores
    the same measurements with the profile's parameter-cache curve replaced by the one measured in
    this run (``curve``, ``probe_ms``, ``summary``): a check of whether the machine's caches behave
    as when the profile was fitted (on a shared VM they move with the neighbours' load).
    """
    check_precisions(precisions)
    for name, value in (("threads", threads), ("rounds", rounds), ("repeats", repeats)):
        check_count(name, value)
    if isinstance(probe_mib, (str, int)) or not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1
                                                    for m in probe_mib):
        raise UsageError(f"probe_mib={probe_mib!r} must be a list of parameter sizes in MiB >= 1, e.g. "
                         f"{PARAM_CACHE_PROBE_MIB!r}, or () for no probe.")
    if isinstance(resolutions, (str, int)) or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 32
                                                      for r in resolutions):
        raise UsageError(f"resolutions={resolutions!r} must be a list of input sizes >= 32, e.g. (96, 128).")
    if (not isinstance(anchor, (list, tuple)) or len(anchor) != 2 or not isinstance(anchor[0], str)
            or isinstance(anchor[1], bool) or not isinstance(anchor[1], int) or anchor[1] < 32):
        raise UsageError(f"anchor={anchor!r} must be a (model name, input size >= 32) pair, e.g. "
                         f"{ANCHOR!r}.")
    profile = load_profile(profile)
    models = list(models or VALIDATION_MODELS)
    anchor_name, anchor_res = anchor
    added = anchor_name not in models
    note = (f"anchor {anchor_name} at {anchor_res}x{anchor_res} " +
            ("added: it is not in the model list" if added else "(from the model list)") +
            "; every case is compared with it in its own precision")
    if log:
        log(note)
    cases, interpreters = [], {}

    def add_case(name, res, is_anchor):
        model = kerasnets.get_model(name, input_shape=(res, res, 3), classes=1000)
        graph = cost.analyze(model)
        for precision in precisions:
            t0 = time.perf_counter()
            est = cost.estimate_graph(graph, profile, precision)
            interpreters[len(cases)] = litert_timing.load(_convert(model, precision, calibration=2), threads)
            cases.append((name, res, precision, est, time.perf_counter() - t0, is_anchor, graph))

    add_case(anchor_name, anchor_res, True)
    for name in models:
        for res in resolutions:
            if (name, res) != (anchor_name, anchor_res):
                add_case(name, res, False)
        if log:
            log(f"converted {name} at {', '.join(map(str, resolutions))}")
    probe_interpreters, probes = _load_probes(param_cache_probes(precisions, probe_mib) if probe_mib else [], threads,
                                              log)
    interpreters.update(probe_interpreters)
    passes = [litert_timing.time_interleaved(interpreters, rounds=rounds, log=log) for _ in range(max(repeats, 1))]
    timing = passes[0]
    rows, anchor_rows = [], []
    in_run = _in_run_cache(profile, probes, passes)
    for i, (name, res, precision, est, seconds, is_anchor, graph) in enumerate(cases):
        pred, every = est["totals"]["latency_ms"], [p[i]["steady_ms"] for p in passes]
        measured = min(every)
        row = {"model": name, "input": res, "precision": precision, "predicted_ms": pred, "measured_ms": measured,
               "median_ms": timing[i]["median_ms"], "error_pct": 100 * (pred / measured - 1),
               "windows": timing[i]["windows"], "macs": est["totals"]["macs"], "breakdown": _breakdown(est),
               "seconds": seconds}
        if len(passes) > 1:
            row["pass_ms"] = every
        if in_run:
            row["in_run_cache_predicted_ms"] = cost.estimate_graph(graph, in_run["profile"], precision)["totals"][
                "latency_ms"]
        (anchor_rows if is_anchor else rows).append(row)
    if anchor_name in models and anchor_res in resolutions:
        rows += [dict(r) for r in anchor_rows]  # also a case of the list (relative error 0 by definition)
    summary = summarize_validation(rows, anchor_rows, precisions)
    in_run_report = None
    if in_run:
        again, again_anchor = ([dict(r, predicted_ms=r["in_run_cache_predicted_ms"]) for r in group]
                               for group in (rows, anchor_rows))
        in_run_report = {"curve": in_run["curve"], "probe_ms": in_run["probe_ms"],
                         "summary": summarize_validation(again, again_anchor, precisions)}
    if log:
        for r in rows:
            log(f"{r['model']:26s} {r['input']:4d} {r['precision']:8s} predicted {r['predicted_ms']:9.3f} ms "
                f"measured {r['measured_ms']:9.3f} ms error {r['error_pct']:+6.1f}%, relative to the anchor "
                f"{r['relative_error_pct']:+6.1f}%")
    worst = sorted(rows, key=lambda r: -abs(r["relative_error_pct"]))[:5]
    for r in worst:
        r["reason"] = (f"relative to the anchor {'over' if r['relative_error_pct'] > 0 else 'under'}-predicted by "
                       f"{abs(r['relative_error_pct']):.0f}%, absolute {r['error_pct']:+.0f}%; predicted time is "
                       f"{r['breakdown']}")
    return {"profile": profile.name, "profile_file": profile.path, "threads": threads, "resolutions": list(resolutions),
            "precisions": list(precisions), "method": f"LiteRT, {threads} thread(s), {rounds} interleaved rounds of "
            f"3 windows of 10 invokes per case, 10th percentile of the window medians, fastest of {len(passes)} "
            f"pass(es); "
            f"estimate from profile {profile.name}",
            "anchor": {"model": anchor_name, "input": anchor_res, "added": added, "note": note, "rows": anchor_rows},
            "fitted_on": profile.measured_on, "measured_here": machine(),
            "summary": summary, "profile_curve": profile.context_param_cache_curve or {},
            "in_run_cache": in_run_report, "worst": worst, "rows": rows}


def _in_run_cache(profile, probes, passes):
    """The parameter-cache curve the probes (the metadata :func:`_load_probes` returns) measured in this run
    (fastest pass) and ``profile`` with it in place of its own, or None without probes."""
    if not probes:
        return None
    samples = [dict(sample, ms=min(p[key]["steady_ms"] for p in passes)) for key, sample in probes.items()]
    curve = fit_param_cache(samples)
    data = copy.deepcopy(profile.raw)
    data.pop("inherits", None)
    data["context_param_cache_curve"] = curve
    return {"curve": curve, "probe_ms": [[s["precision"], s["param_bytes"], s["ms"]] for s in samples],
            "profile": parse_profile(data, f"{profile.name!r} with this run's parameter-cache curve")}


def _met(flag):
    return "met" if flag else "MISSED"


def format_validation(report):
    """The validation report as text: (a) relative to the anchor, (b) rank, (c) absolute and the spread."""
    s, a, t = report["summary"], report["anchor"], report["summary"]["targets"]
    rel = s["relative"]
    lines = [f"host CPU validation: {s['count']} model/size/precision cases + the anchor, {report['method']}",
             a["note"] + ".",
             f"(a) predicted / measured latency relative to the anchor (target: >= {t['relative_within_10pct']:.0%} "
             f"of cases within +-10%, each precision):"]
    for p in report["precisions"]:
        if p in rel:
            lines.append(f"  {p:8s} within +-10%: {rel[p]['within_10pct']:.0%} "
                         f"({_met(t['met'][p]['relative_within_10pct'])})  mean |error|: "
                         f"{rel[p]['mean_abs_pct_error']:.1f}%  ({rel[p]['count']} cases)")
    lines.append(f"(b) Spearman rank correlation (target: >= {t['spearman']:.2f}, each precision): " + ", ".join(
        f"{p} {rel[p]['spearman']:.3f} ({_met(t['met'][p]['spearman'])})" for p in report["precisions"] if p in rel)
        + f"; all cases {s['spearman']:.3f}")
    lines.append(f"(c) absolute latency (no target: a shared machine's speed moves between runs): within +-10%: "
                 f"{s['within_10pct']:.0%}   mean |error|: {s['mean_abs_pct_error']:.1f}%")
    for p in report["precisions"]:
        if p in s:
            lines.append(f"  {p:8s} within +-10%: {s[p]['within_10pct']:.0%}  mean |error|: "
                         f"{s[p]['mean_abs_pct_error']:.1f}%")
    if "repeat" in s:
        r = s["repeat"]
        lines.append(f"    measurement spread in this run ({r['passes'] - 1} more pass(es) over the same loaded "
                     f"models): absolute within +-10% of the first pass: {r['within_10pct']:.0%}, mean |difference| "
                     f"{r['mean_abs_pct_diff']:.1f}%; relative to the anchor: within +-10%: "
                     f"{r['relative_within_10pct']:.0%}, mean |difference| {r['relative_mean_abs_pct_diff']:.1f}%; "
                     f"estimate against the later pass(es): within +-10%: {r['estimate_within_10pct']:.0%}, mean "
                     f"|error| {r['estimate_mean_abs_pct_error']:.1f}%")
    else:
        lines.append("    measurement spread in this run: not measured (one pass; time the models again with "
                     "repeats >= 2 to see it)")
    if report.get("in_run_cache"):
        c = report["in_run_cache"]
        rel = c["summary"]["relative"]
        edges = ", ".join(f"{p} over {curve[0][0] / 2**20:.0f} MiB" for p, curve in sorted(c["curve"].items()))
        lines.append(f"with the parameter-cache curve measured in this run ({edges or 'every probe fits the caches'}"
                     f"; the profile's own: " + (", ".join(
                         f"{p} over {curve[0][0] / 2**20:.0f} MiB" for p, curve in sorted(
                             (report.get("profile_curve") or {}).items())) or "see the profile") + "):")
        lines.append("  (a) within +-10% relative to the anchor: " + ", ".join(
            f"{p} {rel[p]['within_10pct']:.0%} ({_met(c['summary']['targets']['met'][p]['relative_within_10pct'])}, "
            f"mean |error| {rel[p]['mean_abs_pct_error']:.1f}%)" for p in report["precisions"] if p in rel)
            + "; (b) Spearman: " + ", ".join(
            f"{p} {rel[p]['spearman']:.3f} ({_met(c['summary']['targets']['met'][p]['spearman'])})"
            for p in report["precisions"] if p in rel))
    fitted = (report.get("fitted_on") or {}).get("processor")
    here = (report.get("measured_here") or {}).get("processor")
    if fitted and here and fitted != here:
        lines.append(f"note: profile {report['profile']} was fitted on {fitted}, this machine is {here}.")
    lines.append("worst five (relative to the anchor):")
    for r in report["worst"]:
        lines.append(f"  {r['model']} {r['input']}x{r['input']} {r['precision']}: predicted {r['predicted_ms']:.2f} ms, "
                     f"measured {r['measured_ms']:.2f} ms ({r['reason']})")
    return "\n".join(lines)
