"""Files the project writes: atomic writes (temporary file, fsync, rename) and JSON.

The one implementation used by every package (kerasnets is the base both pipelines and
export import): a reader never sees half a file, and an interrupted write leaves the old
file (or none) and no temporary behind.
"""
import json
import os
import tempfile


def plain(o):
    """``json`` ``default=`` hook: numpy scalars become Python numbers, anything else its ``str``."""
    return o.item() if hasattr(o, "item") else str(o)


def atomic_write(path, content):
    """Write bytes or text to ``path`` through a temporary file in the same folder, fsync and a rename.

    The temporary file is removed when anything fails; the folder is created when missing.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def json_text(obj, indent=1, sort_keys=True, default=None):
    """``obj`` as the project writes JSON files: ``indent`` 1, sorted keys, a final newline."""
    return json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n"


def write_json(path, obj, indent=1, sort_keys=True, default=None):
    """Write ``obj`` as JSON (see :func:`json_text`) to ``path`` atomically."""
    atomic_write(path, json_text(obj, indent=indent, sort_keys=sort_keys, default=default))

