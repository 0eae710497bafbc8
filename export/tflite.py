"""The one TFLite conversion function, and artifact writing with a manifest (at :func:`manifest_path`).

An artifact and its manifest are one bundle of :mod:`kerasnets.io`: published together, so
after a crash at any moment a reader going through :mod:`kerasnets.export.runtime` finds the whole old
pair or the whole new one; temporary files of a killed export are removed by the next write.
Writers of one path are serialised by a lock (:func:`artifact_lock`), which a script can hold
across a whole export so that a second export to that path is refused before any work.
"""
import contextlib
import errno
import hashlib
import importlib.metadata
import json
import os
import sys

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from kerasnets.export.runtime import manifest_path
import kerasnets
from kerasnets.backend import tf
from kerasnets.errors import KerasnetsError, PathError, path_error
from kerasnets.io import bundle_lock, write_bundle

MODES = ("float32", "float16", "dynamic", "int8")
IO_TYPES = ("float32", "int8", "uint8")


class ExportError(KerasnetsError, ValueError):
    """A conversion request that cannot be honoured (bad mode, missing calibration data...)."""


def _is_quantize_wrapped(model):
    return any(type(l).__name__.startswith("QuantizeWrapper") for l in model.layers)


def _images(data, input_shape, count):
    """The first ``count`` images of an iterable of images or batches, checked."""
    samples = []
    for item in data:
        arr = np.asarray(item[0] if isinstance(item, (tuple, list)) else item, dtype=np.float32)
        arr = arr.reshape((-1,) + tuple(input_shape))
        for image in arr:
            if not np.all(np.isfinite(image)):
                raise ExportError("a calibration image contains NaN or Inf; clean the calibration data.")
            samples.append(image)
            if len(samples) >= count:
                break
        if len(samples) >= count:
            break
    if len(samples) < count:
        raise ExportError(f"calibration data gave {len(samples)} images but {count} were asked; "
                          "provide more images or lower the calibration count.")
    return samples


def _representative(data, input_shapes, count):
    """A converter representative dataset: for one input an iterable of images or batches; for
    several, a list with one (N, ...) array per model input, in the model's input order."""
    if data is None:
        raise ExportError("int8 conversion needs calibration images; pass representative_data "
                          "(real training images, or an iterable of (H, W, C) arrays).")
    if len(input_shapes) == 1:
        samples = [[image] for image in _images(data, input_shapes[0], count)]
    else:
        if not isinstance(data, (list, tuple)) or len(data) != len(input_shapes):
            raise ExportError(f"the model has {len(input_shapes)} inputs; pass representative_data as a list of "
                              f"{len(input_shapes)} arrays, one (N, ...) batch per input in input order.")
        per_input = []
        for k, (arr, shape) in enumerate(zip(data, input_shapes)):
            arr = np.asarray(arr, dtype=np.float32)
            if arr.size % max(1, int(np.prod(shape))):
                raise ExportError(f"representative_data[{k}] has shape {arr.shape}, which does not fit input {k} "
                                  f"of shape {shape}; pass an (N,) + {shape} batch for it.")
            per_input.append(_images([arr], shape, count))
        samples = [list(s) for s in zip(*per_input)]

    def generator():
        for sample in samples:
            if len(sample) == 1:
                yield [sample[0][None]]
            else:  # by signature name: the converter's own input order need not be the model's
                yield {f"input_{k}": x[None] for k, x in enumerate(sample)}
    return generator


def convert(model, mode="float32", representative_data=None, calibration_count=100, io_type=None,
            per_channel=True, deploy=True):
    """Convert a Keras model to a TFLite flatbuffer (bytes), at batch 1 with static shapes.

    The converter is :func:`make_converter` (same arguments); this runs it.
    """
    return make_converter(model, mode, representative_data, calibration_count, io_type, per_channel,
                          deploy).convert()


