"""Fine-tuning from an imported checkpoint: the checkpoint's preprocessing becomes the pipelines'
normalization, a bad --weights is refused before any work, and an imported (torch-convention)
model goes through the whole job: training, PTQ, partition, export, verification."""
import json
import os
import shutil
import tempfile

import numpy as np
import pytest

from kerasnets import datasets
from kerasnets.backend import tf
from kerasnets.pipelines import job, train
from kerasnets.pipelines.errors import ConfigError
from tests.helpers import load_case, run_module, write_checkpoint


class CheckpointNormalizationTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def test_timm_mean_and_std_become_the_normalization(self):
        meta, _, _ = load_case("mobilenetv2_035")
        path = write_checkpoint(meta, self.tmp)
        config = train.TrainConfig(model="mobilenet_v2_035", weights=path).check()
        self.assertAllClose(config.normalization["mean"], [0.485 * 255, 0.456 * 255, 0.406 * 255])
        self.assertAllClose(config.normalization["std"], [0.229 * 255, 0.224 * 255, 0.225 * 255])
        self.assertNotIn("channel_order", config.normalization)
        # An explicit normalization wins over the checkpoint's.
        mine = {"mean": [0.0] * 3, "std": [255.0] * 3}
        self.assertEqual(train.TrainConfig(model="mobilenet_v2_035", weights=path, normalization=mine).check()
                         .normalization, mine)

    def test_megvii_bgr_pixels_are_flipped(self):
        meta, _, _ = load_case("shufflenet_v1_g3_x0_5")
        path = write_checkpoint(meta, self.tmp)
        norm = train.TrainConfig(model="shufflenet_v1_g3_x0_5", weights=path).check().normalization
        self.assertEqual(norm, {"mean": [0.0] * 3, "std": [1.0] * 3, "channel_order": "BGR"})
        rgb = np.zeros((1, 2, 2, 3), np.uint8)
        rgb[..., 0] = 200  # red
        x = datasets.preprocess(rgb, (2, 2), norm).numpy()
        self.assertAllEqual(x[0, 0, 0], [0.0, 0.0, 200.0])  # red is the last channel in BGR

    def test_bad_weights_are_refused_before_training(self):
        with self.assertRaisesRegex(ConfigError, r"weights='/nonexistent/w.safetensors' is neither a file"):
            job.JobConfig(weights="/nonexistent/w.safetensors").check()
        meta, _, _ = load_case("ghostnet_050")  # another family
        path = write_checkpoint(meta, self.tmp)
        with self.assertRaisesRegex(ValueError, "GhostNet"):
            job.JobConfig(model="mobilenet_v2_035", weights=path).check()
        with self.assertRaisesRegex(ValueError, "channel_order='GBR' is unknown"):
            datasets.check_normalization({"mean": 0, "std": 1, "channel_order": "GBR"})


class FineTuneJobTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_imported_torch_model_through_the_whole_job(self):
        tmp = self.get_temp_dir()
        meta, _, _ = load_case("mobilenetv2_035")  # timm layout, torch convention, 10-class head
        path = write_checkpoint(meta, tmp)
        out = os.path.join(tmp, "run")
        proc = run_module("kerasnets.pipelines.cli.run", "--model=mobilenet_v2_035", f"--weights={path}",
                          "--input_size=32x32", "--train_subset=256", "--val_subset=200", "--epochs=1",
                          "--quantization=ptq", "--batch_size=64", "--calibration_count=32", "--runs=5",
                          f"--out={out}", "--json", timeout=900)
        self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        for key in ("float32", "int8", "partitioned"):
            self.assertTrue(summary["verification"][key]["passed"], key)
        with open(os.path.join(out, summary["artifacts"]["int8"] + ".manifest.json")) as f:
            manifest = json.load(f)
        self.assertAllClose(manifest["normalization"]["mean"], [0.485 * 255, 0.456 * 255, 0.406 * 255])
        with open(os.path.join(out, "job.json")) as f:
            self.assertEqual(json.load(f)["config"]["weights"], path)  # a resume with other weights is refused
