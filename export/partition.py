"""The Edge-TPU-style partitioner: which layers run on the NPU in int8 and which on the CPU in float.

The per-op decisions and the policies (``max_npu``, ``float_head``, ``min_latency``) are
:func:`export.placement.place` (re-exported here with its messages and :class:`PartitionError`).

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

from export import runtime, tflite
from export.costing import estimate_graph
from export.graph import analyze, inbound_names
from export.placement import (BAD_RANK, BAD_TYPE, NOT_SUPPORTED, POLICIES, SUBGRAPH, PartitionError,
                              place, support_problem)
from export.profiles import load_profile
from kerasnets.backend import keras
from kerasnets.io import atomic_write, plain

L = keras.layers
__all__ = ["BAD_RANK", "BAD_TYPE", "NOT_SUPPORTED", "POLICIES", "SUBGRAPH", "ChainedRunner", "PartitionError",
           "PartitionPlan", "build_part", "export_partition", "partition_for_profile", "place", "run_parts_keras",
           "split_model", "support_problem"]


# ------------------------------------------------------------------ plan ----

@dataclasses.dataclass
class PartitionPlan:
    """Where each layer runs, why, the cut, and the estimate; ``to_json()`` is the plan file."""
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
        return {"model": self.model, "profile": self.profile, "policy": self.policy, "precision": self.precision,
                "input_shape": self.input_shape, "cut": self.cut, "npu_layers": self.npu_layers,
                "cpu_layers": self.cpu_layers, "parts": self.parts, "layers": self.decisions,
                "estimate": self.estimate}

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
    label = profile.get("device_label", "NPU")
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


def partition_for_profile(model, profile, policy="max_npu", precision=None):
    """Place every layer of ``model`` for ``profile`` under ``policy``; returns a :class:`PartitionPlan`."""
    profile = load_profile(profile)
    if not profile.is_npu:
        raise PartitionError(f"profile {profile.name!r} is a CPU profile and has nothing to partition; "
                             "use an NPU profile such as edgetpu_usb.")
    precision = precision or profile.default_precision()
    graph = analyze(model)
    decisions = place(graph, profile, policy, precision)
    est = estimate_graph(graph, profile, precision, {d["name"]: d["placement"] for d in decisions})
    by = {d["name"]: d for d in decisions}
    for row in est["layers"]:
        if row["name"] in by:
            by[row["name"]]["precision"] = row.get("precision", "")
            by[row["name"]]["latency_ms"] = row["latency_ms"]
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


def split_model(model, plan):
    """Cut ``model`` along ``plan`` into Keras models, one per part, in order.

    Returns a list of dicts ``{"device", "model", "inputs", "outputs"}``; ``inputs`` and
    ``outputs`` name the tensors (by producing layer) each part reads and writes, so
    running the parts in order, feeding each the tensors it names, reproduces ``model``.
    """
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
    images = np.asarray(images, np.float32)[:calibration_count]
    parts = split_model(model, plan)
    values = {parts[0]["inputs"][0]: images}
    written = []
    for i, p in enumerate(parts):
        feed = [values[n] for n in p["inputs"]]
        mode = "int8" if p["device"] == "npu" else "float32"
        content, sig_in, sig_out = _convert_part(p, mode, feed)
        fname = f"part{i}_{p['device']}_{mode}.tflite"
        tflite.write_artifact(os.path.join(out_dir, fname), content, plan.model, mode,
                              extra={"partition": {"profile": plan.profile, "policy": plan.policy, "part": i,
                                                   "device": p["device"], "inputs": p["inputs"],
                                                   "outputs": p["outputs"]}}, command=command)
        out = p["model"](feed if len(feed) > 1 else feed[0], training=False)
        out = out if isinstance(out, (list, tuple)) else [out]
        for name, v in zip(p["outputs"], out):
            values[name] = np.asarray(v)
        written.append({"part": i, "device": p["device"], "mode": mode, "file": fname, "inputs": p["inputs"],
                        "outputs": p["outputs"], "signature_inputs": sig_in, "signature_outputs": sig_out})
    doc = plan.as_dict()
    doc["files"] = written
    atomic_write(os.path.join(out_dir, "plan.json"), json.dumps(doc, indent=1, default=plain) + "\n")
    atomic_write(os.path.join(out_dir, "partition.log"), plan.log)
    return written


class ChainedRunner:
    """Runs the exported parts one after the other in LiteRT: float images in, float outputs out.

    Integer tensors are quantized / dequantized at every part boundary with that part's
    own scales (what a host does between an int8 NPU program and a float CPU head).
    """

    def __init__(self, out_dir, threads=1):
        with open(os.path.join(out_dir, "plan.json")) as f:
            self.plan = json.load(f)
        self.parts = []
        for p in self.plan["files"]:
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
