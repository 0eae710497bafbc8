"""A small shared LiteRT timing helper: load a TFLite model, warm up, time N invokes, take the median.

Meant for timing many small models in one process (the host-CPU micro-benchmarks of
:mod:`kerasnets.export.calibrate`): models are loaded straight into
``ai_edge_litert.interpreter.Interpreter`` without the child-process probe that
:func:`kerasnets.export.runtime.read_tflite` runs on files from outside (these bytes come from our
own converter in the same run). For user artifacts use :mod:`kerasnets.export.runtime`, whose
``benchmark``/``compare`` check the file first and interleave several models.
"""
import statistics
import time

import numpy as np

from ai_edge_litert.interpreter import Interpreter


def load(model, threads=1):
    """A ready interpreter for TFLite ``model`` (bytes or a path), inputs filled with fixed random data."""
    if isinstance(model, (bytes, bytearray)):
        interpreter = Interpreter(model_content=bytes(model), num_threads=int(threads))
    else:
        interpreter = Interpreter(model_path=str(model), num_threads=int(threads))
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in interpreter.get_input_details():
        if d["dtype"] in (np.int8, np.uint8):
            info = np.iinfo(d["dtype"])
            x = rng.integers(info.min, info.max + 1, size=d["shape"]).astype(d["dtype"])
        else:
            x = rng.standard_normal(d["shape"]).astype(d["dtype"])
        interpreter.set_tensor(d["index"], x)
    return interpreter


def time_interpreter(interpreter, runs=20, warmup=3, min_seconds=0.0, max_runs=1000):
    """Median milliseconds of ``interpreter.invoke()`` after ``warmup`` untimed invokes.

    Runs at least ``runs`` invokes and keeps going (up to ``max_runs``) until
    ``min_seconds`` of timed invokes have accumulated, so very fast kernels get enough
    samples for a stable median. Returns ``{"median_ms", "min_ms", "runs"}``.
    """
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    total = 0.0
    while len(times) < runs or (total < min_seconds and len(times) < max_runs):
        start = time.perf_counter()
        interpreter.invoke()
        dt = time.perf_counter() - start
        times.append(dt * 1e3)
        total += dt
    return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": len(times)}


def time_model(model, threads=1, runs=20, warmup=3, min_seconds=0.0):
    """Load ``model`` (bytes or path) and time it; see :func:`time_interpreter`."""
    return time_interpreter(load(model, threads), runs=runs, warmup=warmup, min_seconds=min_seconds)


def time_interleaved(interpreters, rounds=15, windows=3, window=10, warmup=3, quantile=10.0, log=None):
    """Steady latency of many interpreters: the figure the host-CPU fit and its validation use.

    On a shared VM a run is interrupted by slow periods lasting 0.1-1 s, in which a model
    runs up to 2x slower (measured here: mobilenet_v2_035 float32, 96x96, 30 s of
    10 ms windows: 0.53 ms most of the time, 0.6-1.1 ms in about a third of them), so a
    median over one stretch depends on when it ran. Each round visits every interpreter for
    ``windows`` windows of ``window`` invokes, so every model is sampled across the whole
    run; returns ``{key: {"steady_ms", "median_ms", "windows"}}`` with the
    ``quantile``-th percentile of each one's window medians as ``steady_ms``.
    """
    interpreters = dict(interpreters)
    for it in interpreters.values():
        for _ in range(warmup):
            it.invoke()
    medians = {k: [] for k in interpreters}
    for r in range(rounds):
        for key, it in interpreters.items():
            for _ in range(windows):
                times = []
                for _ in range(window):
                    t0 = time.perf_counter()
                    it.invoke()
                    times.append((time.perf_counter() - t0) * 1e3)
                medians[key].append(statistics.median(times))
        if log:
            log(f"timing round {r + 1}/{rounds}")
    return {k: {"steady_ms": float(np.percentile(v, quantile)), "median_ms": float(statistics.median(v)),
                "windows": len(v)} for k, v in medians.items()}
