"""What the export scripts share: building the zoo model a script names, and checking every input
(flags, sizes, output paths, weights and calibration files) before any work or any write.

Each check raises a :class:`kerasnets.errors.KerasnetsError` whose one sentence names the flag,
the bad value and the fix, so a bad command costs seconds and leaves nothing behind.
"""
import difflib
import errno
import os
import zipfile

import numpy as np

import kerasnets
from kerasnets.cli import parse_size
from kerasnets.errors import DataError, ModelConfigError, PathError, UsageError, path_error
from kerasnets.io import writing  # noqa: F401 (re-exported: the scripts call zoo_model.writing)
from kerasnets.resources import (check_fits_memory, check_free_space, nearest_existing, physical_memory_bytes,
                                 probe_writable)
from kerasnets.spec import load_spec
from kerasnets.zoo import weights_mismatch

# Bytes per weight of an artifact in each conversion mode (dynamic and int8 keep int8 weights).
BYTES_PER_WEIGHT = {"float32": 4, "float16": 2, "dynamic": 1, "int8": 1}
# What a TFLite file and its manifest add beyond the weights: the graph, quantization parameters,
# per-channel scales and biases (int32) and the JSON manifest, bounded generously.
ARTIFACT_OVERHEAD_BYTES = 1 << 20
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def check_choice(value, choices, flag):
    """Refuse (UsageError) ``--flag=value`` outside ``choices``, naming the closest one."""
    if value not in choices:
        close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"--{flag}={value!r} is unknown{hint}; use one of {', '.join(map(str, choices))}.")
    return value


def model_overrides(shuffle=None, group_conv=None):
    """get_model overrides of the --shuffle and --group_conv flags, checked."""
    from kerasnets.builder import GROUP_CONV_MODES
    from kerasnets.layers import SHUFFLE_MODES
    out = {}
    if shuffle:
        out["shuffle"] = check_choice(shuffle, SHUFFLE_MODES, "shuffle")
    if group_conv:
        out["group_conv"] = check_choice(group_conv, GROUP_CONV_MODES, "group_conv")
    return out


def model_size(name, input_size, spec=None):
    """(height, width) of zoo model ``--model=name`` (or of the ``--spec`` file ``spec``) at ``--input_size``
    (its default when empty), checked without building it: a known name, a size at least the total stride."""
    if spec:
        loaded, _ = load_spec(spec)
        label, default, stride = f"the --spec model {loaded.name}", tuple(loaded.default_size), loaded.total_stride
    else:
        if not name:
            raise UsageError("--model is required; pick a name from kerasnets-zoo, e.g. --model=mobilenet_v2_100.")
        if name not in kerasnets.list_models():
            close = difflib.get_close_matches(name, kerasnets.list_models(), n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else "kerasnets-zoo lists the names."
            raise ModelConfigError(f"--model={name!r} names an unknown model; {hint}")
        info = kerasnets.get_model_info(name)
        label, default, stride = name, info["default_input_shape"][:2], info["total_stride"]
    h, w = parse_size(input_size) if input_size else default
    if h < stride or w < stride:
        raise UsageError(f"--input_size={h}x{w} is too small for {label}, which downsamples by {stride}; use at "
                         f"least {stride}x{stride}.")
    return h, w


def build_model(name, input_size, classes, overrides, batch=1, spec=None):
    """``kerasnets.get_model(name)`` (or ``get_model(spec=spec)``, a spec file's path) at ``input_size``
    ('HxW', or the model's default when empty).

    The model is symbolic (weights allocated, nothing run), so building it is cheap; an input
    size whose largest layer step at ``batch`` does not fit this machine's memory is refused
    right after (:func:`kerasnets.resources.check_fits_memory`), before any estimate or conversion.
    """
    h, w = model_size(name, input_size, spec)
    model = kerasnets.get_model(None if spec else name, input_shape=(h, w, 3), classes=classes,
                                spec=spec or None, **overrides)
    check_fits_memory(model, batch=batch)
    return model, (h, w)


# ------------------------------------------------------------------------------- paths ----

def _check_can_create_in(target, path, flag):
    """Refuse writing ``path`` (or creating the folders down to it) when ``target``'s nearest existing
    ancestor is a file or does not take new files (read-only, permission denied, a pseudo file system).

    The probe is an unnamed temporary file in that folder, so nothing is left behind.
    """
    existing = nearest_existing(target)
    if not os.path.isdir(existing):
        raise PathError(f"cannot write --{flag}={path!r}: {existing!r} is a file, not a folder; pick another path.")
    try:
        probe_writable(existing)
    except OSError as e:
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT):
            raise PathError(str(path_error(path, e, "write")).replace(f"cannot write {path!r}",
                                                                      f"cannot write --{flag}={path!r}")) from None
        why = "" if e.errno == errno.ENOENT else f" ({e.strerror or e})"
        raise PathError(f"cannot write --{flag}={path!r}: folder {existing!r} does not take new files{why}; pick a "
                        "writable path.") from None


