"""Argument checks shared by the pipelines: types and ranges of public arguments, and output folders.

Each check returns the value in its plain form (an ``int``, a finite ``float``, a ``str``) or
raises :class:`~pipelines.errors.ConfigError` in one sentence that names the argument, the
value and what would be accepted, so a library call with a bad argument fails like the
scripts do, with the project's error and before any work.

:func:`check_output_folder` finds out, without creating anything, whether a folder can be
written: it is not a file, no part of its path is a file, and its nearest existing folder
accepts a new entry (probed with a short-lived sub-folder, which covers read-only disks and
permissions that ``os.access`` misses for root).
"""
import math
import numbers
import os

import numpy as np

from kerasnets.errors import path_error
from kerasnets.resources import nearest_existing, probe_writable
from kerasnets.pipelines.errors import ConfigError

__all__ = ["boolean", "check_output_folder", "choice", "integer", "number", "text"]


def _shown(name, value):
    return f"{name}={value!r}"


def integer(name, value, minimum=None, maximum=None, fix=None):
    """``value`` as an ``int`` within [minimum, maximum]; bools, floats with a fraction, text, NaN refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, numbers.Real)):
        raise ConfigError(f"{_shown(name, value)} is not a whole number; {fix or 'pass an integer'}.")
    if isinstance(value, numbers.Integral):
        number_value = int(value)
    else:
        if not math.isfinite(float(value)) or float(value) != int(value):
            raise ConfigError(f"{_shown(name, value)} is not a whole number; {fix or 'pass an integer'}.")
        number_value = int(value)
    _in_range(name, value, number_value, minimum, maximum, fix)
    return number_value


def number(name, value, minimum=None, maximum=None, above=None, below=None, fix=None):
    """``value`` as a finite ``float`` within the bounds (``minimum``/``maximum`` inclusive, ``above``/``below``
    exclusive); bools, text, NaN and infinities refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{_shown(name, value)} is not a number; {fix or 'pass a finite number'}.")
    x = float(value)
    if not math.isfinite(x):
        raise ConfigError(f"{name}={x} is not a finite number; {fix or 'pass a finite number'}.")
    if above is not None and not x > above:
        raise ConfigError(f"{name}={x:g} must be greater than {above:g}; {fix or 'pass a larger value'}.")
    if below is not None and not x < below:
        raise ConfigError(f"{name}={x:g} must be less than {below:g}; {fix or 'pass a smaller value'}.")
    _in_range(name, x, x, minimum, maximum, fix)
    return x


def _in_range(name, shown, value, minimum, maximum, fix):
    if minimum is not None and value < minimum:
        if maximum is not None:
            raise ConfigError(f"{name}={shown!r} is outside [{minimum}, {maximum}]; "
                              f"{fix or f'pass a value from {minimum} to {maximum}'}.")
        raise ConfigError(f"{name}={shown!r} must be at least {minimum}; {fix or f'pass {minimum} or more'}.")
    if maximum is not None and value > maximum:
        if minimum is not None:
            raise ConfigError(f"{name}={shown!r} is outside [{minimum}, {maximum}]; "
                              f"{fix or f'pass a value from {minimum} to {maximum}'}.")
        raise ConfigError(f"{name}={shown!r} must be at most {maximum}; {fix or f'pass {maximum} or less'}.")


def boolean(name, value):
    """``value`` as a ``bool`` (True/False, numpy bools); anything else refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{_shown(name, value)} is not True or False; pass a bool.")
    return bool(value)


def text(name, value, empty_ok=False, fix=None):
    """``value`` as a ``str`` (``os.PathLike`` accepted); empty text refused unless ``empty_ok``."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ConfigError(f"{_shown(name, value)} is not text; {fix or 'pass a string'}.")
    if not value and not empty_ok:
        raise ConfigError(f"{name} is empty; {fix or 'pass a value'}.")
    return value


def choice(name, value, choices):
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{_shown(name, value)} is unknown; use one of {', '.join(choices)}.")
    return value


def seed(name, value):
    """A seed: an integer in [0, 2**32 - 1] (what numpy and TensorFlow both accept)."""
    return integer(name, value, 0, 2**32 - 1)


def check_output_folder(path, name="output folder"):
    """Refuse (:class:`ConfigError` / :class:`~kerasnets.errors.PathError`) a folder that cannot be written.

    Creates nothing: checks that ``path`` is not a file, that no part of it is a file, and that
    the folder itself (when it exists) or its nearest existing parent accepts new entries.
    Returns the path.
    """
    path = text(name, path, fix="pass the folder to write into")
    full = os.path.abspath(path)
    if os.path.isfile(full) or (os.path.lexists(full) and not os.path.isdir(full)):
        raise ConfigError(f"{name} {path!r} is a file, not a folder; pass a folder path (new or existing).")
    existing = nearest_existing(full)
    if not os.path.isdir(existing):
        raise ConfigError(f"{name} {path!r} cannot be made: {existing!r} is a file, not a folder; "
                          "pick a path whose parents are folders.")
    try:
        probe_writable(existing)
    except OSError as e:
        raise path_error(path, e, "write") from None
    return path


def changed_setting(mine, theirs, resumable=()):
    """The first setting of ``mine`` (a dict) that a stored run's ``theirs`` holds with another value, or None;
    settings in ``resumable`` may change between a run and its resume."""
    return next((k for k in mine if k not in resumable and theirs.get(k) != mine[k]), None)
