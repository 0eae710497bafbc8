"""kerasnets-run / pipelines.job: the end-to-end job on a small setting, killed and resumed, and its errors."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from kerasnets.backend import tf
from kerasnets.pipelines import job
from kerasnets.pipelines.errors import ConfigError
from tests.helpers import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SMALL = ["--model=mobilenet_v2_035", "--input_size=32x32", "--train_subset=256", "--val_subset=200",
         "--epochs=1", "--batch_size=64", "--calibration_count=32", "--runs=5", "--verbose=0"]


def _check_run_folder(test, out, summary, expect_test_images, int8_margin=None, partitioned_margin=None):
    """The run folder and its summary. Accuracy, on the test split (chance: 1 / classes):

    - float32 TFLite top-1 equals Keras float top-1 on the same images, but for near-ties (the
      artifact is the Keras model converted; at most 2 images);
    - with ``int8_margin``, int8 top-1 within that of float32 (quantization kept what was learned);
    - with ``partitioned_margin``, the partitioned pair within that of int8 (its NPU part is int8).
    """
    acc, n = summary["accuracy"], summary["test_images"]
    test.assertEqual(n, expect_test_images)
    for key in ("float32", "int8", "partitioned"):
        test.assertGreaterEqual(acc[key], 0.0)
        test.assertLessEqual(acc[key], 1.0)
        test.assertAlmostEqual(acc[key] * n, round(acc[key] * n), places=6, msg=key)  # a share of n images
        test.assertGreater(summary["host_latency_ms"][key], 0.0)
        check = summary["verification"][key]
        test.assertTrue(check["passed"], check)
        test.assertEqual(check["samples"], min(64, n))
    test.assertAlmostEqual(acc["float32"], summary["accuracy_keras_float"], delta=2.5 / n)
    if int8_margin is not None:
        test.assertAlmostEqual(acc["int8"], acc["float32"], delta=int8_margin, msg=acc)
    if partitioned_margin is not None:
        test.assertAlmostEqual(acc["partitioned"], acc["int8"], delta=partitioned_margin, msg=acc)
    from kerasnets.export import profiles
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
    with open(os.path.join(out, "summary.json")) as f:
        test.assertEqual(json.load(f)["accuracy"], acc)
    with open(os.path.join(out, "report.md")) as f:
        report = f.read()
    test.assertIn("edgetpu_usb", report)
    for key in ("float32", "int8", "partitioned"):  # every figure, in its row
        test.assertIn(f"| {key} | {100 * acc[key]:.2f} |", report)
    test.assertIn(f"Keras float top-1: {100 * summary['accuracy_keras_float']:.2f}", report)
    for key, check in summary["verification"].items():
        test.assertRegex(report, rf"\| {re.escape(key)} \| {check['samples']} \|.*\| yes \|")
    test.assertFalse([n for n in os.listdir(out) if n.startswith(".tmp-")])


class EndToEndTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_fashion_mnist_ptq_killed_and_resumed(self):
        out = os.path.join(self.get_temp_dir(), "run")
        args = SMALL + ["--quantization=ptq", f"--out={out}"]
        # A subprocess on purpose: the first run is killed (SIGKILL) halfway, which needs a process of its own.
        env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", TF_USE_LEGACY_KERAS="1")
        proc = subprocess.Popen([sys.executable, "-m", "kerasnets.pipelines.cli.run"] + args, cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        marker = os.path.join(out, "steps", "export.json")
        deadline = time.time() + 600
        while not os.path.exists(marker) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        self.assertIsNone(proc.poll(), "the job ended before it could be interrupted")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.assertFalse(os.path.exists(os.path.join(out, "summary.json")))

        # The resumed run and the refusal run in this process (run_cli): they read the folder the killed
        # process left, and need no process of their own.
        done = run_cli("kerasnets.pipelines.cli.run", *args, "--json")
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        for step in ("train_float", "quantize", "export"):
            self.assertIn(f"{step}: done earlier, read back", done.stderr)
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        with open(os.path.join(out, "summary.json")) as f:
            self.assertEqual(json.load(f), summary)
        # No accuracy floor here: 4 steps on 256 images learn nothing (measured: float32 top-1 0.08 of 200, chance
        # 0.10, val loss 2.3027 = ln 10; 3 epochs, bn_momentum 0.5, learning rates 0.05-0.2 or batch 16-32 stay
        # at 0.05-0.15). What holds at any training level is checked: float32 artifact = Keras, verification.
        _check_run_folder(self, out, summary, 200)
        self.assertEqual(summary["quantization"], "ptq")

        # Same folder, other settings: refused with the field named, nothing touched.
        bad = run_cli("kerasnets.pipelines.cli.run", *SMALL, "--quantization=ptq", "--epochs=3", f"--out={out}")
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
        # ended at chance with saturated outputs, whose int8 parts then flipped whole samples. So no floor on
        # float accuracy (runs are not bit-reproducible on CPU even at seed 0), but when the float model
        # learned, int8 and the partitioned pair must keep it (chance 0.5; a margin of 0.2 is 6 images).
        # 48x48, not 32x32: at 32 the last stage runs at 1x1, its BatchNorm statistics come from 16 values a
        # channel, and the int8 artifact's difference from the Keras QAT model grew from 1-3 quantization steps
        # in the first layers to 27 at the first 1x1 one (measured layer by layer); a CI run failed the job's
        # own int8 verification that way (69% of samples within 0.25). At 48, 9 runs: float32 learned in all,
        # mean |int8 - QAT| 0.005-0.012, worst sample 0.064 (at 32, with the same calibrated ranges: 0.005-0.053,
        # worst 0.177).
        config = job.JobConfig(model="mobilenet_v2_035", dataset=folder, input_size=(48, 48), epochs=6,
                               qat_epochs=1, batch_size=16, calibration_count=64, bench_runs=3, verbose=0,
                               learning_rate=0.01, overrides={"bn_momentum": 0.5})
        summary = job.run_job(config, out, log=lambda m: None, calibrate_host=False)
        learned = summary["accuracy"]["float32"] >= 0.75
        _check_run_folder(self, out, summary, 32,  # 20% of 160 images held out
                          int8_margin=0.2 if learned else None, partitioned_margin=0.2 if learned else None)
        self.assertEqual(summary["quantization"], "qat")
        self.assertEqual(summary["training"]["quantize"]["method"], "qat")
        with open(os.path.join(out, summary["artifacts"]["int8"] + ".manifest.json")) as f:
            manifest = json.load(f)
        self.assertEqual(manifest["labels"], ["dark", "light"])
        self.assertEqual(manifest["quantization"], "qat")
        self.assertTrue(os.path.isfile(os.path.join(out, "qat", "final.weights.h5")))


class ErrorsTest(tf.test.TestCase):

    def test_bad_flags_exit_2(self):
        # In-process (run_cli): every refusal comes before any TensorFlow work, exit code and stderr as in a process.
        for flag, words in (("--input_size=abc", "input_size"), ("--model=nope", "nope"),
                            ("--dataset=/no/such/folder", "/no/such/folder"), ("--profile=tpu9", "tpu9"),
                            ("--epochs=0", "epochs")):
            out = os.path.join(self.get_temp_dir(), str(abs(hash(flag))))
            res = run_cli("kerasnets.pipelines.cli.run", flag, f"--out={out}")
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