def check_output_file(path, flag, hint="FILE"):
    """Refuse (PathError) an output file path that cannot be written: a folder, under a file, or read-only."""
    if not path:
        raise UsageError(f"--{flag} is empty; pass a {hint} path.")
    if os.path.isdir(path) or path.endswith(os.sep):
        raise PathError(f"cannot write --{flag}={path!r}: it is a folder; pass a {hint} path.")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise PathError(f"cannot write --{flag}={path!r}: it exists and is not a regular file; pick another path.")
    _check_can_create_in(os.path.dirname(os.path.abspath(path)), path, flag)
    if os.path.isfile(path) and not os.access(path, os.W_OK):
        raise PathError(f"cannot write --{flag}={path!r}: permission denied; pick a path you can write.")
    return path


def check_output_folder(path, flag, files=()):
    """Refuse (PathError) an output folder that cannot be written: a file, under a file, read-only, or
    holding a folder where one of ``files`` is to be written."""
    if not path:
        raise UsageError(f"--{flag} is empty; pass an output folder.")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise PathError(f"cannot write into --{flag}={path!r}: it is a file, not a folder; pass a folder path.")
    _check_can_create_in(path, path, flag)
    for name in files:
        target = os.path.join(path, name)
        if os.path.isdir(target):
            raise PathError(f"cannot write {target!r} under --{flag}={path!r}: it is a folder; remove it or pick "
                            "another output folder.")
    return path


def check_space(path, need_bytes, flag):
    """Refuse (PathError) when the disk of ``path`` has less free space than ``need_bytes``."""
    try:
        check_free_space(path, need_bytes)
    except PathError as e:
        raise PathError(f"--{flag}: {e}") from None


def artifact_bytes(params, mode):
    """The expected size of a TFLite artifact of ``params`` weights in ``mode``, with headroom."""
    return int(params * BYTES_PER_WEIGHT[mode] * 1.1) + ARTIFACT_OVERHEAD_BYTES




# ----------------------------------------------------------------------------- inputs ----

def check_images_fit_memory(count, size, flag="calibration_count"):
    """Refuse (UsageError) ``count`` float32 images of ``size`` that would not fit in half of memory."""
    need = count * size[0] * size[1] * 3 * 4
    memory = physical_memory_bytes()
    if memory and need > memory // 2:
        raise UsageError(f"--{flag}={count} images of {size[0]}x{size[1]} need {need / 2**30:.1f} GiB, more than "
                         f"half of this machine's {memory / 2**30:.1f} GiB of memory; use fewer images or a smaller "
                         "--input_size.")


def _foreign_checkpoint(path):
    return path.startswith(kerasnets.checkpoints.HUB_PREFIX) or (os.path.exists(path) and
                                                                 kerasnets.checkpoints.is_checkpoint(path))


def check_weights_file(path, flag="weights"):
    """Refuse a ``--flag=path`` that cannot be weights, without building the model: missing, empty, a
    folder that is no checkpoint snapshot, or (for Keras-saved weights) a file that is not HDF5."""
    if path is None:
        return
    if not path:
        raise UsageError(f"--{flag} is empty; pass a weights file or leave the flag out.")
    if path.startswith(kerasnets.checkpoints.HUB_PREFIX):
        return
    if not os.path.lexists(path) and not os.path.exists(path + ".index"):
        raise PathError(f"--{flag}={path!r} does not exist; check the path.")
    if _foreign_checkpoint(path):
        return
    load_weights(None, path, flag)


