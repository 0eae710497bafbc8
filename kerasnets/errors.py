"""User-facing errors of kerasnets: one sentence naming the bad value and the fix.

Every error the project raises for bad input derives from :class:`KerasnetsError`; the
scripts' boundary (:func:`kerasnets.cli.run_main`) prints those as one sentence and exits 2.
Anything else is a bug and keeps its trace. The other packages' errors (``ExportError``,
``ProfileError``, ``PipelineError``...) derive from it too.
"""
import errno


class KerasnetsError(Exception):
    """Base of every user-facing error: its message is one sentence naming the bad value and the fix."""


class UsageError(KerasnetsError, ValueError):
    """A bad argument of a script or of a public function: wrong type, out of range, unknown choice."""


class ModelConfigError(KerasnetsError, ValueError):
    """A model name, size, width, group count or option that kerasnets cannot build."""


class DataError(KerasnetsError, ValueError):
    """A dataset that cannot be used: missing, empty, wrong shape or dtype, bad labels, NaN/Inf."""


class CheckpointError(ModelConfigError):
    """A checkpoint that cannot be imported: unreadable, of another family or width, or incomplete."""


class PathError(KerasnetsError, OSError):
    """A path that cannot be read or written: missing, a folder where a file is expected, read-only, full."""


# errno -> what to do about it (the sentence's second half)
_PATH_FIXES = {
    errno.ENOENT: "it does not exist; check the path",
    errno.EISDIR: "it is a folder; pass a file path",
    errno.ENOTDIR: "a part of it is a file, not a folder; pick another path",
    errno.EACCES: "permission denied; pick a path you can write (or read)",
    errno.EPERM: "permission denied; pick a path you can write (or read)",
    errno.EROFS: "the file system is read-only; pick a writable path",
    errno.ENOSPC: "the disk is full; free space or pick another disk",
    errno.EDQUOT: "the disk quota is exceeded; free space or pick another disk",
    errno.EEXIST: "it already exists; remove it or pick another path",
    errno.ENAMETOOLONG: "the name is too long; pick a shorter path",
}


def path_error(path, exc, action="write"):
    """The :class:`PathError` for OSError ``exc`` met while trying to ``action`` ``path``.

    Errors without a known fix keep the system's own words, still naming the path.
    """
    fix = _PATH_FIXES.get(getattr(exc, "errno", None))
    if fix is None:
        fix = f"{getattr(exc, 'strerror', None) or exc}; check the path"
    err = PathError(f"cannot {action} {str(path)!r}: {fix}.")
    err.errno = getattr(exc, "errno", None)
    return err
