"""Artifact reliability: mutated files, kill -9 during export, concurrent writers, file modes,
manifest digests, and files that only fail when run.

The kill and concurrency tests drive writers in child processes forked from one helper
process (a "zygote" that imported TensorFlow once), so a kill costs a fork, not an import.
"""
import collections
import functools
import hashlib
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import unittest.mock

import numpy as np
import pytest

from ai_edge_litert import schema_py_generated as schema
from kerasnets.export import runtime, tflite
from kerasnets import io as kn_io
from kerasnets.backend import keras, tf
from kerasnets.errors import PathError

L = keras.layers
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIZE = 16


@functools.lru_cache(maxsize=None)
def _contents():
    """A tiny conv net as float32 and int8 TFLite bytes (converted once per process)."""
    x = keras.Input((SIZE, SIZE, 3))
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu")(y)
    y = L.Conv2D(8, 1)(y)
    y = L.GlobalAveragePooling2D()(y)
    y = L.Dense(10)(y)
    model = keras.Model(x, y)
    images = np.random.default_rng(0).uniform(-1, 1, (8, SIZE, SIZE, 3)).astype("float32")
    return {"float32": tflite.convert(model, "float32", deploy=False),
            "int8": tflite.convert(model, "int8", representative_data=images, calibration_count=8, deploy=False)}


def _weight_span(content):
    """(start, length) of the largest constant buffer's bytes in a TFLite file."""
    model = schema.Model.GetRootAs(content, 0)
    best = (0, 0)
    for i in range(model.BuffersLength()):
        buf = model.Buffers(i)
        if buf.DataLength() > best[1]:
            best = (buf._tab.Vector(4), buf.DataLength())  # noqa: SLF001 (the data's offset in the file)
    return best


def _variants(n):
    """``n`` distinct valid float32 models: the low mantissa byte of one weight set to 0..n-1."""
    content = _contents()["float32"]
    start, _ = _weight_span(content)
    out = []
    for k in range(n):
        data = bytearray(content)
        data[start] = k
        out.append(bytes(data))
    return out


def _run(interpreter, rng):
    for d in interpreter.get_input_details():
        if np.issubdtype(d["dtype"], np.integer):
            info = np.iinfo(d["dtype"])
            x = rng.integers(info.min, info.max + 1, size=d["shape"]).astype(d["dtype"])
        else:
            x = rng.standard_normal(d["shape"]).astype(d["dtype"])
        interpreter.set_tensor(d["index"], x)
    interpreter.invoke()


def _mutate(rng, content):
    """One random mutation of ``content``: (kind, mutated bytes), never equal to ``content``."""
    while True:
        data = bytearray(content)
        kind = ("flip", "overwrite", "truncate", "insert")[int(rng.integers(4))]
        if kind == "flip":
            for _ in range(int(rng.integers(1, 9))):
                data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        elif kind == "overwrite":
            pos, n = int(rng.integers(len(data))), int(rng.integers(1, 17))
            data[pos:pos + n] = rng.integers(0, 256, size=len(data[pos:pos + n]), dtype=np.uint8).tobytes()
        elif kind == "truncate":
            data = data[:int(rng.integers(len(data)))]
        else:
            pos = int(rng.integers(len(data) + 1))
            data[pos:pos] = rng.integers(0, 256, size=int(rng.integers(1, 17)), dtype=np.uint8).tobytes()
        if bytes(data) != content:
            return kind, bytes(data)