def load_weights(model, path, flag="weights"):
    """Load Keras-saved weights ``--flag=path`` (HDF5 ``.h5`` or a TF checkpoint prefix) into ``model``.

    A missing, unreadable or non-HDF5 file, or weights of another model, are refused in one
    sentence naming the flag and the file; nothing is assigned then. ``model`` None checks the
    file only.
    """
    from kerasnets.backend import tf
    label = f"--{flag}={path!r}"
    if os.path.isdir(path):
        raise PathError(f"{label} is a folder; pass a weights file.")
    tf_checkpoint = not os.path.exists(path) and os.path.exists(path + ".index")
    if not os.path.exists(path) and not tf_checkpoint:
        raise PathError(f"{label} does not exist; check the path.")
    if not tf_checkpoint:
        try:
            with open(path, "rb") as f:
                head = f.read(8)
        except OSError as e:
            raise path_error(path, e, "read") from None
        if head != _HDF5_SIGNATURE:
            raise ModelConfigError(f"{label} is not a Keras weights file (not HDF5); pass weights saved by "
                                   "model.save_weights('FILE.h5') or a checkpoint kerasnets imports "
                                   "(.safetensors, .pth, a timm folder).")
    if model is None:
        return None
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError, TypeError, IndexError, AttributeError, tf.errors.OpError) as e:
        raise ModelConfigError(f"{label} does not fit {model.name}: {weights_mismatch(e)}; pass weights saved from the "
                               "same --model with the same --input_size, --classes and options.") from None
    return model


def build_model_with_weights(name, input_size, classes, overrides, weights=None, batch=1, flag="weights",
                             spec=None):
    """:func:`build_model`, then ``--weights`` loaded: Keras-saved weights (:func:`load_weights`) or a
    checkpoint kerasnets imports (built in the checkpoint's convention by ``kerasnets.get_model``; a
    checkpoint needs a zoo name, not a ``--spec``)."""
    model, size = build_model(name, input_size, classes, overrides, batch=batch, spec=spec)
    if not weights:
        return model, size
    if not isinstance(weights, str):
        raise UsageError(f"--{flag}={weights!r} must be a path.")
    if _foreign_checkpoint(weights):
        if spec:
            raise UsageError(f"--{flag}={weights} is a checkpoint to import, which needs a zoo --model, not --spec; "
                             "pass Keras weights saved from the spec's model, or use --model.")
        model = kerasnets.get_model(name, input_shape=tuple(size) + (3,), classes=classes, weights=weights,
                                    **overrides)
        return model, size
    return load_weights(model, weights, flag), size


def load_npz_images(path, size, flag="calibration_npz"):
    """The first array of ``--flag=path`` (an .npz) as float32 images (N, H, W, 3) of ``size``, checked.

    Refused in one sentence: a missing file or folder, a file that is not an .npz, one holding no
    arrays, object (pickled) arrays, non-numeric data, a wrong shape, NaN or Inf.
    """
    label = f"--{flag}={path!r}"
    if os.path.isdir(path):
        raise PathError(f"{label} is a folder; pass an .npz file of images.")
    if not os.path.isfile(path):
        raise PathError(f"{label} does not exist; check the path.")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise path_error(path, e, "read") from None
    if head[:2] != b"PK" or not zipfile.is_zipfile(path):
        what = "a .npy file" if head[:4] == b"\x93NUM" else "not an .npz (zip) archive"
        raise DataError(f"{label} is {what}; save the images with numpy.savez(FILE, images=ARRAY).")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if not names:
                raise DataError(f"{label} holds no arrays; save the images with numpy.savez(FILE, images=ARRAY).")
            images = z[names[0]]
    except DataError:
        raise
    except ValueError as e:
        if "pickle" in str(e) or "Object arrays" in str(e):
            raise DataError(f"{label} holds an object array, which is not loaded because it could run code; save "
                            "the images as a plain numeric array with numpy.savez.") from None
        raise DataError(f"{label} is not a readable .npz ({' '.join(str(e).split())[:100]}); save the images "
                        "again with numpy.savez.") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise DataError(f"{label} is not a readable .npz ({type(e).__name__}); save the images again with "
                        "numpy.savez.") from None
    if images.dtype.kind not in "biuf":
        raise DataError(f"{label} array {names[0]!r} has dtype {images.dtype}, not numbers; save float or uint8 "
                        "images.")
    want = tuple(size) + (3,)
    if images.ndim != 4 or tuple(images.shape[1:]) != want or len(images) == 0:
        raise DataError(f"{label} array {names[0]!r} has shape {images.shape}, but the model takes (N,) + {want} "
                        "with N >= 1; resize the images or change --input_size.")
    images = images.astype(np.float32)
    if not np.all(np.isfinite(images)):
        raise DataError(f"{label} array {names[0]!r} contains NaN or Inf; clean the images.")
    return images
