"""kerasnets-run / pipelines.job: the end-to-end job on a small setting, killed and resumed, and its errors."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from kerasnets.backend import tf
from pipelines import job
from pipelines.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["--model=mobilenet_v2_035", "--input_size=32x32", "--train_subset=256", "--val_subset=200",
         "--epochs=1", "--batch_size=64", "--calibration_count=32", "--runs=5", "--verbose=0"]


def _cli(args, **kw):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
    return subprocess.run([sys.executable, "-m", "pipelines.cli.run"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, **kw)


def _check_run_folder(test, out, summary, expect_test_images):
    for key in ("float32", "int8", "partitioned"):
        test.assertGreaterEqual(summary["accuracy"][key], 0.0)
        test.assertLessEqual(summary["accuracy"][key], 1.0)
        test.assertGreater(summary["host_latency_ms"][key], 0.0)
        test.assertTrue(summary["verification"][key]["passed"])
    test.assertEqual(summary["test_images"], expect_test_images)
    from export import profiles
    keys = {e["profile"] for e in summary["estimate"].values()}
    test.assertEqual(keys, set(profiles.list_profiles()))
    for e in summary["estimate"].values():
        test.assertGreater(e["latency_ms"], 0)
        test.assertAlmostEqual(e["fps"], 1e3 / e["latency_ms"], places=3)
    part = summary["partition"]
    test.assertEqual((part["profile"], part["policy"]), ("edgetpu_usb", "float_head"))
    test.assertEqual([f["device"] for f in part["files"]], ["npu", "cpu"])
    for rel in [summary["artifacts"]["float32"], summary["artifacts"]["int8"]] + summary["artifacts"]["partitioned"]:
        test.assertTrue(os.path.isfile(os.path.join(out, rel)), rel)
        test.assertTrue(os.path.isfile(os.path.join(out, rel + ".manifest.json")), rel)
    for png in summary["plots"].values():
        with open(os.path.join(out, png), "rb") as f:
            test.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    with open(os.path.join(out, "report.md")) as f:
        report = f.read()
    test.assertIn("| int8 |", report)
    test.assertIn("edgetpu_usb", report)
    test.assertIn(f"{100 * summary['accuracy']['int8']:.2f}", report)
    test.assertFalse([n for n in os.listdir(out) if n.startswith(".tmp-")])


class EndToEndTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_fashion_mnist_ptq_killed_and_resumed(self):
        out = os.path.join(self.get_temp_dir(), "run")
        args = SMALL + ["--quantization=ptq", f"--out={out}"]
        env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli.run"] + args, cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        marker = os.path.join(out, "steps", "export.json")
        deadline = time.time() + 600
        while not os.path.exists(marker) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        self.assertIsNone(proc.poll(), "the job ended before it could be interrupted")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.assertFalse(os.path.exists(os.path.join(out, "summary.json")))

        done = _cli(args + ["--json"], timeout=900)
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        for step in ("train_float", "quantize", "export"):
            self.assertIn(f"{step}: done earlier, read back", done.stderr)
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        with open(os.path.join(out, "summary.json")) as f:
            self.assertEqual(json.load(f), summary)
        _check_run_folder(self, out, summary, 200)
        self.assertEqual(summary["quantization"], "ptq")

        # Same folder, other settings: refused with the field named, nothing touched.
        bad = _cli(SMALL + ["--quantization=ptq", "--epochs=3", f"--out={out}"])
        self.assertEqual(bad.returncode, 2)
        self.assertIn("epochs=1", bad.stderr)
        self.assertNotIn("Traceback", bad.stderr)

    @pytest.mark.slow
    def test_user_folder_with_qat(self):
        from PIL import Image  # matplotlib depends on Pillow
        folder = os.path.join(self.get_temp_dir(), "shapes")
        rng = np.random.default_rng(0)
        for cls in ("dark", "light"):
            os.makedirs(os.path.join(folder, cls))
            for i in range(80):
                base = 40 if cls == "dark" else 200
                pixels = np.clip(base + rng.normal(0, 20, (24, 24, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, cls, f"{i}.png"))
        out = os.path.join(self.get_temp_dir(), "qat_run")
        # 48 steps in all: a low learning rate and BatchNorm statistics that follow the last steps
        # (bn_momentum 0.5) learned the folder in 15 of 16 runs measured; at 0.1 / 0.9 and 3 epochs, 4 of 4
        # ended at chance with saturated outputs, whose int8 parts then flipped whole samples. Accuracy is
        # not asserted: 128 training images do not make it certain.
        config = job.JobConfig(model="mobilenet_v2_035", dataset=folder, input_size=(32, 32), epochs=6,
                               qat_epochs=1, batch_size=16, calibration_count=64, bench_runs=3, verbose=0,
                               learning_rate=0.01, overrides={"bn_momentum": 0.5})
        summary = job.run_job(config, out, log=lambda m: None)
        _check_run_folder(self, out, summary, 32)  # 20% of 160 images held out
        self.assertEqual(summary["quantization"], "qat")
        self.assertEqual(summary["training"]["quantize"]["method"], "qat")
        with open(os.path.join(out, summary["artifacts"]["int8"] + ".manifest.json")) as f:
            manifest = json.load(f)
        self.assertEqual(manifest["labels"], ["dark", "light"])
        self.assertEqual(manifest["quantization"], "qat")
        self.assertTrue(os.path.isfile(os.path.join(out, "qat", "final.weights.h5")))


class ErrorsTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_bad_flags_exit_2(self):
        for flag, words in (("--input_size=abc", "input_size"), ("--model=nope", "nope"),
                            ("--dataset=/no/such/folder", "/no/such/folder"), ("--profile=tpu9", "tpu9"),
                            ("--epochs=0", "epochs")):
            out = os.path.join(self.get_temp_dir(), str(abs(hash(flag))))
            res = _cli([flag, f"--out={out}"])
            self.assertEqual(res.returncode, 2, (flag, res.stderr[-2000:]))
            self.assertIn(words, res.stderr)
            self.assertNotIn("Traceback", res.stderr)
            self.assertFalse(os.path.exists(out), f"{flag} left {out} behind")

    def test_foreign_folder_refused(self):
        folder = self.get_temp_dir()
        with open(os.path.join(folder, "notes.txt"), "w") as f:
            f.write("mine")
        with self.assertRaisesRegex(ConfigError, "holds no kerasnets-run job"):
            job.run_job(job.JobConfig(), folder, restart=True)
        self.assertTrue(os.path.exists(os.path.join(folder, "notes.txt")))
