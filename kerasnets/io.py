"""Files the project writes: atomic writes, bundles published as one unit, locks, and JSON.

The one implementation used by every package (kerasnets is the base both pipelines and
export import).

Single files (:func:`atomic_write`): a temporary file in the same folder, fsync, one rename;
a reader never sees half a file. Temporary files are named ``.tmp-<pid>-<random>-<target>``
and their writer holds an flock on them; the next write to the same target removes those
whose lock is free and whose writer is dead (``kill -9``), never a live writer's.

Bundles (:func:`write_bundle`: a file and its sidecars, e.g. a model and its manifest) are
published as one unit. The writer, holding the bundle's lock (:func:`bundle_lock`), writes
every temporary file, then atomically writes a journal ``.<name>.journal`` naming each
temp -> target rename and the temp's inode, renames (the file first, the sidecars last) and
removes the journal. Killed before the journal exists, it leaves only temps (removed by the
next write); killed after, a journal that whoever next takes the lock (a writer, or a reader
that finds it) settles: a rename is done when its target has the recorded inode, pending
while its temp exists; all done or pending, the renames are completed, else (a temp removed
by hand) the journal is dropped. Readers (:func:`read_bundle`) take no lock: they read the
sidecars (kept open), then the file, then check that no journal exists and no sidecar was
replaced; as a journal exists from before a publish's first rename until after its last,
a read that passes saw one bundle, and one that fails is retried.

Locks are flocks on a hidden ``.<name>.lock`` beside the file, removed on release (a lock
file left by a killed holder is reused and removed by the next one).
"""
import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import threading
import time

from kerasnets.errors import PathError, UsageError, path_error

_TEMP = re.compile(r"^\.tmp-(\d+)-[0-9a-f]{8}-(.+)$")
# A writer locks its temp right after creating it; an unlocked temp this old whose pid is
# alive belongs to a dead writer whose pid was reused.
_STALE_S = 60.0
_POLL_S = 0.02
_held = threading.local()


def plain(o):
    """``json`` ``default=`` hook: numpy scalars become Python numbers, anything else its ``str``."""
    return o.item() if hasattr(o, "item") else str(o)


def _folder_of(path):
    return os.path.dirname(os.path.abspath(path))


def _make_folder(folder, path):
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:  # a file where the folder should be
        raise path_error(path, NotADirectoryError(errno.ENOTDIR, "not a folder"), "write") from None
    except OSError as e:
        raise path_error(path, e, "write") from e


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid):
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"  # a zombie holds no file
    except (OSError, IndexError):
        return True


