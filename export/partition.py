"""The Edge-TPU-style partitioner: which layers run on the NPU in int8 and which on the CPU in float.

The per-op decisions and the policies (``max_npu``, ``float_head``, ``min_latency``) are
:func:`kerasnets.export.placement.place` (re-exported here with its messages and :class:`PartitionError`).

:func:`partition_for_profile` returns a :class:`PartitionPlan` (JSON plan, compiler-style
log, estimate); :func:`split_model` cuts the Keras model into parts whose composition
equals the whole; :func:`export_partition` writes an int8 TFLite for each NPU part and a
float TFLite for each CPU part; :class:`ChainedRunner` runs the parts one after the other
in LiteRT.
"""
import collections
import dataclasses
import json
import os

import numpy as np

from kerasnets.export import runtime, tflite
from kerasnets.export.costing import check_precision, estimate_graph
from kerasnets.export.graph import analyze, inbound_names
from kerasnets.export.placement import (BAD_RANK, BAD_TYPE, NOT_SUPPORTED, POLICIES, SUBGRAPH, PartitionError,
                              check_policy, place, support_problem)
from kerasnets.export.profiles import load_profile
from kerasnets.backend import keras
from kerasnets.errors import PathError, UsageError, path_error
from kerasnets.io import atomic_write, plain, writing

L = keras.layers
__all__ = ["BAD_RANK", "BAD_TYPE", "NOT_SUPPORTED", "POLICIES", "SUBGRAPH", "ChainedRunner", "PartitionError",
           "PartitionPlan", "build_part", "export_partition", "partition_for_profile", "place", "run_parts_keras",
           "split_model", "support_problem"]


# ------------------------------------------------------------------ plan ----

@dataclasses.dataclass
class PartitionPlan:
    """Where each layer runs, why, the cut, and the estimate (``totals`` and the :class:`~kerasnets.export.cost.CostRow`
    ``layers``); ``to_json()`` is the plan file."""
    model: str
    profile: str
    policy: str
    precision: str
    input_shape: list
    decisions: list
    parts: list
    estimate: dict
    log: str

    @property
    def npu_layers(self):
        return [d["name"] for d in self.decisions if d["placement"] == "npu"]

    @property
    def cpu_layers(self):
        return [d["name"] for d in self.decisions if d["placement"] == "cpu"]

    @property
    def cut(self):
        """The first NPU -> CPU boundary: the last NPU layer before it and the tensors crossing."""
        if len(self.parts) < 2:
            return {"after": self.npu_layers[-1] if self.npu_layers else None, "tensors": [], "parts": len(self.parts)}
        first = self.parts[0]
        return {"after": first["last_layer"], "tensors": first["outputs"], "parts": len(self.parts)}

    def as_dict(self):
        estimate = {"totals": self.estimate["totals"], "layers": [r.as_dict() for r in self.estimate["layers"]]}
        return {"model": self.model, "profile": self.profile, "policy": self.policy, "precision": self.precision,
                "input_shape": self.input_shape, "cut": self.cut, "npu_layers": self.npu_layers,
                "cpu_layers": self.cpu_layers, "parts": self.parts, "layers": self.decisions, "estimate": estimate}

    def to_json(self):
        return json.dumps(self.as_dict(), indent=1, default=plain) + "\n"


def _contiguous_parts(graph, decisions):
    """Group ops into runs of one device in graph order; inputs/outputs are producer layer names."""
    where = {d["name"]: d["placement"] for d in decisions}
    runs = []
    for op in graph.ops:
        dev = where[op.name]
        if dev == "host":
            continue
        if not runs or runs[-1]["device"] != dev:
            runs.append({"device": dev, "layers": []})
        runs[-1]["layers"].append(op.name)
    part_of = {name: i for i, r in enumerate(runs) for name in r["layers"]}
    for i, r in enumerate(runs):
        ins, outs = [], []
        for name in r["layers"]:
            for src in graph.by_name[name].inputs:
                if part_of.get(src) != i and src not in ins:
                    ins.append(src)
        for name in r["layers"]:
            op = graph.by_name[name]
            later = [c for c in op.consumers if c == "<output>" or part_of.get(c, i) > i]
            if later and name not in outs:
                outs.append(name)
        r["inputs"] = ins
        r["outputs"] = outs
        r["last_layer"] = r["layers"][-1]
        r["output_shapes"] = {n: list(graph.by_name[n].out_shape) for n in outs}
    return runs


