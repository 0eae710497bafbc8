"""--spec: a spec JSON (kerasnets-retarget --out, kerasnets-search) built instead of a zoo --model, in the
export scripts (estimate, partition, export, retarget) and the training scripts and job (train, run)."""
import json
import os
import tempfile

import pytest

import kerasnets
from kerasnets import layers as kn_layers
from kerasnets import spec as kspec
from kerasnets.backend import tf
from kerasnets.zoo import get_spec
from kerasnets.pipelines import job, train
from kerasnets.pipelines.errors import ConfigError
from tests.helpers import run_cli


class SpecFlagTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = tempfile.mkdtemp()
        # A spec no registry name builds: AXSpine-Small at half its stage depth, split grouped convs.
        base = get_spec("axspine_small")
        cls.spec = kspec.ModelSpec("axspine_small_custom", base.blocks[:8] + base.blocks[-1:], base.top,
                                   base.default_size)
        cls.path = kspec.save_spec(cls.spec, os.path.join(cls.dir, "custom.json"), {"group_conv": "split"})

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_estimate_and_partition_build_the_spec(self):
        res = run_cli("kerasnets.export.cli.estimate", f"--spec={self.path}", "--input_size=64x64", "--profile=m55h",
                      "--json")
        self.assertEqual(res.returncode, 0, res.stderr)
        out = json.loads(res.stdout)
        self.assertEqual(out["model"], "axspine_small_custom")
        direct = kerasnets.get_model(spec=self.path, input_shape=(64, 64, 3))
        from kerasnets.export import cost, profiles
        want = cost.estimate(direct, profiles.load_profile("m55h"), policy="max_npu")["totals"]["latency_ms"]
        self.assertAlmostEqual(out["totals"]["latency_ms"], want, places=6)
        res = run_cli("kerasnets.export.cli.partition", f"--spec={self.path}", "--input_size=64x64", "--json")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertEqual(json.loads(res.stdout)["model"], "axspine_small_custom")

    def test_bad_spec_flags_exit_2_in_one_sentence(self):
        bad = os.path.join(self.dir, "bad.json")
        with open(bad, "w") as f:
            json.dump({"format": "kerasnets.spec", "version": 1, "name": "x", "blocks": [{"kind": "conv", "out": 8,
                                                                                        "strde": 2}]}, f)
        cases = [
            (("kerasnets.export.cli.estimate", f"--spec={self.path}", "--model=mobilenet_v2_100"), "both name the model"),
            (("kerasnets.export.cli.estimate", f"--spec={self.dir}/missing.json"), "does not exist"),
            (("kerasnets.export.cli.partition", f"--spec={bad}"), "strde"),
            (("kerasnets.export.cli.estimate", f"--spec={self.path}", "--input_size=8x8"), "too small"),
            (("kerasnets.export.cli.export", f"--spec={self.path}", "--weights=hf://timm/mobilenetv2_100.ra_in1k",
              f"--out={self.dir}/o"), "needs a zoo --model"),
            (("kerasnets.pipelines.cli.run", f"--spec={self.path}", "--model=mobilenet_v2_035", f"--out={self.dir}/r"),
             "both name the model"),
            (("kerasnets.pipelines.cli.train", f"--spec={bad}", f"--out={self.dir}/t"), "strde"),
        ]
        for args, words in cases:
            res = run_cli(*args)
            self.assertEqual(res.returncode, 2, (args, res.stderr))
            self.assertIn(words, res.stderr, args)
            self.assertNotIn("Traceback", res.stderr)
            self.assertEqual(res.stderr.strip().count("\n"), 0, res.stderr)
        self.assertFalse(os.path.exists(f"{self.dir}/o") or os.path.exists(f"{self.dir}/r")
                         or os.path.exists(f"{self.dir}/t"))

    def test_train_and_job_configs_take_the_spec(self):
        config = train.TrainConfig(spec=self.path, input_size=32).check()
        self.assertEqual(config.model, "axspine_small_custom")
        model = train.default_model_fn(config, 10)()
        self.assertEqual(model.name, "axspine_small_custom")
        self.assertTrue(any(isinstance(layer, kn_layers.GroupConv2D) for layer in model.layers))  # file's options
        self.assertEqual(len(model.layers), len(kerasnets.get_model(spec=self.path, input_shape=(32, 32, 3),
                                                                    classes=10).layers))
        jc = job.JobConfig(spec=self.path).check()
        self.assertEqual((jc.model, jc.train_config().spec), ("axspine_small_custom", self.path))
        with self.assertRaisesRegex(ConfigError, "needs a zoo model"):
            train.TrainConfig(spec=self.path, weights="hf://timm/mobilenetv2_100.ra_in1k").check()
        with self.assertRaisesRegex(ConfigError, "spec=3 is not text"):
            job.JobConfig(spec=3).check()

    @pytest.mark.slow  # ~30 s: one short training run
    def test_kerasnets_train_trains_the_spec(self):
        out = os.path.join(self.dir, "trained")
        res = run_cli("kerasnets.pipelines.cli.train", f"--spec={self.path}", "--input_size=32x32", "--train_subset=128",
                      "--val_subset=64", "--epochs=1", "--batch_size=64", f"--out={out}", "--verbose=0", "--json")
        self.assertEqual(res.returncode, 0, res.stderr)
        model = kerasnets.get_model(spec=self.path, input_shape=(32, 32, 3), classes=10)
        model.load_weights(os.path.join(out, "final.weights.h5"))  # the spec's model, layer for layer