def _write_temp(folder, target_name, data):
    """Create, lock, fill and fsync a temporary file for ``target_name``; returns (fd, path).

    Created with mode 0o666 like ``open()``, so the umask applies as it would to a plain file.
    """
    for _ in range(100):
        tmp = os.path.join(folder, f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{target_name}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(errno.EEXIST, "no free temporary name", tmp)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a file system without flock: the pid in the name still guards it
            pass
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return fd, tmp


def _journal_temps(folder, names):
    """Temporary files named by the journals among ``names`` (they must survive until settled)."""
    kept = set()
    for name in names:
        if name.startswith(".") and name.endswith(".journal") and not _TEMP.match(name):
            renames = _read_journal(os.path.join(folder, name)) or []
            kept.update(r["temp"] for r in renames)
    return kept


def _clean_temps(folder, targets):
    """Remove temporary files of ``targets`` (file names in ``folder``) left by dead writers."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    kept = _journal_temps(folder, names)
    for name in names:
        m = _TEMP.match(name)
        if not m or m.group(2) not in targets or name in kept:
            continue
        tmp = os.path.join(folder, name)
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while its writer holds it
            st = os.fstat(fd)
            if _alive(int(m.group(1))) and time.time() - st.st_mtime < _STALE_S:
                continue
            if os.stat(tmp).st_ino == st.st_ino:
                os.unlink(tmp)
        except OSError:
            continue
        finally:
            os.close(fd)


def atomic_write(path, content):
    """Write bytes or text to ``path`` through a temporary file in the same folder, fsync and a rename.

    The file gets the mode a plain ``open()`` would give (0o666 less the umask). The folder
    is created when missing; temporary files of ``path`` left by killed writers are removed;
    the temporary file is removed when anything fails, and an ``OSError`` becomes a
    :class:`~kerasnets.errors.PathError` naming ``path``.
    """
    data = content.encode() if isinstance(content, str) else content
    folder = _folder_of(path)
    _make_folder(folder, path)
    _clean_temps(folder, {os.path.basename(path)})
    try:
        fd, tmp = _write_temp(folder, os.path.basename(path), data)
    except OSError as e:
        raise path_error(path, e, "write") from e
    try:
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise path_error(path, e, "write") from e
        raise
    finally:
        os.close(fd)


def _journal_path(path):
    return os.path.join(_folder_of(path), f".{os.path.basename(path)}.journal")


def _lock_path(path):
    return os.path.join(_folder_of(path), f".{os.path.basename(path)}.lock")


def _read_journal(journal):
    """The renames of a journal: a list of {temp, target, inode, size}; None when unreadable."""
    try:
        with open(journal, "rb") as f:
            doc = json.loads(f.read())
        renames = doc["renames"]
        for r in renames:
            m = _TEMP.match(r["temp"]) if isinstance(r["temp"], str) else None
            if not (m and m.group(2) == r["target"] and isinstance(r["inode"], int) and isinstance(r["size"], int)
                    and os.sep not in r["temp"]):
                return None
        return renames
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _settle(path):
    """Complete or drop the journal of the bundle at ``path``; the caller holds its lock."""
    journal = _journal_path(path)
    if not os.path.lexists(journal):
        return
    folder = _folder_of(path)
    renames = _read_journal(journal) or []
    pending, lost = [], False
    for r in renames:
        tmp, target = os.path.join(folder, r["temp"]), os.path.join(folder, r["target"])
        if os.path.lexists(tmp):
            pending.append((tmp, target))
            continue
        try:
            st = os.stat(target)
            done = st.st_ino == r["inode"] and st.st_size == r["size"]
        except OSError:
            done = False
        lost = lost or not done
    try:
        for tmp, target in pending:
            if lost:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            else:
                os.replace(tmp, target)
        _fsync_folder(folder)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(journal)
        _fsync_folder(folder)
    except OSError as e:
        raise path_error(path, e, "write") from e


def _busy(path):
    err = PathError(f"another process is writing {str(path)!r}; wait for it to finish or write to another path.")
    err.errno = errno.EBUSY
    return err


def _acquire(path, timeout):
    """An fd holding the flock of ``path``'s lock file, polling up to ``timeout`` seconds."""
    name = _lock_path(path)
    deadline = time.monotonic() + max(0.0, float(timeout))
    while True:
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise path_error(path, e, "write") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() >= deadline:
                raise _busy(path) from None
            time.sleep(_POLL_S)
            continue
        except OSError as e:
            os.close(fd)
            raise path_error(path, e, "lock") from e
        # The previous holder removes the lock file on release: a lock taken on a removed
        # file guards nothing, so take the one now at that name instead.
        try:
            if os.stat(name).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def bundle_lock(path, timeout=0.0):
    """Hold the writer lock of the bundle at ``path`` (a flock; released at exit, or by the
    kernel when the process dies), waiting up to ``timeout`` seconds for another holder.

    Raises :class:`~kerasnets.errors.PathError` (errno ``EBUSY``) when another process (or
    thread) still holds it. Reentrant within a thread. On acquiring it, a journal left by a
    killed writer is settled (see the module docstring), so the holder finds a whole bundle.
    """
    folder = _folder_of(path)
    name = _lock_path(path)
    held = _held.__dict__.setdefault("locks", {})
    if name in held:
        held[name] += 1
        try:
            yield
        finally:
            held[name] -= 1
        return
    _make_folder(folder, path)
    fd = _acquire(path, timeout)
    held[name] = 1
    try:
        _settle(path)
        yield
    finally:
        del held[name]
        with contextlib.suppress(OSError):
            os.unlink(name)
        os.close(fd)


def write_bundle(path, content, sidecars=None, timeout=60.0):
    """Publish ``content`` at ``path`` and each ``{sidecar path: content}`` beside it as one unit.

    After a crash at any moment, :func:`read_bundle` sees either the whole previous bundle
    or the whole new one (see the module docstring). Takes :func:`bundle_lock` unless this
    thread holds it, waiting up to ``timeout`` seconds for another writer. Files get the
    mode a plain ``open()`` would give; an ``OSError`` becomes a
    :class:`~kerasnets.errors.PathError` naming the file.
    """
    folder = _folder_of(path)
    files = [(path, content)] + list((sidecars or {}).items())
    for target, data in files:
        if _folder_of(target) != folder:
            raise UsageError(f"sidecar {target!r} is not in the folder of {path!r}; keep a bundle in one folder.")
        if not isinstance(data, (bytes, bytearray, memoryview, str)):
            raise TypeError(f"content of {target!r} is {type(data).__name__}, not bytes or str")
    journal = _journal_path(path)
    with bundle_lock(path, timeout):
        temps, journal_written, current = [], False, path
        try:
            for target, _ in files:
                current = target
                if os.path.isdir(target):
                    raise IsADirectoryError(errno.EISDIR, "is a folder", target)
            for target, data in files:
                current = target
                name = os.path.basename(target)
                _clean_temps(folder, {name})
                temps.append(_write_temp(folder, name, data.encode() if isinstance(data, str) else data) + (target,))
            current = path
            renames = [{"temp": os.path.basename(tmp), "target": os.path.basename(target),
                        "inode": os.fstat(fd).st_ino, "size": os.fstat(fd).st_size} for fd, tmp, target in temps]
            _clean_temps(folder, {os.path.basename(journal)})
            fd, tmp = _write_temp(folder, os.path.basename(journal), json.dumps({"renames": renames}).encode())
            temps.append((fd, tmp, journal))
            journal_written = True  # from here on, a journal may exist
            os.replace(tmp, journal)
            _fsync_folder(folder)
            for _, tmp, target in temps[:-1]:
                current = target
                os.replace(tmp, target)
            _fsync_folder(folder)
            os.unlink(journal)
            _fsync_folder(folder)
        except BaseException as e:
            try:
                if journal_written:
                    _settle(path)  # complete what the journal names, or drop it
            except OSError:
                with contextlib.suppress(OSError):
                    os.unlink(journal)
            for _, tmp, _ in temps:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            if isinstance(e, OSError) and not isinstance(e, PathError):
                raise path_error(current, e, "write") from e
            raise
        finally:
            for fd, _, _ in temps:
                os.close(fd)


def _settled_for_reader(path, deadline):
    """Settle a journal found by a reader; False where the lock cannot be taken (read-only folder)."""
    try:
        if _lock_path(path) in _held.__dict__.get("locks", {}):
            _settle(path)
        else:
            with bundle_lock(path, max(0.0, deadline - time.monotonic())):
                pass
        return True
    except PathError as e:
        if e.errno == errno.EBUSY:
            raise
        return False


def _same_file(path, fd):
    """Whether ``path`` still names the file open as ``fd`` (absent: ``fd`` is None)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return fd is None
    if fd is None:
        return False
    own = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (own.st_ino, own.st_dev)


def read_bundle(path, sidecars=(), timeout=30.0):
    """The bytes of ``path`` and of each sidecar (None where missing), all of one published bundle.

    Settles a journal left by a killed writer first (taking the lock briefly); retries a
    read that overlapped a publish, for up to ``timeout`` seconds (then a
    :class:`~kerasnets.errors.PathError`, errno ``EBUSY``). Where the lock cannot be taken
    (a read-only folder), the files are read as they are. ``OSError`` of the reads propagate.
    """
    journal = _journal_path(path)
    deadline = time.monotonic() + timeout
    can_settle = True
    while True:
        if can_settle and os.path.lexists(journal):
            can_settle = _settled_for_reader(path, deadline)
        fds, side = [], []
        try:
            for s in sidecars:
                try:
                    fds.append(os.open(s, os.O_RDONLY | os.O_CLOEXEC))
                except FileNotFoundError:
                    fds.append(None)
                    side.append(None)
                    continue
                with os.fdopen(os.dup(fds[-1]), "rb") as f:
                    side.append(f.read())
            with open(path, "rb") as f:
                content = f.read()
            whole = not (can_settle and os.path.lexists(journal)) and all(
                _same_file(s, fd) for s, fd in zip(sidecars, fds))
        finally:
            for fd in fds:
                if fd is not None:
                    os.close(fd)
        if whole:
            return content, side
        if time.monotonic() >= deadline:
            raise _busy(path)
        time.sleep(_POLL_S)


def json_text(obj, indent=1, sort_keys=True, default=None):
    """``obj`` as the project writes JSON files: ``indent`` 1, sorted keys, a final newline."""
    return json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n"


def write_json(path, obj, indent=1, sort_keys=True, default=None):
    """Write ``obj`` as JSON (see :func:`json_text`) to ``path`` atomically."""
    atomic_write(path, json_text(obj, indent=indent, sort_keys=sort_keys, default=default))


def writing(path, write):
    """Run ``write()`` (any writer of ``path``: a plot, a Keras save...); an OSError (read-only,
    full disk...) becomes a one-sentence :class:`~kerasnets.errors.PathError` naming ``path``."""
    try:
        return write()
    except PathError:
        raise
    except OSError as e:
        raise path_error(path, e, "write") from None


def read_json_file(path, what, error, fix, label=None):
    """The JSON object in ``path``; one-sentence ``error`` (naming ``what`` and the path) when it is not
    valid JSON, not text, nested absurdly deep or not an object; a :class:`PathError` when unreadable.

    ``fix`` ends the sentence for a file that is not ``what`` at all (e.g. "pass a profile JSON file");
    ``label`` names the file in messages (default: the path, quoted).
    """
    label = label or repr(str(path))
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise error(f"{what} {label} is not valid JSON ({e.msg} at line {e.lineno}); fix the file.") from None
    except UnicodeDecodeError:
        raise error(f"{what} {label} is not a text file (not UTF-8), so not a {what} JSON; {fix}.") from None
    except RecursionError:
        raise error(f"{what} {label} nests too deeply to be a {what}; fix the file.") from None
    except OSError as e:
        raise path_error(path, e, "read") from None
    if not isinstance(data, dict):
        raise error(f"{what} {label} must be a JSON object, not {type(data).__name__}; fix the file.")
    return data