def _log(graph, profile, policy, precision, decisions, parts, est, input_shape):
    t = est["totals"]
    label = profile.device_label or "NPU"
    counts = collections.Counter()
    for d in decisions:
        if d["message"].endswith("(fused)"):
            continue
        for name in d["tflite_ops"]:
            status = d["message"].replace(" (fused)", "")
            counts[(name, status)] += 1
    npu_ops = sum(n for (op, s), n in counts.items() if s.startswith("Mapped to"))
    cpu_ops = sum(counts.values()) - npu_ops
    segments = len({d["segment"] for d in decisions if d["placement"] == "npu"})
    lines = [f"{label} compiler-style partition log (kerasnets, profile {profile.name}, policy {policy})",
             f"Model: {graph.name}, input {'x'.join(str(v) for v in input_shape)}, NPU precision {precision}",
             f"Number of {label} subgraphs: {segments}",
             f"Total number of operations: {npu_ops + cpu_ops}", "",
             f"{'Operator':28s} {'Count':>6s}  Status"]
    for (name, status), n in sorted(counts.items(), key=lambda kv: (not kv[0][1].startswith("Mapped"), kv[0])):
        lines.append(f"{name:28s} {n:6d}  {status}")
    lines += ["",
              f"On-chip memory used for caching model parameters: {t.get('param_cache_used_bytes', 0) / 2**20:.2f}MiB",
              f"On-chip memory remaining for caching model parameters: "
              f"{t.get('param_cache_remaining_bytes', 0) / 2**20:.2f}MiB",
              f"Off-chip memory used for streaming uncached model parameters: "
              f"{t.get('param_streamed_bytes', 0) / 2**20:.2f}MiB",
              f"Number of operations that will run on {label}: {npu_ops}",
              f"Number of operations that will run on CPU: {cpu_ops}", ""]
    for i, p in enumerate(parts):
        lines.append(f"Part {i}: {p['device'].upper()} {p['layers'][0]} .. {p['last_layer']} "
                     f"({len(p['layers'])} layers), inputs {p['inputs']}, outputs {p['outputs']}")
    lines += ["", f"Estimated latency: {t['latency_ms']:.3f} ms ({t['fps']:.1f} fps): NPU {t['npu_ms']:.3f} ms, "
                  f"CPU {t['cpu_ms']:.3f} ms, transfers {t['transfer_ms']:.3f} ms, invoke {t['invoke_ms']:.3f} ms", "",
              "Per-layer placement:"]
    for d in decisions:
        if d["placement"] == "host":
            continue
        detail = f" ({d['detail']})" if d["detail"] and not d["message"].endswith("(fused)") else ""
        lines.append(f"  {d['name']:36s} {'/'.join(d['tflite_ops']) or '-':24s} {d['placement'].upper():4s} "
                     f"{d['message']}{detail}")
    return "\n".join(lines) + "\n"


def npu_profile(profile):
    """The :class:`~export.profiles.Profile` ``profile`` names, refused (PartitionError) unless it is an NPU's."""
    profile = load_profile(profile)
    if not profile.is_npu:
        raise PartitionError(f"profile {profile.name!r} is a CPU profile and has nothing to partition; "
                             "use an NPU profile such as edgetpu_usb.")
    return profile


def partition_for_profile(model, profile, policy="max_npu", precision=None):
    """Place every layer of ``model`` for ``profile`` under ``policy``; returns a :class:`PartitionPlan`."""
    check_policy(policy)
    check_precision(precision)
    profile = npu_profile(profile)
    precision = precision or profile.default_precision()
    graph = analyze(model)
    decisions = place(graph, profile, policy, precision)
    est = estimate_graph(graph, profile, precision, {d["name"]: d["placement"] for d in decisions})
    by = {d["name"]: d for d in decisions}
    for row in est["layers"]:
        if row.name in by:
            by[row.name]["precision"] = row.precision
            by[row.name]["latency_ms"] = row.latency_ms
    parts = _contiguous_parts(graph, decisions)
    input_shape = list(graph.by_name[graph.inputs[0]].out_shape)
    log = _log(graph, profile, policy, precision, decisions, parts, est, input_shape)
    return PartitionPlan(graph.name, profile.name, policy, precision, input_shape, decisions, parts,
                         {"totals": est["totals"], "layers": est["layers"]}, log)


# ----------------------------------------------------------------- split ----

def _clone_layer(layer):
    try:
        return layer.__class__.from_config(layer.get_config()), True
    except Exception:  # e.g. tfmot wrappers need their scope: share the layer instead
        return layer, False


