"""LiteRT runtime: safe loading of TFLite files, verification against Keras, benchmarking.

Every artifact is checked before LiteRT touches it: against its manifest's sha256 and size
when one lies beside the file (any changed byte is refused), as a flatbuffer (identifier,
bounds of every table the interpreter will follow, tensor sizes within this machine's
memory), then loaded and run once on zeros in a child process. So a truncated, bit-flipped
or foreign file gives a clear :class:`ArtifactError`, never a crash of the calling process
or a failure at its first use. A file and its manifest are read as one bundle of
:mod:`kerasnets.io` (a half-published pair of a killed export is completed first).
"""
import collections
import hashlib
import json
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import time

import numpy as np

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from kerasnets import io
from kerasnets.errors import KerasnetsError, PathError, UsageError, path_error
from kerasnets.resources import physical_memory_bytes


class ArtifactError(KerasnetsError, ValueError):
    """A file that is not a usable TFLite model."""


class VerificationError(KerasnetsError, AssertionError):
    """A TFLite artifact disagrees with its Keras source beyond the mode's tolerance."""


_LOG = logging.getLogger("kerasnets")
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
# Bytes per element of each tensor type; the types not named take 1 byte or less.
_ITEM_BYTES = {getattr(schema.TensorType, name): n for name, n in (
    ("FLOAT32", 4), ("INT32", 4), ("UINT32", 4), ("FLOAT16", 2), ("BFLOAT16", 2), ("INT16", 2), ("UINT16", 2),
    ("INT64", 8), ("UINT64", 8), ("FLOAT64", 8), ("COMPLEX64", 8), ("COMPLEX128", 16), ("STRING", 8),
    ("RESOURCE", 8), ("VARIANT", 8)) if hasattr(schema.TensorType, name)}
#: Where the manifest of an artifact lives (:func:`manifest_path`; ``kerasnets.export.tflite`` uses the same).
MANIFEST_SUFFIX = ".manifest.json"


def _parse(content, label):
    """Walk the flatbuffer tables LiteRT reads and check every index and offset is in range;
    returns the op names."""
    return _walk(content, label)[0]


