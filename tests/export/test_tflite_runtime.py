"""kerasnets.export.tflite conversion modes and export.runtime verification, safety and benchmarking."""
import json
import os
import tempfile

import numpy as np
import pytest

import kerasnets
from kerasnets.export import runtime, tflite
from kerasnets.backend import keras, tf
from kerasnets.stats import randomize_batch_norm
from tests.helpers import run_cli

L = keras.layers


def _model(name="mobilenet_v2_035", size=48, **kw):
    model = kerasnets.get_model(name, input_shape=(size, size, 3), classes=10, classifier_activation=None, **kw)
    # Non-trivial BN statistics, so outputs are not constant.
    return randomize_batch_norm(model, 0, gamma=(0.8, 1.5), beta_std=0.5, mean_std=0.1, variance=(0.5, 1.0))


def _images(n=16, size=48, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


class ConversionTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = _model()
        cls.images = _images()
        cls.artifacts = {mode: tflite.convert(cls.model, mode, representative_data=cls.images, calibration_count=16)
                         for mode in tflite.MODES}

    def test_every_mode_verifies_against_keras(self):
        for mode, content in self.artifacts.items():
            report = runtime.verify(self.model, content, self.images, mode)
            self.assertTrue(report["passed"], report)
        self.assertGreater(runtime.verify(self.model, self.artifacts["int8"], self.images, "int8")["max_abs_error"], 0)

    def test_graphs_are_lean_at_batch_1(self):
        for mode, content in self.artifacts.items():
            ops = runtime.op_counts(content)
            for bad in ("SHAPE", "STRIDED_SLICE", "PACK"):
                self.assertNotIn(bad, ops, mode)
        int8_ops = runtime.op_counts(self.artifacts["int8"])
        self.assertNotIn("QUANTIZE", int8_ops)
        self.assertNotIn("DEQUANTIZE", int8_ops)
        interp = runtime.load_interpreter(self.artifacts["int8"], probe=False)
        self.assertEqual(list(interp.get_input_details()[0]["shape"]), [1, 48, 48, 3])
        self.assertEqual(interp.get_input_details()[0]["dtype"], np.int8)

    @pytest.mark.slow
    def test_uint8_io_and_per_tensor(self):
        content = tflite.convert(self.model, "int8", representative_data=self.images, calibration_count=8,
                                 io_type="uint8", per_channel=False)
        interp = runtime.load_interpreter(content, probe=False)
        self.assertEqual(interp.get_input_details()[0]["dtype"], np.uint8)
        runtime.verify(self.model, content, self.images, "int8")

    @pytest.mark.slow
    def test_deploy_is_applied_and_repghost_fuses(self):
        model = _model("repghostnet_050", size=32)
        ops = runtime.op_counts(tflite.convert(model, "float32"))
        train_adds = sum(1 for l in model.layers if isinstance(l, L.Add))
        fused_adds = sum(1 for l in kerasnets.deploy(model).layers if isinstance(l, L.Add))
        self.assertLess(fused_adds, train_adds)
        self.assertEqual(ops.get("ADD", 0), fused_adds)

    def test_same_inputs_give_byte_identical_artifacts(self):
        again = tflite.convert(self.model, "int8", representative_data=self.images, calibration_count=16)
        self.assertEqual(again, self.artifacts["int8"])

    def test_bad_requests(self):
        with self.assertRaisesRegex(tflite.ExportError, "mode 'int4' is unknown"):
            tflite.convert(self.model, "int4")
        with self.assertRaisesRegex(tflite.ExportError, "needs calibration images"):
            tflite.convert(self.model, "int8")
        with self.assertRaisesRegex(tflite.ExportError, "gave 16 images but 50 were asked"):
            tflite.convert(self.model, "int8", representative_data=self.images, calibration_count=50)
        bad = self.images.copy()
        bad[0, 0, 0, 0] = np.nan
        with self.assertRaisesRegex(tflite.ExportError, "NaN or Inf"):
            tflite.convert(self.model, "int8", representative_data=bad, calibration_count=4)

    def test_several_inputs_are_calibrated_each_by_signature_name(self):
        a, b = keras.Input((4, 4, 8), name="a"), keras.Input((2, 2, 3), name="b")
        model = keras.Model([a, b], [L.Conv2D(4, 1, name="ca")(a), L.Conv2D(5, 1, name="cb")(b)])
        rng = np.random.default_rng(0)
        data = [rng.uniform(-1, 1, (8, 4, 4, 8)).astype("float32"), rng.uniform(-50, 50, (8, 2, 2, 3)).astype("float32")]
        content = tflite.convert(model, "int8", representative_data=data, calibration_count=8)
        runner = runtime.load_interpreter(content, probe=False).get_signature_runner()
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        self.assertEqual(sorted(inputs), ["input_0", "input_1"])
        self.assertEqual(sorted(outputs), ["output_0", "output_1"])
        # Each input's scale spans its own calibration range (fed swapped, the shapes would not even fit).
        for k, x in enumerate(data):
            self.assertAllClose(inputs[f"input_{k}"]["quantization"][0], (x.max() - x.min()) / 255, rtol=0.02)
        feed = {}
        for k, x in enumerate(data):
            scale, zero = inputs[f"input_{k}"]["quantization"]
            feed[f"input_{k}"] = np.clip(np.round(x[:1] / scale + zero), -128, 127).astype(np.int8)
        got = runner(**feed)
        for k, want in enumerate(model([d[:1] for d in data])):
            scale, zero = outputs[f"output_{k}"]["quantization"]
            self.assertAllClose((got[f"output_{k}"].astype(np.float32) - zero) * scale, want,
                                atol=0.05 * float(np.abs(want).max()) + 1e-3)
        with self.assertRaisesRegex(tflite.ExportError, "has 2 inputs; pass representative_data as a list of 2"):
            tflite.convert(model, "int8", representative_data=data[:1], calibration_count=8)
        with self.assertRaisesRegex(tflite.ExportError, r"representative_data\[1\] has shape \(8, 4, 4, 8\)"):
            tflite.convert(model, "int8", representative_data=[data[0], data[0]], calibration_count=8)
        with self.assertRaisesRegex(tflite.ExportError, "gave 2 images but 8 were asked"):
            tflite.convert(model, "int8", representative_data=[data[0], data[1][:2]], calibration_count=8)

    def test_write_artifact_is_atomic_with_manifest(self):
        folder = tempfile.mkdtemp()
        path = os.path.join(folder, "m.tflite")
        manifest = tflite.write_artifact(path, self.artifacts["int8"], "mobilenet_v2_035", "int8",
                                         normalization={"scale": 1 / 127.5, "offset": -1}, labels=list("abcdefghij"),
                                         command="test")
        self.assertEqual(sorted(os.listdir(folder)), ["m.tflite", "m.tflite.manifest.json"])
        on_disk = json.load(open(tflite.manifest_path(path)))
        self.assertEqual(on_disk, json.loads(json.dumps(manifest)))
        self.assertEqual(on_disk["inputs"][0]["dtype"], "int8")
        self.assertGreater(on_disk["inputs"][0]["scale"], 0)
        self.assertEqual(on_disk["input_size"], [48, 48])
        self.assertEqual(on_disk["versions"]["tensorflow"], tf.__version__)  # the running one, not a pin


class ToleranceTest(tf.test.TestCase):
    """The per-mode criterion on outputs alone (no conversion): limit, share within it, agreement."""

    def _outputs(self, swung):
        # 20 two-class samples, confidently class 0 except where noted; ``swung`` of them lose 0.4 of
        # their class-0 probability to quantization noise without changing their top-1 class.
        expected = np.tile(np.array([[0.9, 0.1]], np.float32), (20, 1))
        got = expected + np.float32(0.01)
        got[:swung] = [0.5, 0.45]
        return expected, got

    def test_a_few_swung_samples_pass_int8_but_not_float32(self):
        expected, got = self._outputs(swung=2)
        report = runtime.check_outputs(expected, got, "int8")
        self.assertAllClose(report["max_abs_error"], 0.4)
        self.assertAllClose(report["within_error_share"], 0.9)
        self.assertEqual(report["top1_agreement"], 1.0)
        self.assertTrue(report["passed"])
        with self.assertRaisesRegex(runtime.VerificationError, "float32 artifact disagrees with Keras: 0% of 20"):
            runtime.check_outputs(expected, got, "float32")

    def test_near_ties_of_a_barely_trained_model_are_not_disagreements(self):
        # Near-uniform scores over 10 classes (margins of 0.001-0.005) and int8-like noise of about two
        # output steps: top-1 flips on most samples, all within the noise, and the artifact passes.
        rng = np.random.default_rng(0)
        expected = (0.1 + rng.uniform(-0.003, 0.003, (64, 10))).astype(np.float32)
        got = expected + rng.uniform(-0.008, 0.008, expected.shape).astype(np.float32)
        self.assertLess(np.mean(expected.argmax(1) == got.argmax(1)), 0.5)
        report = runtime.check_outputs(expected, got, "int8", resolution=1 / 256)
        self.assertEqual(report["top1_agreement"], 1.0)
        # ... but a confident model's flips still count: margins of 0.8 against noise of 0.01.
        confident = np.tile(np.array([[0.9, 0.1]], np.float32), (20, 1))
        noisy = confident + np.float32(0.01)
        noisy[:4] = [0.1, 0.9]
        self.assertEqual(runtime.check_outputs(confident, noisy, "int8", raise_on_failure=False)["top1_agreement"],
                         0.8)

    def test_systematic_error_fails_int8_with_the_figures_named(self):
        expected, got = self._outputs(swung=3)  # 85% within: below int8's 90%
        with self.assertRaisesRegex(runtime.VerificationError,
                                    r"the pair disagrees with Keras: 85% of 20 samples within max abs error 0.25 "
                                    r"\(minimum 90%; worst 0.4\), top-1 agreement 1.000"):
            runtime.check_outputs(expected, got, "int8", what="the pair")
        flipped = expected[:, ::-1]  # every sample's class flipped: agreement 0
        report = runtime.check_outputs(expected, flipped, "int8", raise_on_failure=False)
        self.assertEqual(report["top1_agreement"], 0.0)
        self.assertFalse(report["passed"])
        self.assertTrue(runtime.check_outputs(expected, got, "int8", tolerances=(0.5, 0.85))["passed"])
        with self.assertRaisesRegex(ValueError, "mode 'int4' has no tolerance"):
            runtime.check_outputs(expected, got, "int4")
        with self.assertRaisesRegex(runtime.VerificationError, r"output shape \(20, 3\) differs"):
            runtime.check_outputs(expected, np.zeros((20, 3)), "int8")


class CorruptFilesTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.content = tflite.convert(_model(size=32), "float32")

    def test_truncated_and_foreign_files_are_refused(self):
        folder = tempfile.mkdtemp()
        cases = {"half": self.content[: len(self.content) // 2], "tiny": self.content[:10],
                 "png": b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "empty": b""}
        for label, content in cases.items():
            path = os.path.join(folder, f"{label}.tflite")
            open(path, "wb").write(content)
            with self.assertRaises(runtime.ArtifactError, msg=label):
                runtime.load_interpreter(path)
        with self.assertRaisesRegex(runtime.ArtifactError, "does not exist"):
            runtime.read_tflite(os.path.join(folder, "missing.tflite"))

    def test_bit_flipped_files_never_crash_the_process(self):
        rng = np.random.default_rng(0)
        outcomes = {"refused": 0, "loaded": 0}
        for _ in range(12):
            data = bytearray(self.content)
            # Flip bits in the flatbuffer's tables (the first KB and the last KB hold the metadata).
            for pos in rng.integers(0, 1024, size=4).tolist() + (len(data) - 1 - rng.integers(0, 1024, size=4)).tolist():
                data[pos] ^= 1 << int(rng.integers(0, 8))
            try:
                interp = runtime.load_interpreter(bytes(data))
                runtime.run_batch(interp, np.zeros((1, 32, 32, 3), "float32"))
                outcomes["loaded"] += 1
            except runtime.ArtifactError as e:
                self.assertIn("re-export", str(e))
                outcomes["refused"] += 1
        self.assertEqual(sum(outcomes.values()), 12)


class BenchmarkTest(tf.test.TestCase):

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_benchmark_and_interleaved_compare(self):
        content = tflite.convert(_model(size=32), "float32")
        result = runtime.benchmark(content, runs=5, warmup=1)
        self.assertEqual(result["runs"], 5)
        self.assertLessEqual(result["min_ms"], result["median_ms"])
        self.assertLessEqual(result["median_ms"], result["p90_ms"])
        both = runtime.compare({"a": content, "b": content}, runs=4, warmup=1)
        self.assertEqual(set(both), {"a", "b"})
        self.assertEqual(both["a"]["op_counts"], both["b"]["op_counts"])

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_bench_script(self):
        # In-process (run_cli): the script's exit codes and output are the same as in a new process.
        folder = tempfile.mkdtemp()
        path = os.path.join(folder, "m.tflite")
        open(path, "wb").write(tflite.convert(_model(size=32), "float32"))
        proc = run_cli("kerasnets.export.cli.bench", path, "--runs=3", "--warmup=1", "--json")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        out = json.loads(proc.stdout)
        self.assertEqual(out["models"][0]["runs"], 3)
        bad = os.path.join(folder, "bad.tflite")
        open(bad, "wb").write(b"not a model at all, really")
        proc = run_cli("kerasnets.export.cli.bench", bad)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("not a TFLite flatbuffer", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)
        proc = run_cli("kerasnets.export.cli.bench", path, "--runs=zero")
        self.assertEqual(proc.returncode, 2)


class OnnxTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_onnx_matches_keras(self):
        from kerasnets.export import onnx as kn_onnx
        model = _model("shufflenet_v2_x0_5", size=64)
        content = kn_onnx.to_onnx(model)
        report = kn_onnx.verify_onnx(model, content, _images(4, 64), atol=1e-4)
        self.assertEqual(report["top1_agreement"], 1.0)


class ExportScriptTest(tf.test.TestCase):

    def test_export_script_with_real_calibration_and_bad_flags(self):
        # In-process (run_cli): the script's exit codes and output are the same as in a new process.
        folder = tempfile.mkdtemp()
        out = os.path.join(folder, "m.tflite")
        argv = ["--model=mobilenet_v2_035", "--input_size=32x32", "--mode=int8", f"--out={out}",
                "--calibration=fashion_mnist", "--calibration_count=16", "--json"]
        proc = run_cli("kerasnets.export.cli.export", *argv)
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        manifest = json.load(open(tflite.manifest_path(out)))
        self.assertEqual(manifest["calibration"], "fashion_mnist")
        self.assertTrue(manifest["verification"]["passed"])
        self.assertEqual(manifest["normalization"]["mean"], [127.5, 127.5, 127.5])
        for bad, words in ((["--model=nope"], "unknown model"), (["--out=x.bin"], "must name a .tflite"),
                           (["--input_size=abc"], "not a size")):
            args = {a.split("=")[0]: a for a in argv}
            args.update({b.split("=")[0]: b for b in bad})
            proc = run_cli("kerasnets.export.cli.export", *args.values())
            self.assertEqual(proc.returncode, 2, bad)
            self.assertIn(words, proc.stderr)
            self.assertNotIn("Traceback", proc.stderr)