def build_part(model, part, shapes):
    """One part of a plan as a Keras model: ``part``'s layers cloned with their weights, fed by
    new inputs of ``shapes`` (by producing layer name) for the tensors the part reads."""
    layers = {l.name: l for l in model.layers}
    config = {c["name"]: c for c in model.get_config()["layers"]}
    tensors = {}
    inputs = []
    for i, name in enumerate(part["inputs"]):
        src = layers[name]
        if isinstance(src, L.InputLayer):
            x = keras.Input(shapes[name], name=name, dtype=src.dtype)
        else:
            x = keras.Input(shapes[name], name=f"t{i}_{name}")
        tensors[name] = x
        inputs.append(x)
    pending = []
    for name in part["layers"]:
        layer = layers[name]
        if isinstance(layer, L.InputLayer):
            continue
        args = [tensors[n] for n in inbound_names(config[name])]
        clone, fresh = _clone_layer(layer)
        y = clone(args if isinstance(layer.input, (list, tuple)) else args[0])
        if fresh:
            pending.append((clone, layer))
        tensors[name] = y
    outputs = [tensors[n] for n in part["outputs"]]
    sub = keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=f"{model.name}_{part['device']}")
    for clone, layer in pending:
        clone.set_weights(layer.get_weights())
    return sub


def _check_model_and_plan(model, plan):
    if not isinstance(model, keras.Model) or not getattr(model, "_is_graph_network", False):
        raise PartitionError(f"the partitioner needs the functional Keras model the plan was made for, got "
                             f"{type(model).__name__}.")
    if isinstance(plan, PartitionPlan):
        parts = plan.parts
    elif isinstance(plan, list) and all(isinstance(p, dict) for p in plan):
        parts = plan
    else:
        raise PartitionError(f"plan must be the PartitionPlan partition_for_profile returns (or its parts), not "
                             f"{type(plan).__name__}.")
    names = {layer.name for layer in model.layers}
    for p in parts:
        missing = [n for n in p.get("layers", []) + p.get("inputs", []) if n not in names]
        if missing or not p.get("layers") or not p.get("outputs"):
            raise PartitionError(f"the plan does not fit model {model.name} (layer {(missing or ['?'])[0]!r} is not "
                                 "in it); partition this model with partition_for_profile.")


def check_images(images, model, label="calibration images"):
    """``images`` as a float32 (N, H, W, C) batch of the model's input size, finite; UsageError otherwise."""
    try:
        arr = np.asarray(images)
    except Exception:  # noqa: BLE001 (ragged lists and objects numpy cannot stack)
        raise UsageError(f"{label} are not an array of images; pass an (N, H, W, C) float array.") from None
    if arr.dtype.kind not in "biuf":
        raise UsageError(f"{label} have dtype {arr.dtype}, not numbers; pass an (N, H, W, C) float array.")
    want = tuple(model.inputs[0].shape[1:])
    if arr.ndim != 4 or tuple(arr.shape[1:]) != want or len(arr) == 0:
        raise UsageError(f"{label} have shape {arr.shape} but the model takes (N,) + {want} with N >= 1; resize "
                         "them or change the input size.")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        raise UsageError(f"{label} contain NaN or Inf; clean them or use other images.")
    return arr


def split_model(model, plan):
    """Cut ``model`` along ``plan`` into Keras models, one per part, in order.

    Returns a list of dicts ``{"device", "model", "inputs", "outputs"}``; ``inputs`` and
    ``outputs`` name the tensors (by producing layer) each part reads and writes, so
    running the parts in order, feeding each the tensors it names, reproduces ``model``.
    """
    _check_model_and_plan(model, plan)
    parts = plan.parts if isinstance(plan, PartitionPlan) else plan
    shapes = {}
    for layer in model.layers:
        out = layer.output_shape
        out = out[0] if isinstance(out, list) else out
        shapes[layer.name] = tuple(out[1:])
    return [{"device": p["device"], "model": build_part(model, p, shapes), "inputs": list(p["inputs"]),
             "outputs": list(p["outputs"])} for p in parts]


