"""kerasnets.pipelines.train: fit, schedule, EMA, checkpoints, resume (with a real kill), distribution."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from kerasnets.backend import tf
from kerasnets.pipelines import data, train
from kerasnets.pipelines.errors import CheckpointError, ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_train_child.py")


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    env.update(extra)
    return env


def _result(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT "):])


class ScheduleAndConfigTest(tf.test.TestCase):

    def test_warmup_cosine(self):
        s = train.WarmupCosine(1.0, total_steps=110, warmup_steps=10)
        self.assertAllClose([float(s(0)), float(s(9)), float(s(10)), float(s(60)), float(s(110))],
                            [0.1, 1.0, 1.0, 0.5, 0.0], atol=1e-6)
        self.assertEqual(train.WarmupCosine(**s.get_config()).get_config(), s.get_config())

    def test_bad_config(self):
        for kwargs, msg in (({"optimizer": "rmsprop"}, "optimizer"), ({"strategy": "tpu"}, "strategy"),
                            ({"label_smoothing": 1.5}, "label_smoothing"), ({"epochs": 0}, "epochs")):
            with self.assertRaisesRegex(ConfigError, msg):
                train.TrainConfig(**kwargs).check()
        old = os.environ.pop("TF_CONFIG", None)
        try:
            with self.assertRaisesRegex(ConfigError, "TF_CONFIG"):
                train.make_strategy("multi_worker")
        finally:
            if old is not None:
                os.environ["TF_CONFIG"] = old


class FitTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_fit_resume_ema_and_foreign_checkpoint(self):
        tr = data.load_fashion_mnist("train").take(64, seed=0)
        va = data.load_fashion_mnist("test").take(32)
        out = self.get_temp_dir()
        cfg = train.TrainConfig(model="mobilenet_v2_035", epochs=1, batch_size=16, verbose=0, ema_decay=0.9,
                                optimizer="adamw", learning_rate=1e-3)
        first = train.fit(cfg, tr, va, out)
        self.assertEqual([h["epoch"] for h in first.history], [1])
        for name in ("state.json", "normalization.json", "final.weights.h5", "metrics.json", "logs"):
            self.assertTrue(os.path.exists(os.path.join(out, name)), name)
        with self.assertRaisesRegex(CheckpointError, "resume"):
            train.fit(cfg, tr, va, out)
        cfg.epochs = 2
        second = train.fit(cfg, tr, va, out, resume=True)
        self.assertEqual(second.resumed_from, 1)
        self.assertEqual([h["epoch"] for h in second.history], [1, 2])
        self.assertIn("val_accuracy", second.metrics)
        other = train.TrainConfig(model="mobilenet_v2_050", epochs=3, batch_size=16, verbose=0)
        with self.assertRaisesRegex(CheckpointError, "belongs to model 'mobilenet_v2_035'"):
            train.fit(other, tr, va, out, resume=True)
        with self.assertRaisesRegex(Exception, "labels span"):
            bad = data.DataSplit(tr.images, tr.labels, tr.class_names[:5], "x")
            train.fit(cfg, bad, None, self.get_temp_dir())


class DistributionTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_mirrored_over_two_logical_cpus(self):
        out = self.get_temp_dir()
        proc = subprocess.run([sys.executable, CHILD, "mirrored", out, "2"], capture_output=True, text=True,
                              env=_env(), timeout=400)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        result = _result(proc.stdout)
        self.assertEqual(result["replicas"], 2)
        self.assertTrue(np.isfinite(result["val_loss"]))

    def _two_workers(self, out, timeout):
        """Run the two-worker child on fresh local ports: ``(procs, outputs)``, or None when it hangs (both
        workers are then killed, not left behind)."""
        ports = []
        for _ in range(2):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                ports.append(s.getsockname()[1])
        cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
        procs = [subprocess.Popen([sys.executable, CHILD, "multi_worker", out], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env=_env(TF_CONFIG=json.dumps({"cluster": cluster,
                                                                 "task": {"type": "worker", "index": i}})))
                 for i in range(2)]
        try:
            return procs, [p.communicate(timeout=timeout) for p in procs]
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
                p.communicate()
            return None

    @pytest.mark.slow
    def test_multi_worker_two_local_processes(self):
        # Alone it takes about 55 s. Once in CI (2026-12-03) both workers hung, alive and silent, until the
        # 500 s timeout, and were left running; a hang is now killed and the pair started once more on
        # fresh ports, so a second hang still fails the test.
        for attempt in range(2):
            out = os.path.join(self.get_temp_dir(), f"attempt{attempt}")
            ran = self._two_workers(out, timeout=300)
            if ran is not None:
                break
        self.assertIsNotNone(ran, "the two workers hung twice (300 s each)")
        procs, outputs = ran
        for p, (stdout, stderr) in zip(procs, outputs):
            self.assertEqual(p.returncode, 0, stderr[-3000:])
        results = [_result(stdout) for stdout, _ in outputs]
        self.assertEqual([r["replicas"] for r in results], [2, 2])
        self.assertAllClose(results[0]["val_loss"], results[1]["val_loss"], atol=1e-5)  # one model, in sync
        self.assertTrue(os.path.exists(os.path.join(out, "state.json")))  # the chief wrote the checkpoint
        self.assertFalse(os.path.exists(os.path.join(out, ".worker-1")))


class KillAndResumeTest(tf.test.TestCase):

    def _cmd(self, out, extra=()):
        return [sys.executable, "-m", "kerasnets.pipelines.cli.train", "--model=mobilenet_v2_035", "--train_subset=256",
                "--val_subset=64", "--epochs=3", "--batch_size=8", "--verbose=0", "--noaugment",
                "--label_smoothing=0", "--learning_rate=0.01", f"--output_dir={out}", "--json", *extra]

    @pytest.mark.slow
    def test_killed_run_resumes_to_the_same_result(self):
        killed = os.path.join(self.get_temp_dir(), "killed")
        proc = subprocess.Popen(self._cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=_env(), cwd=ROOT)
        state_path = os.path.join(killed, "state.json")
        deadline = time.time() + 400
        while time.time() < deadline and proc.poll() is None:
            if os.path.exists(state_path):
                with open(state_path) as f:
                    if json.load(f)["epoch"] >= 1:
                        break
            time.sleep(0.2)
        time.sleep(1.0)  # into epoch 2
        self.assertIsNone(proc.poll(), "the run ended before it could be killed")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with open(state_path) as f:
            epoch_at_kill = json.load(f)["epoch"]
        self.assertLess(epoch_at_kill, 3)
        resumed = subprocess.run(self._cmd(killed, ["--resume"]), capture_output=True, text=True, env=_env(),
                                 cwd=ROOT, timeout=400)
        self.assertEqual(resumed.returncode, 0, resumed.stderr[-3000:])
        after = json.loads(resumed.stdout.strip().splitlines()[-1])
        self.assertEqual(after["resumed_from_epoch"], epoch_at_kill)
        fresh = subprocess.run(self._cmd(os.path.join(self.get_temp_dir(), "fresh")), capture_output=True,
                               text=True, env=_env(), cwd=ROOT, timeout=400)
        self.assertEqual(fresh.returncode, 0, fresh.stderr[-3000:])
        base = json.loads(fresh.stdout.strip().splitlines()[-1])
        self.assertEqual(after["epochs"], base["epochs"])
        # Same batches in the same order; only dropout's random stream differs after the restart.
        self.assertAllClose(after["val_loss"], base["val_loss"], atol=0.25)
        self.assertAllClose(after["val_accuracy"], base["val_accuracy"], atol=0.15)