class MutatedFilesTest(unittest.TestCase):
    """Every mutated file is refused with ArtifactError or loads and runs; with its manifest
    beside it, every mutation is refused by the digest check."""

    def _fuzz(self, count, seed):
        rng = np.random.default_rng(seed)
        folder = tempfile.mkdtemp()
        counts = collections.Counter()
        start = time.perf_counter()
        for mode, content in sorted(_contents().items()):
            signed = os.path.join(folder, f"signed_{mode}.tflite")
            tflite.write_artifact(signed, content, "tiny", mode, command="fuzz")
            for i in range(count // 2):
                kind, data = _mutate(rng, content)
                bare = os.path.join(folder, "bare.tflite")  # no manifest: the file checks and the trial run decide
                with open(bare, "wb") as f:
                    f.write(data)
                try:
                    _run(runtime.load_interpreter(bare), rng)
                    counts["ran"] += 1
                except runtime.ArtifactError as e:
                    self.assertRegex(str(e), r"(re-export it|written by the TFLite converter)\.$")
                    counts["refused by trial run" if "cannot be run by LiteRT" in str(e) else
                           "refused by file checks"] += 1
                    counts["(of which at the trial invoke)"] += "while a trial run on zeros" in str(e)
                counts[kind] += 1
                with open(signed, "wb") as f:  # the model changed behind its manifest
                    f.write(data)
                with self.assertRaisesRegex(runtime.ArtifactError, "does not match its manifest"):
                    runtime.load_interpreter(signed)
                counts["refused by digest"] += 1
        seconds = time.perf_counter() - start
        self.assertEqual(counts["ran"] + counts["refused by trial run"] + counts["refused by file checks"],
                         2 * (count // 2))
        self.assertEqual(counts["refused by digest"], 2 * (count // 2))
        print(f"\n{2 * (count // 2)} mutations in {seconds:.1f} s: {dict(sorted(counts.items()))}")
        return counts

    def test_fuzz_fast(self):
        self._fuzz(50, seed=0)

    @pytest.mark.slow
    def test_fuzz_full(self):
        self._fuzz(1000, seed=1)


class ManifestTest(unittest.TestCase):

    def setUp(self):
        self.folder = tempfile.mkdtemp()
        self.path = os.path.join(self.folder, "m.tflite")
        self.content = _contents()["float32"]
        self.manifest = tflite.write_artifact(self.path, self.content, "tiny", "float32", command="test")

    def test_flipped_weight_bytes_are_refused_naming_both_digests(self):
        start, length = _weight_span(self.content)
        data = bytearray(self.content)
        for pos in np.random.default_rng(0).choice(length, size=min(286, length), replace=False):
            data[start + int(pos)] ^= 0x01
        with open(self.path, "wb") as f:
            f.write(data)
        actual = hashlib.sha256(bytes(data)).hexdigest()
        with self.assertRaises(runtime.ArtifactError) as caught:
            runtime.load_interpreter(self.path)
        message = str(caught.exception)
        self.assertIn(actual, message)
        self.assertIn(self.manifest["sha256"], message)
        self.assertIn("re-export", message)
        self.assertEqual(message.count(". "), 0, message)  # one sentence
        _run(runtime.load_interpreter(self.path, check_manifest=False), np.random.default_rng(0))
        with self.assertRaises(runtime.ArtifactError):
            runtime.benchmark(self.path, runs=1, warmup=0)

    def test_bad_manifests_are_refused_and_files_without_one_load(self):
        with open(tflite.manifest_path(self.path), "w") as f:
            f.write("{not json")
        with self.assertRaisesRegex(runtime.ArtifactError, r"manifest .* is not valid JSON; re-export"):
            runtime.read_tflite(self.path, probe=False)
        with open(tflite.manifest_path(self.path), "w") as f:
            json.dump({"model": "tiny"}, f)
        with self.assertRaisesRegex(runtime.ArtifactError, "records no sha256"):
            runtime.read_tflite(self.path, probe=False)
        self.assertEqual(runtime.read_tflite(self.path, check_manifest=False), self.content)
        os.unlink(tflite.manifest_path(self.path))
        self.assertEqual(runtime.read_tflite(self.path), self.content)  # a part or a user's file: no manifest
        self.assertEqual(runtime.manifest_path(self.path), tflite.manifest_path(self.path))

    def test_unwritable_paths_give_one_path_error(self):
        blocker = os.path.join(self.folder, "file")
        with open(blocker, "w") as f:
            f.write("x")
        cases = {os.path.join(blocker, "a.tflite"): "a part of it is a file",
                 os.path.join(blocker, "sub", "a.tflite"): "a part of it is a file",
                 self.folder: "it is a folder"}
        for path, words in cases.items():
            for write in (lambda p: kn_io.atomic_write(p, b"x"),
                          lambda p: tflite.write_artifact(p, self.content, "tiny", "float32", command="t")):
                with self.assertRaisesRegex(PathError, words, msg=path):
                    write(path)
        os.mkdir(tflite.manifest_path(os.path.join(self.folder, "d.tflite")))
        with self.assertRaisesRegex(PathError, "it is a folder"):
            tflite.write_artifact(os.path.join(self.folder, "d.tflite"), self.content, "tiny", "float32", command="t")
        self.assertFalse(os.path.exists(os.path.join(self.folder, "d.tflite")))  # nothing published alone
        self.assertEqual(sorted(n for n in os.listdir(self.folder) if n.startswith(".")), [])


class FileModeTest(unittest.TestCase):

    def test_modes_follow_the_umask(self):
        folder = tempfile.mkdtemp()
        for umask, mode in ((0o022, 0o644), (0o077, 0o600), (0o002, 0o664)):
            old = os.umask(umask)
            try:
                path = os.path.join(folder, f"m{umask:o}.tflite")
                tflite.write_artifact(path, _contents()["int8"], "tiny", "int8", command="t")
                kn_io.atomic_write(path + ".txt", "x")
            finally:
                os.umask(old)
            for p in (path, tflite.manifest_path(path), path + ".txt"):
                self.assertEqual(os.stat(p).st_mode & 0o777, mode, (p, oct(umask)))


class TrialRunTest(unittest.TestCase):

    def test_a_file_that_passes_the_checks_but_fails_at_invoke_is_refused(self):
        x = keras.Input((4, 4, 3))
        y = L.Lambda(lambda t: tf.gather(t, [0, 2], axis=-1))(L.Conv2D(3, 1)(x))
        content = tflite.convert(keras.Model(x, y), "float32", deploy=False)
        model = schema.Model.GetRootAs(content, 0)
        sub = model.Subgraphs(0)
        data = bytearray(content)
        for k in range(sub.OperatorsLength()):
            op = sub.Operators(k)
            code = model.OperatorCodes(op.OpcodeIndex())
            if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) == schema.BuiltinOperator.GATHER:
                buf = model.Buffers(sub.Tensors(op.Inputs(1)).Buffer())
                start = buf._tab.Vector(4)  # noqa: SLF001
                data[start + 4:start + 8] = np.int32(99).tobytes()  # gather index 2 -> 99 (of 3 channels)
        self.assertNotEqual(bytes(data), content)
        self.assertEqual(runtime.read_tflite(bytes(data), probe=False), bytes(data))  # the file checks pass
        interpreter = runtime.load_interpreter(bytes(data), probe=False)  # and so does loading
        with self.assertRaises(RuntimeError):
            interpreter.invoke()
        with self.assertRaises(runtime.ArtifactError) as caught:
            runtime.read_tflite(bytes(data))
        message = str(caught.exception)
        self.assertIn("trial run on zeros: GATHER failed to invoke", message)
        self.assertLess(len(message), 200)
        self.assertNotIn("\n", message)


    def test_a_model_xnnpack_refuses_runs_on_the_builtin_kernels(self):
        # XNNPACK may refuse to prepare an int8 graph whose ranges collapsed (a barely trained model);
        # the model still runs on LiteRT's builtin kernels, which make_interpreter falls back to.
        content = _contents()["int8"]
        real = runtime.Interpreter
        created = []

        def refusing(*args, **kwargs):
            created.append(kwargs.get("experimental_op_resolver_type"))
            interpreter = real(*args, **kwargs)
            if kwargs.get("experimental_op_resolver_type") is None:
                def fail():
                    raise RuntimeError("failed to create XNNPACK runtime; Node number 3 (TfLiteXNNPackDelegate) "
                                       "failed to prepare.")
                interpreter.allocate_tensors = fail
            return interpreter
        with unittest.mock.patch.object(runtime, "Interpreter", refusing), self.assertLogs("kerasnets", "WARNING"):
            interpreter = runtime.load_interpreter(content, probe=False)
        self.assertEqual(created, [None, runtime.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES])
        _run(interpreter, np.random.default_rng(0))
        self.assertEqual(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).shape, (1, 10))
        # Timings say which kernels they describe (the host_cpu profiles model XNNPACK's).
        self.assertEqual(runtime.kernels_of(interpreter), "builtin")
        self.assertEqual(runtime.kernels_of(runtime.load_interpreter(content, probe=False)), "xnnpack")
        with unittest.mock.patch.object(runtime, "Interpreter", refusing), self.assertLogs("kerasnets", "WARNING"):
            timed = runtime.compare({"int8": content}, runs=2, warmup=0)
        self.assertEqual(timed["int8"]["kernels"], "builtin")

# The zygote: imports the library once, then for each JSON command on stdin forks a child that
# runs it, prints "pid N", waits for the child and prints "reaped N STATUS". Children print
# "child ..." lines. os.replace sleeps up to "pause" s after each rename, so kills land between
# the renames of a publish; with "stop_in_window" the child stops after the model's rename.
_ZYGOTE = r"""
import json, os, random, sys, time, traceback
from kerasnets.export import tflite
real_replace = os.replace
setting = {}
def say(line):  # one write per line: the zygote and its child share the pipe
    os.write(1, (line + "\n").encode())
def replace(a, b):
    real_replace(a, b)
    if setting.get("stop_in_window") and b.endswith(".tflite"):
        say("child window")
        time.sleep(60)
    time.sleep(random.uniform(0, setting.get("pause", 0)))
os.replace = replace
say("ready")
for line in sys.stdin:
    cmd = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            setting.update(cmd)
            random.seed(cmd.get("seed", 0))
            variants = [open(v, "rb").read() for v in cmd.get("variants", [])]
            if cmd["op"] == "hold":
                with tflite.artifact_lock(cmd["path"]):
                    say("child held")
                    time.sleep(cmd["seconds"])
            elif cmd["op"] == "loop":
                end, i = time.monotonic() + cmd.get("seconds", 1e9), 0
                while time.monotonic() < end:
                    tflite.write_artifact(cmd["path"], variants[i % len(variants)], "tiny", "float32",
                                          extra={"seq": i}, command="loop")
                    i += 1
                say(f"child wrote {i}")
        except BaseException:
            say("child error " + json.dumps(traceback.format_exc()))
            os._exit(3)
        os._exit(0)
    say(f"pid {pid}")
    _, status = os.waitpid(pid, 0)
    say(f"reaped {pid} {status}")
"""


class _Zygote:
    """The zygote process and its output lines (read by a thread, so waits can time out)."""

    def __init__(self):
        env = dict(os.environ, PYTHONPATH=ROOT, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.expect("ready", timeout=120)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("eof")

    def expect(self, prefix, timeout=60):
        """The next line starting with ``prefix``; a child's error fails at once."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {prefix!r} line from the zygote within {timeout} s") from None
            if line.startswith("child error") or line == "eof":
                raise AssertionError(f"zygote: {line}")
            if line.startswith(prefix):
                return line

    def start(self, **cmd):
        """Fork a child running ``cmd``; returns its pid."""
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return int(self.expect("pid ").split()[1])

    def reaped(self, timeout=60):
        """The wait status of the last child."""
        return int(self.expect("reaped ", timeout).split()[2])

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_zygote = []


def zygote():
    if not _zygote:
        _zygote.append(_Zygote())
    return _zygote[0]


def tearDownModule():
    if _zygote:
        _zygote.pop().close()


def _files(folder):
    return sorted(os.listdir(folder))


class KillTest(unittest.TestCase):
    """kill -9 of a writer at random moments: the target is never partial, the loader never sees
    a model beside another model's manifest, and the next write leaves no temporary file."""

    def _kill_loop(self, kills, seed):
        folder = tempfile.mkdtemp()
        variants = _variants(6)
        known = {hashlib.sha256(v).hexdigest(): v for v in variants}
        names = []
        for k, v in enumerate(variants):
            names.append(os.path.join(folder, f"variant{k}.bin"))
            with open(names[-1], "wb") as f:
                f.write(v)
        os.makedirs(os.path.join(folder, "out"))
        path = os.path.join(folder, "out", "m.tflite")
        rng = np.random.default_rng(seed)
        z = zygote()
        seen = collections.Counter()
        start = time.perf_counter()
        tflite.write_artifact(path, variants[-1], "tiny", "float32", command="first")  # an old pair to replace
        for i in range(kills):
            in_window = i % 10 in (0, 3)  # between the renames of model and manifest; a reader, then a writer settles
            pid = z.start(op="loop", path=path, variants=names, seed=int(rng.integers(1 << 30)),
                          pause=0.004, stop_in_window=in_window)
            if in_window:
                z.expect("child window")
            else:
                time.sleep(float(rng.uniform(0.0, 0.15)))
            os.kill(pid, signal.SIGKILL)
            status = z.reaped()
            self.assertTrue(os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status)
            seen["kills"] += 1
            # What the kill left, before the library touches it.
            raw = os.listdir(os.path.dirname(path))
            journal = f".{os.path.basename(path)}.journal" in raw
            seen["journal left (killed mid-publish)"] += journal
            seen["temporary files left"] += sum(n.startswith(".tmp-") for n in raw)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            self.assertIn(digest, known)  # the target is never partial
            with open(tflite.manifest_path(path)) as f:
                out_of_step = json.load(f)["sha256"] != digest  # nor is its manifest
            seen["raw pair out of step"] += out_of_step
            self.assertTrue(journal or not out_of_step)  # only ever mid-publish, with its journal
            # Half of the time a reader comes first, else the next writer: both settle the publish.
            if i % 2 == 0:
                content = runtime.read_tflite(path, probe=False)  # raises on a model/manifest mismatch
                with open(tflite.manifest_path(path)) as f:
                    self.assertEqual(json.load(f)["sha256"], hashlib.sha256(content).hexdigest())
            tflite.write_artifact(path, variants[i % len(variants)], "tiny", "float32", command="next")
            self.assertEqual(_files(os.path.dirname(path)), ["m.tflite", "m.tflite.manifest.json"])
            self.assertEqual(runtime.read_tflite(path, probe=False), variants[i % len(variants)])
        seen["seconds"] = round(time.perf_counter() - start, 1)
        self.assertGreaterEqual(seen["journal left (killed mid-publish)"], 1)
        self.assertGreaterEqual(seen["raw pair out of step"], 1)  # what a reader would see without the journal
        print(f"\n{dict(seen)}")
        return seen

    def test_kill_during_export_fast(self):
        self._kill_loop(5, seed=0)

    @pytest.mark.slow
    def test_kill_during_export_full(self):
        self._kill_loop(30, seed=1)


class ConcurrentWritersTest(unittest.TestCase):

    def setUp(self):
        self.folder = tempfile.mkdtemp()
        self.path = os.path.join(self.folder, "m.tflite")
        self.variants = _variants(8)
        self.names = []
        for k, v in enumerate(self.variants):
            self.names.append(os.path.join(self.folder, f"variant{k}.bin"))
            with open(self.names[-1], "wb") as f:
                f.write(v)

    def test_a_second_export_is_refused_or_waits(self):
        z = zygote()
        z.start(op="hold", path=self.path, seconds=1.5)
        z.expect("child held")
        with self.assertRaisesRegex(tflite.ExportError, r"another process is writing the artifact .*m\.tflite'; "
                                                        "wait for it to finish or export to another path"):
            with tflite.artifact_lock(self.path, timeout=0):
                pass
        with self.assertRaisesRegex(tflite.ExportError, "another process is writing the artifact"):
            tflite.write_artifact(self.path, self.variants[0], "tiny", "float32", command="t", lock_timeout=0.1)
        start = time.monotonic()
        tflite.write_artifact(self.path, self.variants[1], "tiny", "float32", command="t")  # waits its turn
        self.assertGreater(time.monotonic() - start, 0.5)
        self.assertEqual(z.reaped(), 0)
        self.assertEqual(runtime.read_tflite(self.path, probe=False), self.variants[1])
        # A lock held across a whole export: inside it write_artifact uses it; another thread is refused.
        with tflite.artifact_lock(self.path):
            tflite.write_artifact(self.path, self.variants[2], "tiny", "float32", command="t")
            errors = []
            thread = threading.Thread(target=lambda: errors.append(self._try_lock()))
            thread.start()
            thread.join()
            self.assertIsInstance(errors[0], tflite.ExportError)
        self.assertEqual(_files(self.folder), sorted(["m.tflite", "m.tflite.manifest.json"] +
                                                     [os.path.basename(n) for n in self.names]))

    def _try_lock(self):
        try:
            with tflite.artifact_lock(self.path, timeout=0):
                return None
        except tflite.ExportError as e:
            return e

    def test_interleaved_writers_and_readers_always_see_whole_pairs(self):
        z = zygote()
        z.start(op="loop", path=self.path, variants=self.names[:4], seconds=2.0, pause=0.002)
        reads = writes = 0
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            tflite.write_artifact(self.path, self.variants[4 + writes % 4], "tiny", "float32", command="parent")
            writes += 1
            for _ in range(3):
                content = runtime.read_tflite(self.path, probe=False)  # raises on a model/manifest mismatch
                self.assertIn(content, self.variants)
                reads += 1
        child = int(z.expect("child wrote ").split()[2])
        self.assertEqual(z.reaped(), 0)
        self.assertGreater(child, 0)
        print(f"\nchild wrote {child}, parent wrote {writes} and read {reads} whole pairs")
        self.assertEqual([n for n in _files(self.folder) if n.startswith(".")], [])


class StaleTemporaryFilesTest(unittest.TestCase):

    def test_dead_writers_temporaries_are_removed_live_ones_kept(self):
        folder = tempfile.mkdtemp()
        path = os.path.join(folder, "a.json")
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
        stale = os.path.join(folder, f".tmp-{dead}-0123abcd-a.json")
        other = os.path.join(folder, f".tmp-{dead}-0123abcd-b.json")  # another target's: not this write's
        live = os.path.join(folder, f".tmp-{os.getpid()}-4567abcd-a.json")
        for p in (stale, other, live):
            with open(p, "w") as f:
                f.write("half")
        kn_io.atomic_write(path, "{}")
        self.assertEqual(_files(folder), sorted([os.path.basename(other), os.path.basename(live), "a.json"]))


if __name__ == "__main__":
    unittest.main()