def _walk(content, label):
    """:func:`_parse`'s checks; returns (op names, bytes all tensors declare)."""
    size = len(content)
    if size < 16:
        raise ArtifactError(f"{label} is {size} bytes, too short to be a TFLite model; re-export it.")
    if content[4:8] != b"TFL3":
        raise ArtifactError(f"{label} is not a TFLite flatbuffer (identifier {bytes(content[4:8])!r}, "
                            "expected b'TFL3'); pass a .tflite file written by the TFLite converter.")
    try:
        model = schema.Model.GetRootAs(content, 0)
        n_buffers = model.BuffersLength()
        for i in range(n_buffers):
            buf = model.Buffers(i)
            offset, length = buf.Offset(), buf.Size()
            if offset and offset + length > size:
                raise ArtifactError(f"{label}: buffer {i} points past the end of the file; the file is "
                                    "truncated, re-export it.")
            if buf.DataLength() and buf._tab.Vector(4) + buf.DataLength() > size:  # noqa: SLF001
                raise ArtifactError(f"{label}: buffer {i} runs past the end of the file; the file is "
                                    "truncated, re-export it.")
        codes = []
        for i in range(model.OperatorCodesLength()):
            code = model.OperatorCodes(i)
            codes.append(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
        if model.SubgraphsLength() < 1:
            raise ArtifactError(f"{label} has no subgraph; re-export it.")
        ops, tensor_bytes = [], 0
        for g in range(model.SubgraphsLength()):
            sub = model.Subgraphs(g)
            n_tensors = sub.TensorsLength()
            for t in range(n_tensors):
                tensor = sub.Tensors(t)
                if tensor.Buffer() >= n_buffers:
                    raise ArtifactError(f"{label}: tensor {t} refers to buffer {tensor.Buffer()} of {n_buffers}; "
                                        "the file is corrupted, re-export it.")
                elements = 1
                for d in (tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else []):
                    if d < -1:
                        raise ArtifactError(f"{label}: tensor {t} has dimension {d}; the file is corrupted, "
                                            "re-export it.")
                    elements *= max(d, 1)
                tensor_bytes += elements * _ITEM_BYTES.get(tensor.Type(), 1)
            for k in range(sub.OperatorsLength()):
                op = sub.Operators(k)
                if op.OpcodeIndex() >= len(codes):
                    raise ArtifactError(f"{label}: operator {k} uses opcode {op.OpcodeIndex()} of {len(codes)}; "
                                        "the file is corrupted, re-export it.")
                io = list(op.InputsAsNumpy() if op.InputsLength() else []) + \
                    list(op.OutputsAsNumpy() if op.OutputsLength() else [])
                if any(i >= n_tensors or i < -1 for i in io):
                    raise ArtifactError(f"{label}: operator {k} refers to a tensor outside 0..{n_tensors - 1}; "
                                        "the file is corrupted, re-export it.")
                ops.append(_OP_NAMES.get(codes[op.OpcodeIndex()], f"CUSTOM_{codes[op.OpcodeIndex()]}"))
        memory = physical_memory_bytes()
        if memory and tensor_bytes > memory:
            raise ArtifactError(f"{label} declares tensors of {tensor_bytes / 2**30:.1f} GiB in all, more than this "
                                f"machine's {memory / 2**30:.1f} GiB of memory; the file is corrupted, re-export it.")
        return ops, tensor_bytes
    except ArtifactError:
        raise
    except Exception as e:  # flatbuffers raises struct/index errors on garbage offsets
        raise ArtifactError(f"{label} is not a readable TFLite flatbuffer ({type(e).__name__}); the file is "
                            "truncated or corrupted, re-export it.") from None


# The trial run in a child process: the model comes on stdin; each stage is announced on stdout
# so that a failure or a crash can be named. Its address space is capped (argv[1] bytes above
# what the interpreter needs before loading) so a corrupted size cannot exhaust the machine.
_PROBE = """\
import resource, sys
content = sys.stdin.buffer.read()
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
try:
    with open("/proc/self/status") as f:
        used = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
    limit = used + int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
except (OSError, ValueError, StopIteration):
    pass
print("load", flush=True)
i = Interpreter(model_content=content, num_threads=1)
print("allocate", flush=True)
try:
    i.allocate_tensors()
except RuntimeError as e:  # XNNPACK refused to prepare: the builtin kernels still run it (make_interpreter)
    if "XNNPACK" not in str(e) and "delegate" not in str(e).lower():
        raise
    i = Interpreter(model_content=content, num_threads=1,
                    experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    i.allocate_tensors()
print("invoke", flush=True)
for d in i.get_input_details():
    i.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
i.invoke()
print("ok", flush=True)
"""
_STAGES = {"load": "loading it", "allocate": "allocating its tensors", "invoke": "a trial run on zeros",
           "ok": "exiting"}
_PROBE_TIMEOUT_S = 300


def manifest_path(path):
    """Where the manifest of artifact ``path`` lives."""
    return os.fspath(path) + MANIFEST_SUFFIX


def read_tflite(artifact, probe=True, check_manifest=True):
    """Return the bytes of a TFLite model (path or bytes) after validating it.

    Raises :class:`ArtifactError` (one sentence) for a missing, truncated, corrupted or
    foreign file. A path with a manifest beside it (``<path>.manifest.json``) must match the
    manifest's sha256 and size (``check_manifest=False`` skips that); a file without one
    (a partition part, a user's file) is checked as a flatbuffer only. With ``probe`` the
    model is also loaded and run once on zero inputs in a child process, so a file that
    would crash the interpreter or fail at its first invoke is refused instead.
    """
    if isinstance(artifact, (bytes, bytearray)):
        content, label = bytes(artifact), "the model bytes"
    else:
        path = os.fspath(artifact)
        label = repr(path)
        if os.path.isdir(path):
            raise ArtifactError(f"TFLite file {path!r} is a folder; pass the .tflite file inside it.")
        if not os.path.isfile(path):
            raise ArtifactError(f"TFLite file {path!r} does not exist; check the path.")
        sidecars = [manifest_path(path)] if check_manifest else []
        try:
            content, manifests = io.read_bundle(path, sidecars)
        except FileNotFoundError:
            raise ArtifactError(f"TFLite file {path!r} does not exist; check the path.") from None
        except PathError as e:  # another process keeps the file busy
            raise ArtifactError(str(e)) from None
        except OSError as e:
            raise ArtifactError(str(path_error(path, e, "read"))) from None
        if manifests and manifests[0] is not None:
            _check_manifest(content, manifests[0], path)
    _, tensor_bytes = _walk(content, label)
    if probe:
        _probe(content, label, tensor_bytes)
    return content


def _check_manifest(content, raw, path):
    where = manifest_path(path)
    skip = "or pass check_manifest=False to load it anyway"
    try:
        manifest = json.loads(raw)
    except ValueError:
        raise ArtifactError(f"the manifest {where!r} is not valid JSON; re-export {path!r} ({skip}).") from None
    expected = manifest.get("sha256") if isinstance(manifest, dict) else None
    if not isinstance(expected, str):
        raise ArtifactError(f"the manifest {where!r} records no sha256; re-export {path!r} ({skip}).")
    actual = hashlib.sha256(content).hexdigest()
    size = manifest.get("size_bytes")
    if actual != expected or (size is not None and size != len(content)):
        raise ArtifactError(f"{path!r} does not match its manifest: sha256 {actual} ({len(content)} bytes) on disk, "
                            f"{expected} ({size} bytes) in {os.path.basename(where)!r}; the file was changed after "
                            f"export, re-export it ({skip}).")


def _short_cause(stderr):
    """A few words of LiteRT's error: the failing op, or the exception type."""
    m = re.search(r"Node number \d+ \((\w+)\) failed to (\w+)", stderr)
    if m:
        return f"{m.group(1)} failed to {m.group(2)}"
    m = re.findall(r"^(\w+(?:Error|Exception))\b", stderr, re.M)
    return m[-1] if m else None


def _probe(content, label, tensor_bytes=0):
    headroom = 2**30 + 2 * (len(content) + int(tensor_bytes))
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, str(headroom)], input=content, capture_output=True,
                              timeout=_PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ArtifactError(f"{label} did not load and run once within {_PROBE_TIMEOUT_S} s; the file is corrupted, "
                            "re-export it.") from None
    stages = [w for w in proc.stdout.decode(errors="replace").split() if w in _STAGES]
    if proc.returncode == 0 and stages[-1:] == ["ok"]:
        return
    stage = _STAGES.get(stages[-1] if stages else None, "starting")
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        cause = f"crashed with {name} while {stage}"
    else:
        short = _short_cause(proc.stderr.decode(errors="replace"))
        cause = f"failed while {stage}" + (f": {short}" if short else "")
    raise ArtifactError(f"{label} cannot be run by LiteRT ({cause}); the file is corrupted or uses unsupported ops, "
                        "re-export it.")


