"""A small shared LiteRT timing helper: load a TFLite model, warm up, time N invokes, take the median.

Meant for timing many small models in one process (the host-CPU micro-benchmarks of
:mod:`export.calibrate`): models are loaded straight into
``ai_edge_litert.interpreter.Interpreter`` without the child-process probe that
:func:`export.runtime.read_tflite` runs on files from outside (these bytes come from our
own converter in the same run). For user artifacts use :mod:`export.runtime`, whose
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
