"""What a request needs from this machine, checked before any work: memory for activations, disk for files.

The limits are derived from the machine (physical memory, free disk) and the model itself
(its largest activation at the requested size), not from fixed maxima, so a size that fits a
large machine is accepted there and refused here in one sentence.
"""
import os
import shutil
import tempfile

import numpy as np

from kerasnets.errors import ModelConfigError, PathError

# float32 activations: the float model is what is built, trained, converted and calibrated.
_BYTES_PER_VALUE = 4


def physical_memory_bytes():
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _elements(shape):
    dims = [d for d in tuple(shape)[1:]]
    if any(d is None for d in dims):
        return 0
    return int(np.prod(dims, dtype=np.float64))


def peak_activation_bytes(model, batch=1):
    """Bytes of the largest layer step of ``model``: its inputs plus its outputs, float32, at ``batch``.

    A lower bound of what one forward pass needs at once (weights, framework buffers and the
    backward pass come on top), computed from the model's static shapes without running it.
    """
    peak = 0
    for layer in model.layers:
        step = 0
        for node_tensors in (layer.input, layer.output):
            tensors = node_tensors if isinstance(node_tensors, (list, tuple)) else [node_tensors]
            step += sum(_elements(t.shape) for t in tensors if hasattr(t, "shape"))
        peak = max(peak, step)
    return peak * _BYTES_PER_VALUE * int(batch)


def check_fits_memory(model, batch=1, memory_bytes=None):
    """Refuse (:class:`ModelConfigError`) a model whose largest layer step at ``batch`` exceeds memory.

    ``memory_bytes`` defaults to this machine's physical memory; the message names the input
    size, the need and the limit.
    """
    memory = physical_memory_bytes() if memory_bytes is None else int(memory_bytes)
    if not memory:
        return
    need = peak_activation_bytes(model, batch)
    if need > memory:
        size = "x".join(str(d) for d in tuple(model.inputs[0].shape)[1:3])
        raise ModelConfigError(
            f"{model.name} at input size {size} (batch {batch}) needs {need / 2**30:.1f} GiB for its largest layer "
            f"alone, more than this machine's {memory / 2**30:.1f} GiB of memory; use a smaller input size "
            "or batch.")


def nearest_existing(path):
    """The nearest path at or above ``path`` that exists (``path`` itself when it does), absolute."""
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return current


def probe_writable(folder):
    """Raise the OSError that creating a file in ``folder`` would raise (read-only, permission denied...).

    The probe is an unnamed temporary file, so nothing is left behind (even for root, who passes
    ``os.access`` checks that the file system still refuses).
    """
    with tempfile.TemporaryFile(dir=folder):
        pass


def check_free_space(path, need_bytes):
    """Refuse (:class:`PathError`) writing about ``need_bytes`` under ``path`` when its disk has less free."""
    try:
        free = shutil.disk_usage(nearest_existing(path)).free
    except OSError:
        return
    if need_bytes > free:
        raise PathError(f"writing {path!r} needs about {need_bytes / 2**20:.1f} MiB but its disk has "
                        f"{free / 2**20:.1f} MiB free; free space or pick another disk.")