def op_counts(artifact):
    """Counter of builtin op names in a TFLite model (path or bytes)."""
    content = read_tflite(artifact, probe=False)
    return collections.Counter(_parse(content, "the model"))


def _is_delegate_failure(error):
    return "XNNPACK" in str(error) or "delegate" in str(error).lower()


def make_interpreter(content, threads=1):
    """A LiteRT interpreter with its tensors allocated, for validated model bytes.

    LiteRT applies its XNNPACK delegate by default; on some int8 graphs (e.g. a model trained
    so little that a layer's range collapses) XNNPACK refuses to prepare. Such a model still
    runs on LiteRT's builtin kernels, so it is loaded without the default delegate instead,
    with a warning (timings then describe the builtin kernels; :func:`kernels_of` tells which).
    """
    try:
        interpreter = Interpreter(model_content=content, num_threads=int(threads))
        interpreter.allocate_tensors()
        interpreter.kerasnets_kernels = "xnnpack"
        return interpreter
    except RuntimeError as e:
        if not _is_delegate_failure(e):
            raise
    _LOG.warning("LiteRT's XNNPACK delegate could not prepare this model; it runs on the builtin kernels "
                 "(slower) instead.")
    interpreter = Interpreter(model_content=content, num_threads=int(threads),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    interpreter.kerasnets_kernels = "builtin"  # what timings of it describe (see kernels_of)
    return interpreter


def kernels_of(interpreter):
    """Which kernels an interpreter of :func:`make_interpreter` runs: ``"xnnpack"`` (LiteRT's default
    delegate, what the host_cpu profiles model) or ``"builtin"`` (XNNPACK refused the model)."""
    return getattr(interpreter, "kerasnets_kernels", "xnnpack")


def load_interpreter(artifact, threads=1, probe=True, check_manifest=True):
    """A ready LiteRT interpreter for a validated TFLite model (path or bytes; see :func:`read_tflite`)."""
    return make_interpreter(read_tflite(artifact, probe=probe, check_manifest=check_manifest), threads)


def run_batch(interpreter, images):
    """Run float images (N, H, W, C) through a single-input interpreter one by one.

    Integer inputs are quantized with the model's input scale/zero point and integer
    outputs dequantized, so callers always see float in, float out.
    """
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    results = []
    for image in np.asarray(images, dtype=np.float32):
        x = image[None]
        if inp["dtype"] in (np.int8, np.uint8):
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype(np.float32)
        if out["dtype"] in (np.int8, np.uint8):
            scale, zero = out["quantization"]
            y = (y - zero) * scale
        results.append(y[0])
    return np.stack(results)


# Per-mode tolerances: (error limit on a sample's max |keras - tflite|, minimum top-1 agreement,
# minimum share of samples within the error limit). Float artifacts must hold every sample to
# the limit. A quantized one may exceed it on a few samples: where a model is unsure, an output
# swings with quantization noise, so a single sample says little; systematic errors (a wrong
# scale, a broken op, clipping calibration) move most samples and still fail.
TOLERANCES = {"float32": (1e-4, 1.0, 1.0), "float16": (2e-2, 0.98, 1.0), "dynamic": (0.1, 0.9, 0.95),
              "int8": (0.25, 0.85, 0.9)}


def top1_agreement(expected, got, resolution=0.0):
    """Share of samples whose top-1 class agrees between reference scores and an artifact's.

    A sample whose reference scores for the two chosen classes lie within the artifact's
    output ``resolution`` (its quantization step; 1e-5 for float outputs) is a tie the
    artifact cannot represent, and counts as agreeing.
    """
    expected = np.asarray(expected, np.float32).reshape(len(expected), -1)
    got = np.asarray(got, np.float32).reshape(len(got), -1)
    picked = got.argmax(-1)
    margin = expected.max(-1) - expected[np.arange(len(expected)), picked]
    return float(np.mean(margin <= max(float(resolution), 1e-5)))


def _limits(mode, tolerances):
    if mode not in TOLERANCES and tolerances is None:
        raise UsageError(f"mode {mode!r} has no tolerance; use one of {sorted(TOLERANCES)} or pass tolerances.")
    limits = tuple(tolerances or TOLERANCES[mode])
    if len(limits) not in (2, 3):
        raise UsageError(f"tolerances {limits} are not (max abs error, min top-1 agreement[, min share within]).")
    return limits if len(limits) == 3 else limits + (1.0,)


def compare_outputs(expected, got, mode, resolution=0.0, tolerances=None, what=None):
    """Compare an artifact's outputs with the reference outputs under ``mode``'s tolerance.

    Returns ``{"mode", "samples", "max_abs_error", "mean_abs_error", "within_error_share",
    "top1_agreement", "tolerance", "passed"}``; the errors are per sample (max over its
    outputs), ``within_error_share`` the share of samples within the error limit.
    ``tolerances`` overrides the mode's ``(error limit, min agreement[, min share within])``. Top-1
    agreement counts as a tie (agreeing) a sample whose two reference scores lie within one output
    step, or within twice the batch's median error (at most the mode's error limit).
    """
    max_err, min_agree, min_within = _limits(mode, tolerances)
    expected, got = np.asarray(expected, np.float32), np.asarray(got, np.float32)
    if expected.shape != got.shape:
        raise VerificationError(f"{what or mode + ' artifact'} output shape {got.shape} differs from the "
                                f"reference {expected.shape}.")
    expected, got = expected.reshape(len(expected), -1), got.reshape(len(got), -1)
    per_sample = np.abs(expected - got).max(axis=1)
    within = float(np.mean(per_sample <= max_err))
    # Two reference scores closer than twice the artifact's typical (median) error, capped at the mode's
    # error limit, are a tie its noise may flip either way, as are scores within one output step: a
    # near-uniform (barely trained) model flips many such near-ties without being wrong.
    agree = top1_agreement(expected, got, max(resolution, min(2 * float(np.median(per_sample)), max_err)))
    return {"mode": mode, "samples": int(len(expected)), "max_abs_error": float(per_sample.max()),
            "mean_abs_error": float(per_sample.mean()), "within_error_share": within, "top1_agreement": agree,
            "tolerance": {"max_abs_error": max_err, "top1_agreement": min_agree, "within_error_share": min_within},
            "passed": within >= min_within and agree >= min_agree}


def check_outputs(expected, got, mode, resolution=0.0, tolerances=None, what=None, raise_on_failure=True):
    """:func:`compare_outputs`, raising :class:`VerificationError` (naming ``what``) when it fails."""
    report = compare_outputs(expected, got, mode, resolution, tolerances, what)
    if raise_on_failure and not report["passed"]:
        t = report["tolerance"]
        raise VerificationError(
            f"{what or mode + ' artifact'} disagrees with Keras: {report['within_error_share']:.0%} of "
            f"{report['samples']} samples within max abs error {t['max_abs_error']} (minimum "
            f"{t['within_error_share']:.0%}; worst {report['max_abs_error']:.3g}), top-1 agreement "
            f"{report['top1_agreement']:.3f} (minimum {t['top1_agreement']}).")
    return report


def verify(keras_model, artifact, images, mode, tolerances=None, raise_on_failure=True):
    """Run ``images`` through the Keras model and the TFLite artifact and compare.

    Returns :func:`compare_outputs`' report and raises :class:`VerificationError` outside the
    mode's tolerance (unless told not to).
    """
    _limits(mode, tolerances)  # an unknown mode is refused before any inference
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise UsageError(f"verification images have shape {images.shape}; pass a non-empty (N, H, W, C) batch.")
    expected = np.asarray(keras_model.predict(images, batch_size=32, verbose=0), dtype=np.float32)
    interpreter = load_interpreter(artifact)
    got = run_batch(interpreter, images)
    out = interpreter.get_output_details()[0]
    resolution = float(out["quantization"][0]) if out["dtype"] in (np.int8, np.uint8) else 0.0
    return check_outputs(expected, got, mode, resolution, tolerances, raise_on_failure=raise_on_failure)


def _random_input(detail, rng):
    shape = detail["shape"]
    if detail["dtype"] in (np.int8, np.uint8):
        info = np.iinfo(detail["dtype"])
        return rng.integers(info.min, info.max + 1, size=shape).astype(detail["dtype"])
    return rng.standard_normal(shape).astype(detail["dtype"])


class _Timer:
    """One loaded model with fixed random inputs, timed one invoke at a time."""

    def __init__(self, artifact, threads):
        self.content = read_tflite(artifact)
        self.interpreter = make_interpreter(self.content, threads)
        rng = np.random.default_rng(0)
        for d in self.interpreter.get_input_details():
            self.interpreter.set_tensor(d["index"], _random_input(d, rng))
        self.times = []

    def once(self):
        start = time.perf_counter()
        self.interpreter.invoke()
        self.times.append((time.perf_counter() - start) * 1e3)


def timing_stats(times_ms):
    """Median, p90, mean and min of a list of times in ms."""
    t = sorted(times_ms)
    return {"runs": len(t), "median_ms": statistics.median(t), "p90_ms": t[min(len(t) - 1, int(round(0.9 * (len(t) - 1))))],
            "mean_ms": statistics.fmean(t), "min_ms": t[0]}


def _summary(timer, label):
    ops = collections.Counter(_parse(timer.content, label))
    return {"model": label, **timing_stats(timer.times), "size_bytes": len(timer.content), "ops": sum(ops.values()),
            "op_counts": dict(ops), "kernels": kernels_of(timer.interpreter)}


def time_function(fn, runs=50, warmup=5):
    """Time ``fn()`` (e.g. a chained runner on one image): warm-up, then ``runs`` calls; median and p90 in ms."""
    if runs < 1 or warmup < 0:
        raise UsageError(f"runs={runs} / warmup={warmup} must be >= 1 / >= 0.")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return timing_stats(times)


def benchmark(artifact, runs=50, warmup=5, threads=1):
    """Warm up, then time ``runs`` invokes; median, p90, mean, size and op counts."""
    if runs < 1 or warmup < 0:
        raise UsageError(f"runs={runs} / warmup={warmup} must be >= 1 / >= 0.")
    timer = _Timer(artifact, threads)
    for _ in range(warmup):
        timer.once()
    timer.times.clear()
    for _ in range(runs):
        timer.once()
    return _summary(timer, artifact if isinstance(artifact, str) else "<bytes>")


def compare(artifacts, runs=50, warmup=5, threads=1):
    """Interleaved A/B(/C...) timing: each round invokes every model once, in turn.

    Interleaving spreads machine noise evenly over the models, so the ratios of the
    medians are fair. ``artifacts`` maps a label to a path or bytes.
    """
    timers = {label: _Timer(a, threads) for label, a in artifacts.items()}
    for _ in range(warmup):
        for t in timers.values():
            t.once()
    for t in timers.values():
        t.times.clear()
    for _ in range(runs):
        for t in timers.values():
            t.once()
    return {label: _summary(t, label) for label, t in timers.items()}