def make_converter(model, mode="float32", representative_data=None, calibration_count=100, io_type=None,
                   per_channel=True, deploy=True):
    """The configured ``tf.lite.TFLiteConverter`` behind :func:`convert` (for tools that need the
    converter itself, such as TFLite's ``QuantizationDebugger``); its ``representative_dataset``
    is the calibration generator.

    The artifact's signature names its inputs ``x`` (one input) or ``input_0``, ``input_1``...
    (several, in the model's input order) and its outputs ``output_0``, ``output_1``...

    Args:
      model: a float, deployed or QAT (tfmot) Keras model.
      mode: ``float32``, ``float16``, ``dynamic`` (int8 weights, float activations) or
        ``int8`` (full integer; needs ``representative_data`` unless the model is QAT).
      representative_data: int8 calibration data: an iterable of images (H, W, C) or batches;
        a list with one (N, ...) batch per model input fits any model (the only form for
        several inputs).
      calibration_count: how many images calibration uses.
      io_type: input/output type of an int8 model: ``int8`` (default), ``uint8`` or
        ``float32`` (adds QUANTIZE/DEQUANTIZE at the edges, to run on a CPU).
      per_channel: per-channel weight scales (default); False for per-tensor.
      deploy: apply :func:`kerasnets.deploy` (BN folding, RepGhost fusion) first; skipped
        for QAT models, whose converter folds BN itself.
    """
    if mode not in MODES:
        raise ExportError(f"mode {mode!r} is unknown; use one of {MODES}.")
    io_type = io_type or ("int8" if mode == "int8" else "float32")
    if io_type not in IO_TYPES or (mode != "int8" and io_type != "float32"):
        raise ExportError(f"io_type {io_type!r} does not fit mode {mode!r}; integer input/output needs mode int8.")
    qat = _is_quantize_wrapped(model)
    if deploy and not qat:
        model = kerasnets.deploy(model)
    shapes = [tuple(t.shape[1:]) for t in model.inputs]
    for shape in shapes:
        if any(d is None for d in shape):
            raise ExportError(f"model input shape {shape} is not static; build the model with a fixed input_shape.")
    # Signature inputs: ``x`` for one input, ``input_0``, ``input_1``... (model input order) for several.
    if len(shapes) == 1:
        fn = tf.function(lambda x: model(x, training=False))
        specs = [tf.TensorSpec((1,) + shapes[0], model.inputs[0].dtype)]
    else:
        fn = tf.function(lambda *xs: model(list(xs), training=False))
        specs = [tf.TensorSpec((1,) + s, t.dtype, name=f"input_{k}")
                 for k, (s, t) in enumerate(zip(shapes, model.inputs))]
    concrete = fn.get_concrete_function(*specs)
    # The converter saves its trackable object as a SavedModel first (that gives the artifact
    # its signature). Saving the Keras model traces every layer's call for serving, 10-25x
    # slower than the conversion itself; a bare module holding the function and the
    # variables gives the same graph and signature.
    holder = tf.Module()
    holder.serve, holder.variables_ = fn, list(model.variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    if mode == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif mode == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if not qat or representative_data is not None:
            converter.representative_dataset = _representative(representative_data, shapes, calibration_count)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        dtype = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io_type]
        converter.inference_input_type = dtype
        converter.inference_output_type = dtype
        if not per_channel:
            converter._experimental_disable_per_channel = True  # noqa: SLF001 (the converter's only switch)
    return converter


def _versions():
    out = {}
    for pkg in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy", "kerasnets"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def _io_quantization(content):
    interpreter = Interpreter(model_content=content)
    def describe(d):
        scale, zero = d["quantization"]
        return {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name,
                "scale": float(scale), "zero_point": int(zero)}
    return ([describe(d) for d in interpreter.get_input_details()],
            [describe(d) for d in interpreter.get_output_details()])


def _busy_error(path):
    return ExportError(f"another process is writing the artifact {str(path)!r}; wait for it to finish or "
                       "export to another path.")


@contextlib.contextmanager
def artifact_lock(path, timeout=1.0):
    """Hold the writer lock of the artifact at ``path`` (and its manifest) for the ``with`` block.

    A script holds it across a whole export, so that a second export to the same path is
    refused up front (:class:`ExportError`, after waiting up to ``timeout`` seconds) instead of
    after its conversion; :func:`write_artifact` inside the block uses it. On acquiring it,
    a half-published artifact of a killed export is completed (or dropped). The lock is an
    flock on a hidden ``.<name>.lock`` file beside ``path``, removed on release; the kernel
    releases it when the process dies.
    """
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(bundle_lock(path, timeout))
        except PathError as e:
            if e.errno == errno.EBUSY:
                raise _busy_error(path) from None
            raise
        yield


def write_artifact(path, content, model_name, mode, normalization=None, labels=None, extra=None, command=None,
                   lock_timeout=60.0):
    """Write a TFLite artifact and its manifest beside it, published as one unit; returns the manifest.

    The manifest records the model name, input size and normalisation, labels, the
    quantization parameters of inputs and outputs, the sha256 and size of the file, package
    versions and the command that made it. Takes :func:`artifact_lock` unless this thread
    holds it, waiting up to ``lock_timeout`` seconds for another writer of ``path`` (then
    :class:`ExportError`). Files get the mode a plain ``open()`` would (the umask applies);
    an unwritable path raises :class:`~kerasnets.errors.PathError`.
    """
    inputs, outputs = _io_quantization(content)
    manifest = {"model": model_name, "mode": mode, "file": os.path.basename(path),
                "sha256": hashlib.sha256(content).hexdigest(), "size_bytes": len(content),
                "input_size": inputs[0]["shape"][1:3] if inputs else None,
                "normalization": normalization, "labels": labels, "inputs": inputs, "outputs": outputs,
                "versions": _versions(), "command": command if command is not None else " ".join(sys.argv)}
    manifest.update(extra or {})
    with artifact_lock(path, lock_timeout):
        try:
            write_bundle(path, content, {manifest_path(path): json.dumps(manifest, indent=1, sort_keys=True) + "\n"})
        except PathError:
            raise
        except OSError as e:
            raise path_error(path, e, "write") from e
    return manifest