def run_parts_keras(parts, images):
    """Compose the Keras parts on ``images``: the split model's output (for checking against the whole)."""
    values = None
    for p in parts:
        if values is None:
            values = {p["inputs"][0]: np.asarray(images, np.float32)}
        feed = [values[n] for n in p["inputs"]]
        out = p["model"](feed if len(feed) > 1 else feed[0], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        for name, v in zip(p["outputs"], out):
            values[name] = np.asarray(v)
    return values[parts[-1]["outputs"][-1]]


# ---------------------------------------------------------------- export ----

def _convert_part(part, mode, rep_inputs):
    """TFLite bytes for one part, and how its signature names map to tensor names."""
    content = tflite.convert(part["model"], mode, representative_data=list(rep_inputs) if mode == "int8" else None,
                             calibration_count=len(rep_inputs[0]) if mode == "int8" else 100)
    if len(part["inputs"]) == 1:
        sig_in = {"x": part["inputs"][0]}
    else:
        sig_in = {f"input_{k}": n for k, n in enumerate(part["inputs"])}
    return content, sig_in, {f"output_{k}": n for k, n in enumerate(part["outputs"])}


def export_partition(model, plan, out_dir, images, calibration_count=32, command=None):
    """Write the plan, the compiler-style log and one TFLite per part into ``out_dir`` (atomically).

    NPU parts are converted to full int8 (calibrated on ``images``, which also feed the
    later parts' calibration through the Keras parts); CPU parts to float32. Returns the
    list of written part descriptions (also stored in ``plan.json``).
    """
    if not isinstance(plan, PartitionPlan):
        raise PartitionError(f"plan must be the PartitionPlan partition_for_profile returns, not "
                             f"{type(plan).__name__}.")
    if isinstance(calibration_count, bool) or not isinstance(calibration_count, int) or calibration_count < 1:
        raise UsageError(f"calibration_count={calibration_count!r} must be a positive integer.")
    if not isinstance(out_dir, (str, os.PathLike)) or not os.fspath(out_dir):
        raise UsageError(f"out_dir={out_dir!r} must be a folder path.")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise PathError(f"cannot write into {os.fspath(out_dir)!r}: it is a file, not a folder; pick a folder path.")
    images = check_images(images, model)[:calibration_count]
    parts = split_model(model, plan)
    values = {parts[0]["inputs"][0]: images}
    written = []
    for i, p in enumerate(parts):
        feed = [values[n] for n in p["inputs"]]
        mode = "int8" if p["device"] == "npu" else "float32"
        content, sig_in, sig_out = _convert_part(p, mode, feed)
        fname = f"part{i}_{p['device']}_{mode}.tflite"
        path = os.path.join(out_dir, fname)
        writing(path, lambda: tflite.write_artifact(
            path, content, plan.model, mode, extra={"partition": {"profile": plan.profile, "policy": plan.policy,
                                                                  "part": i, "device": p["device"],
                                                                  "inputs": p["inputs"], "outputs": p["outputs"]}},
            command=command))
        out = p["model"](feed if len(feed) > 1 else feed[0], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        for name, v in zip(p["outputs"], out):
            values[name] = np.asarray(v)
        written.append({"part": i, "device": p["device"], "mode": mode, "file": fname, "inputs": p["inputs"],
                        "outputs": p["outputs"], "signature_inputs": sig_in, "signature_outputs": sig_out})
    doc = plan.as_dict()
    doc["files"] = written
    path = os.path.join(out_dir, "plan.json")
    writing(path, lambda: atomic_write(path, json.dumps(doc, indent=1, default=plain) + "\n"))
    path = os.path.join(out_dir, "partition.log")
    writing(path, lambda: atomic_write(path, plan.log))
    return written


class ChainedRunner:
    """Runs the exported parts one after the other in LiteRT: float images in, float outputs out.

    Integer tensors are quantized / dequantized at every part boundary with that part's
    own scales (what a host does between an int8 NPU program and a float CPU head).
    """

    def __init__(self, out_dir, threads=1):
        if not isinstance(out_dir, (str, os.PathLike)):
            raise UsageError(f"out_dir={out_dir!r} must be the folder export_partition wrote.")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise UsageError(f"threads={threads!r} must be a positive integer.")
        path = os.path.join(out_dir, "plan.json")
        try:
            with open(path) as f:
                self.plan = json.load(f)
            files = self.plan["files"]
        except OSError as e:
            raise path_error(path, e, "read") from None
        except (ValueError, KeyError, TypeError):
            raise runtime.ArtifactError(f"{path!r} is not a plan written by export_partition (kerasnets-partition "
                                        "--out); partition the model again.") from None
        self.parts = []
        for p in files:
            interp = runtime.load_interpreter(os.path.join(out_dir, p["file"]), threads=threads, probe=False)
            runner = interp.get_signature_runner()
            self.parts.append((p, interp, runner))

    @staticmethod
    def _to(detail, x):
        dtype = detail["dtype"]
        if dtype in (np.int8, np.uint8):
            scale, zero = detail["quantization"]
            info = np.iinfo(dtype)
            return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)
        return x.astype(dtype)

    @staticmethod
    def _from(detail, y):
        if detail["dtype"] in (np.int8, np.uint8):
            scale, zero = detail["quantization"]
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def __call__(self, images):
        results = []
        for image in np.asarray(images, np.float32):
            values = {self.parts[0][0]["inputs"][0]: image[None]}
            for p, _, runner in self.parts:
                ins, outs = runner.get_input_details(), runner.get_output_details()
                feed = {k: self._to(ins[k], values[n]) for k, n in p["signature_inputs"].items()}
                got = runner(**feed)
                for k, n in p["signature_outputs"].items():
                    values[n] = self._from(outs[k], got[k])
            results.append(values[self.parts[-1][0]["outputs"][-1]][0])
        return np.stack(results)
