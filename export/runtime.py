"""LiteRT runtime: safe loading of TFLite files, verification against Keras, benchmarking.

Every artifact is checked as a flatbuffer before LiteRT touches it (identifier, bounds of
every table the interpreter will follow), then loaded once in a child process, so a
truncated, bit-flipped or foreign file gives a clear :class:`ArtifactError`, never a
crash of the calling process.
"""
import collections
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from kerasnets.errors import KerasnetsError, UsageError


class ArtifactError(KerasnetsError, ValueError):
    """A file that is not a usable TFLite model."""


class VerificationError(KerasnetsError, AssertionError):
    """A TFLite artifact disagrees with its Keras source beyond the mode's tolerance."""


_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _parse(content, label):
    """Walk the flatbuffer tables LiteRT reads and check every index and offset is in range."""
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
        ops = []
        for g in range(model.SubgraphsLength()):
            sub = model.Subgraphs(g)
            n_tensors = sub.TensorsLength()
            for t in range(n_tensors):
                tensor = sub.Tensors(t)
                if tensor.Buffer() >= n_buffers:
                    raise ArtifactError(f"{label}: tensor {t} refers to buffer {tensor.Buffer()} of {n_buffers}; "
                                        "the file is corrupted, re-export it.")
                tensor.ShapeAsNumpy() if tensor.ShapeLength() else None
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
        return ops
    except ArtifactError:
        raise
    except Exception as e:  # flatbuffers raises struct/index errors on garbage offsets
        raise ArtifactError(f"{label} is not a readable TFLite flatbuffer ({type(e).__name__}); the file is "
                            "truncated or corrupted, re-export it.") from None


_PROBE = ("import sys\nfrom ai_edge_litert.interpreter import Interpreter\n"
          "i = Interpreter(model_path=sys.argv[1], num_threads=1)\ni.allocate_tensors()\n")


def read_tflite(artifact, probe=True):
    """Return the bytes of a TFLite model (path or bytes) after validating it.

    Raises :class:`ArtifactError` (one sentence) for a missing, truncated, corrupted or
    foreign file. With ``probe`` the file is also loaded once in a child process, so a
    file that would crash the interpreter is refused instead.
    """
    if isinstance(artifact, (bytes, bytearray)):
        content, label, path = bytes(artifact), "the model bytes", None
    else:
        path = os.fspath(artifact)
        if not os.path.isfile(path):
            raise ArtifactError(f"TFLite file {path!r} does not exist; check the path.")
        with open(path, "rb") as f:
            content = f.read()
        label = repr(path)
    _parse(content, label)
    if probe:
        _probe(content, path, label)
    return content


def _probe(content, path, label):
    tmp = None
    if path is None:
        fd, tmp = tempfile.mkstemp(suffix=".tflite")
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        path = tmp
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE, path], capture_output=True, text=True, timeout=300)
    finally:
        if tmp:
            os.unlink(tmp)
    if proc.returncode != 0:
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else proc.stderr.strip().splitlines()[-1:] or ["?"]
        raise ArtifactError(f"{label} could not be loaded by LiteRT ({how if isinstance(how, str) else how[0]}); "
                            "the file is corrupted or uses unsupported ops, re-export it.")


def op_counts(artifact):
    """Counter of builtin op names in a TFLite model (path or bytes)."""
    content = read_tflite(artifact, probe=False)
    return collections.Counter(_parse(content, "the model"))


def load_interpreter(artifact, threads=1, probe=True):
    """A ready LiteRT interpreter for a validated TFLite model (path or bytes)."""
    content = read_tflite(artifact, probe=probe)
    interpreter = Interpreter(model_content=content, num_threads=int(threads))
    interpreter.allocate_tensors()
    return interpreter


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
    ``tolerances`` overrides the mode's ``(error limit, min agreement[, min share within])``.
    """
    max_err, min_agree, min_within = _limits(mode, tolerances)
    expected, got = np.asarray(expected, np.float32), np.asarray(got, np.float32)
    if expected.shape != got.shape:
        raise VerificationError(f"{what or mode + ' artifact'} output shape {got.shape} differs from the "
                                f"reference {expected.shape}.")
    expected, got = expected.reshape(len(expected), -1), got.reshape(len(got), -1)
    per_sample = np.abs(expected - got).max(axis=1)
    within = float(np.mean(per_sample <= max_err))
    agree = top1_agreement(expected, got, resolution)
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
        self.interpreter = Interpreter(model_content=self.content, num_threads=int(threads))
        self.interpreter.allocate_tensors()
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
            "op_counts": dict(ops)}


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
