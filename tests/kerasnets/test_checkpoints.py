"""Checkpoint import: kerasnets models compute the same function as their references.

Each fixture in tests/fixtures/<case>/ (written by tests/fixtures/make_reference.py with torch)
holds the reference model's state-dict layout, a seed, an input and the reference logits; the
test re-creates the state dict (tests/fixtures/synth.py, no torch), writes it in the source's
format, imports it with ``kerasnets.get_model(name, weights=...)`` and requires
max |logit - reference| <= 1e-4 * max |reference logit|. The tf convention is also checked
against Keras Applications' own models (random weights saved as .h5, then imported).
"""
import importlib.util
import os
import shutil
import sys
import tempfile
from unittest import mock

import numpy as np
import pytest

import kerasnets
from kerasnets.backend import keras, tf
from kerasnets.errors import CheckpointError
from tests.fixtures import synth
from tests.helpers import FIXTURES, load_case, write_checkpoint

BOUND = 1e-4
HAS_TORCH = importlib.util.find_spec("torch") is not None


def relative_error(model, x, ref):
    out = model(x, training=False).numpy().astype(np.float64)
    return float(np.abs(out - ref).max() / np.abs(ref).max())


class CheckpointTestCase(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.tmp, ignore_errors=True)

    def import_case(self, case, **kwargs):
        meta, x, ref = load_case(case)
        path = write_checkpoint(meta, self.tmp)
        kn = meta["kerasnets"]
        model = kerasnets.get_model(kn["model"], weights=path, input_shape=x.shape[1:], classes=meta["classes"],
                                    classifier_activation=None, **kn["overrides"], **kwargs)
        self.assertEqual(kerasnets.model_convention(model), kn["convention"])
        return model, x, ref

    def assert_matches(self, case):
        model, x, ref = self.import_case(case)
        err = relative_error(model, x, ref)
        print(f"{case}: max relative logit error {err:.2e}")
        self.assertLessEqual(err, BOUND)
        return model, x, ref


class ReferenceLogitsTest(CheckpointTestCase):
    """One test per fixture: import, then compare logits with the reference's."""

    def test_mobilenetv2_timm(self):
        model, _, _ = self.assert_matches("mobilenetv2_035")
        prep = kerasnets.preprocessing_for(model)
        self.assertEqual(prep["interpolation"], "bicubic")
        self.assertAllClose(prep["mean"], [0.485 * 255, 0.456 * 255, 0.406 * 255], atol=1e-3)

    def test_mobilenet_v2_torchvision(self):
        self.assert_matches("tv_mobilenet_v2_035")

    def test_mobilenetv3_large_timm(self):
        self.assert_matches("mobilenetv3_large_100")

    def test_mobilenetv3_small_timm(self):
        self.assert_matches("mobilenetv3_small_100")

    def test_shufflenet_v2_torchvision(self):
        self.assert_matches("shufflenet_v2_x0_5")

    def test_shufflenet_v1_megvii(self):
        model, _, _ = self.assert_matches("shufflenet_v1_g3_x0_5")
        self.assertEqual(kerasnets.preprocessing_for(model)["channel_order"], "BGR")

    @pytest.mark.slow
    def test_ghostnet_timm(self):
        self.assert_matches("ghostnet_050")

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_repghostnet_train_form_and_its_deploy(self):
        model, x, ref = self.assert_matches("repghostnet_050")
        self.assertLessEqual(relative_error(kerasnets.deploy(model), x, ref), BOUND)

    @pytest.mark.slow
    def test_repghostnet_deploy_form_loads_into_the_deployed_graph(self):
        model, _, _ = self.assert_matches("repghostnet_050_deploy")
        self.assertFalse(any(layer.name.endswith("_cheap_bn") for layer in model.layers))

    def test_efficientnet_es_timm_torch_convention(self):
        self.assert_matches("efficientnet_es")

    def test_tf_efficientnet_es_timm_tf_convention(self):
        model, _, _ = self.assert_matches("tf_efficientnet_es")
        self.assertAllClose(kerasnets.preprocessing_for(model)["std"], [127.5] * 3)

    def test_regnetx_timm(self):
        self.assert_matches("regnetx_002")

    @pytest.mark.slow
    def test_vgg16_torchvision(self):
        self.assert_matches("vgg16")


class TorchFileTest(CheckpointTestCase):
    """The committed torchvision .pth: loads with torch, and says what to do without it."""
    PTH = os.path.join(FIXTURES, "shufflenet_v2_x0_5", "shufflenetv2_x0.5.pth")

    @pytest.mark.skipif(not HAS_TORCH, reason="torch is an optional extra")
    def test_pth_loads_with_torch(self):
        _, x, ref = load_case("shufflenet_v2_x0_5")
        model = kerasnets.get_model("shufflenet_v2_x0_5", weights=self.PTH, input_shape=x.shape[1:], classes=10,
                                    classifier_activation=None)
        self.assertLessEqual(relative_error(model, x, ref), BOUND)

    @pytest.mark.skipif(not HAS_TORCH, reason="torch is an optional extra")
    def test_megvii_pth_tar_with_module_prefix(self):
        import torch
        meta, x, ref = load_case("shufflenet_v1_g3_x0_5")
        tensors = synth.synth_state_dict(meta["seed"], meta["tensors"])
        path = os.path.join(self.tmp, "snetv1_group3_0.5x.pth.tar")
        torch.save({"state_dict": {f"module.{k}": torch.from_numpy(v) for k, v in tensors.items()}}, path)
        model = kerasnets.get_model("shufflenet_v1_g3_x0_5", weights=path, input_shape=x.shape[1:], classes=10,
                                    classifier_activation=None)
        self.assertLessEqual(relative_error(model, x, ref), BOUND)

    @pytest.mark.skipif(HAS_TORCH, reason="checks the message shown when torch is missing")
    def test_pth_without_torch_names_the_extra(self):
        with self.assertRaisesRegex(CheckpointError, r"kerasnets\[torch\].*safetensors"):
            kerasnets.get_model("shufflenet_v2_x0_5", weights=self.PTH, input_shape=(64, 64, 3), classes=10)


class LoadPathsTest(CheckpointTestCase):
    """Other ways in: an existing model, the split group-conv form, features_only, Keras' own .h5."""

    def test_load_weights_into_an_existing_model(self):
        meta, x, ref = load_case("regnetx_002")
        path = write_checkpoint(meta, self.tmp)
        model = kerasnets.get_model("regnetx_002", input_shape=x.shape[1:], classes=10, classifier_activation=None,
                                    convention="torch")
        self.assertIs(kerasnets.load_weights(model, path), model)
        self.assertLessEqual(relative_error(model, x, ref), BOUND)

    @pytest.mark.slow
    def test_split_group_convs_load_the_same_weights(self):
        for case in ("shufflenet_v1_g3_x0_5", "regnetx_002"):
            model, x, ref = self.import_case(case, group_conv="split")
            self.assertTrue(any(isinstance(layer, kerasnets.layers.GroupConv2D) for layer in model.layers))
            self.assertLessEqual(relative_error(model, x, ref), BOUND)

    @pytest.mark.slow
    def test_deploy_form_into_a_deployed_model(self):
        meta, x, ref = load_case("repghostnet_050_deploy")
        path = write_checkpoint(meta, self.tmp)
        model = kerasnets.get_model("repghostnet_050", input_shape=x.shape[1:], classes=10,
                                    classifier_activation=None, convention="torch")
        deployed = kerasnets.load_weights(kerasnets.deploy(model, fold_batch_norm=False), path)
        self.assertLessEqual(relative_error(deployed, x, ref), BOUND)

    def test_features_only_loads_the_backbone(self):
        meta, x, _ = load_case("efficientnet_es")
        path = write_checkpoint(meta, self.tmp)
        full = kerasnets.get_model("efficientnet_edgetpu_s", weights=path, input_shape=x.shape[1:], classes=10)
        feats = kerasnets.get_model("efficientnet_edgetpu_s", weights=path, input_shape=x.shape[1:],
                                    features_only=True, out_indices=(1, 2))
        self.assertEqual([f["reduction"] for f in kerasnets.feature_info(feats)], [4, 8])
        last = feats.output_names[-1]
        probe = keras.Model(full.inputs, full.get_layer(last).output)
        self.assertAllClose(feats(x)[-1], probe(x), atol=1e-5)

    def test_hub_id_reads_the_snapshot_and_its_convention(self):
        import huggingface_hub
        meta, x, ref = load_case("tf_efficientnet_es")
        folder = write_checkpoint(meta, self.tmp)
        calls = []

        def snapshot_download(repo_id, **kwargs):
            calls.append(repo_id)
            return folder
        original = huggingface_hub.snapshot_download
        huggingface_hub.snapshot_download = snapshot_download
        self.addCleanup(setattr, huggingface_hub, "snapshot_download", original)
        model = kerasnets.get_model("efficientnet_edgetpu_s", weights="hf://timm/tf_efficientnet_es.in1k",
                                    input_shape=x.shape[1:], classes=10, classifier_activation=None)
        self.assertEqual(calls, ["timm/tf_efficientnet_es.in1k"])
        self.assertEqual(kerasnets.model_convention(model), "tf")
        self.assertLessEqual(relative_error(model, x, ref), BOUND)

    @pytest.mark.slow
    def test_weights_saved_by_keras_still_load(self):
        model = kerasnets.get_model("mobilenet_v2_035", input_shape=(64, 64, 3), classes=10)
        path = os.path.join(self.tmp, "own.h5")
        model.save_weights(path)
        again = kerasnets.get_model("mobilenet_v2_035", input_shape=(64, 64, 3), classes=10, weights=path)
        self.assertAllEqual(model.weights[0].numpy(), again.weights[0].numpy())


class HeadAndPreprocessingTest(CheckpointTestCase):

    def test_other_classes_keep_the_backbone_and_start_a_fresh_head(self):
        meta, x, _ = load_case("mobilenetv2_035")
        path = write_checkpoint(meta, self.tmp)
        with self.assertLogs("kerasnets", level="WARNING") as logs:
            model = kerasnets.get_model("mobilenet_v2_035", weights=path, input_shape=x.shape[1:], classes=3)
        self.assertIn("fresh", logs.output[0])
        self.assertEqual(model.output_shape, (None, 3))
        conv = synth.synth_state_dict(meta["seed"], meta["tensors"])["conv_stem.weight"]
        self.assertAllClose(model.get_layer("stage1_block0_conv").kernel.numpy(), conv.transpose(2, 3, 1, 0))

    def test_backbone_without_top(self):
        meta, x, _ = load_case("ghostnet_050")
        path = write_checkpoint(meta, self.tmp)
        model = kerasnets.get_model("ghostnet_050", weights=path, input_shape=x.shape[1:], include_top=False)
        self.assertEqual(len(model.output_shape), 4)

    def test_default_preprocessing_without_checkpoint(self):
        model = kerasnets.get_model("mobilenet_v2_035", input_shape=(64, 64, 3), classes=10)
        prep = kerasnets.preprocessing_for(model)
        self.assertEqual(prep["mean"], [127.5] * 3)
        self.assertIn("random initialisation", prep["source"])


class BadCheckpointTest(CheckpointTestCase):
    """Each bad input: one sentence naming it, and no model comes back half-loaded."""

    def test_checkpoint_of_another_family(self):
        meta, _, _ = load_case("shufflenet_v2_x0_5")
        path = write_checkpoint(meta, self.tmp)
        with self.assertRaisesRegex(CheckpointError, r"'conv1\.0\.weight'.*ShuffleNet V2"):
            kerasnets.get_model("mobilenet_v2_035", weights=path, input_shape=(64, 64, 3), classes=10)

    def test_checkpoint_of_another_width_names_tensor_and_shapes(self):
        meta, _, _ = load_case("mobilenetv2_035")
        path = write_checkpoint(meta, self.tmp)
        model = kerasnets.get_model("mobilenet_v2_050", input_shape=(64, 64, 3), classes=10, convention="torch")
        before = [w.numpy() for w in model.weights]
        with self.assertRaisesRegex(CheckpointError, r"^checkpoint tensor '[\w.]+' has shape \([\d, ]+\) but layer "
                                                     r"'stage\d_block\d+_\w+' of mobilenet_v2_050_torch needs \("):
            kerasnets.load_weights(model, path)
        for old, new in zip(before, model.weights):  # nothing was assigned
            self.assertAllEqual(old, new.numpy())

    def test_missing_and_unexpected_keys_are_listed(self):
        meta, _, _ = load_case("mobilenetv2_035")

        def damage(tensors):
            tensors.pop("blocks.1.0.conv_pw.weight")
            tensors["blocks.9.9.extra.weight"] = np.zeros(3, np.float32)
            return tensors
        path = write_checkpoint(meta, self.tmp, keys=damage)
        with self.assertRaisesRegex(CheckpointError, r"missing 1 \('blocks\.1\.0\.conv_pw\.weight'\); "
                                                     r"unexpected 1 \('blocks\.9\.9\.extra\.weight'\)"):
            kerasnets.get_model("mobilenet_v2_035", weights=path, input_shape=(64, 64, 3), classes=10)

    def test_truncated_safetensors(self):
        meta, _, _ = load_case("mobilenetv2_035")
        folder = write_checkpoint(meta, self.tmp)
        path = os.path.join(self.tmp, "truncated.safetensors")
        with open(os.path.join(folder, "model.safetensors"), "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        with self.assertRaisesRegex(CheckpointError, "not a readable safetensors file"):
            kerasnets.get_model("mobilenet_v2_035", weights=path, input_shape=(64, 64, 3), classes=10)

    def test_not_a_safetensors_file(self):
        path = os.path.join(self.tmp, "model.safetensors")
        with open(path, "w") as f:
            f.write("this is text, not tensors")
        with self.assertRaisesRegex(CheckpointError, "not a readable safetensors file"):
            kerasnets.load_weights(kerasnets.get_model("mobilenet_v2_035", input_shape=(64, 64, 3)), path)

    def test_hub_id_without_huggingface_hub_names_the_extra(self):
        with mock.patch.dict(sys.modules, {"huggingface_hub": None}):  # None makes the import fail
            with self.assertRaisesRegex(CheckpointError, r"kerasnets\[hub\].*huggingface\.co/timm/mobilenetv2_100"):
                kerasnets.get_model("mobilenet_v2_100", weights="hf://timm/mobilenetv2_100.ra_in1k")

    def test_unknown_hub_id_offline(self):
        os.environ["HF_HUB_OFFLINE"] = "1"
        self.addCleanup(os.environ.pop, "HF_HUB_OFFLINE", None)
        with self.assertRaisesRegex(CheckpointError, r"could not be fetched.*huggingface\.co/timm/no_such_model"):
            kerasnets.get_model("mobilenet_v2_100", weights="hf://timm/no_such_model.x_in1k")

    @pytest.mark.slow
    def test_backbone_only_file_into_a_model_with_top(self):
        reference = keras.applications.MobileNetV2(alpha=0.35, weights=None, include_top=False,
                                                   input_shape=(64, 64, 3))
        path = os.path.join(self.tmp, "mobilenet_v2_notop.h5")
        reference.save_weights(path)
        with self.assertRaisesRegex(CheckpointError, r"has no classifier.*include_top=False"):
            kerasnets.get_model("mobilenet_v2_035", weights=path, input_shape=(64, 64, 3), classes=10)
        model = kerasnets.get_model("mobilenet_v2_035", weights=path, input_shape=(64, 64, 3), include_top=False)
        x = synth.synth_input(4, (1, 64, 64, 3))
        self.assertAllClose(model(x), reference(x), atol=1e-5)

    def test_wrong_convention_says_how_to_rebuild(self):
        meta, _, _ = load_case("mobilenetv2_035")
        path = write_checkpoint(meta, self.tmp)
        model = kerasnets.get_model("mobilenet_v2_035", input_shape=(64, 64, 3), classes=10)  # tf convention
        with self.assertRaisesRegex(CheckpointError, r"rebuild it with convention='torch'"):
            kerasnets.load_weights(model, path)

    def test_deploy_checkpoint_into_train_model(self):
        meta, _, _ = load_case("repghostnet_050_deploy")
        path = write_checkpoint(meta, self.tmp)
        model = kerasnets.get_model("repghostnet_050", input_shape=(64, 64, 3), classes=10, convention="torch")
        with self.assertRaisesRegex(CheckpointError, r"deploy\(model, fold_batch_norm=False\)"):
            kerasnets.load_weights(model, path)


def randomize(model, seed):
    """Random weights, BatchNorm statistics included, for a Keras Applications model."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        new = []
        for w in layer.weights:
            name = w.name.split("/")[-1]
            shape = tuple(w.shape)
            if "moving_variance" in name:
                new.append(rng.uniform(1.0, 2.0, shape))
            elif "gamma" in name:
                new.append(rng.uniform(0.6, 1.4, shape))
            elif "beta" in name or "moving_mean" in name or "bias" in name:
                new.append(rng.uniform(-0.2, 0.2, shape))
            else:
                fan_in = int(np.prod(shape[:-1])) if "depthwise" not in name else int(np.prod(shape[:2]))
                new.append(rng.uniform(-1, 1, shape) * np.sqrt(3.0 / fan_in))
        layer.set_weights([v.astype(np.float32) for v in new])


class KerasApplicationsTest(CheckpointTestCase):
    """tf convention: Keras Applications' own models, random weights saved as .h5, then imported."""

    def compare(self, reference, name, x, **kwargs):
        randomize(reference, 3)
        path = os.path.join(self.tmp, "weights.h5")
        reference.save_weights(path)
        model = kerasnets.get_model(name, weights=path, input_shape=x.shape[1:], classes=10,
                                    classifier_activation=None, **kwargs)
        self.assertEqual(kerasnets.model_convention(model), "tf")
        ref = reference(x, training=False).numpy().astype(np.float64)
        err = relative_error(model, x if "include_preprocessing" not in kwargs else x, ref)
        print(f"Keras Applications -> {name}: max relative logit error {err:.2e}")
        self.assertLessEqual(err, BOUND)
        return model

    def test_mobilenet_v2(self):
        reference = keras.applications.MobileNetV2(alpha=0.35, weights=None, input_shape=(96, 96, 3), classes=10,
                                                   classifier_activation=None)
        x = synth.synth_input(5, (2, 96, 96, 3))
        model = self.compare(reference, "mobilenet_v2_035", x)
        self.assertEqual(kerasnets.preprocessing_for(model)["mean"], [127.5] * 3)

    @pytest.mark.slow
    def test_mobilenet_v3_small(self):
        # Keras' MobileNetV3 carries its own Rescaling(1/127.5, -1); leave it out so both see the same tensor.
        reference = keras.applications.MobileNetV3Small(weights=None, input_shape=(96, 96, 3), classes=10,
                                                        classifier_activation=None, include_preprocessing=False)
        self.compare(reference, "mobilenet_v3_small_100", synth.synth_input(6, (2, 96, 96, 3)))

    @pytest.mark.slow
    def test_mobilenet_v3_large(self):
        reference = keras.applications.MobileNetV3Large(weights=None, input_shape=(96, 96, 3), classes=10,
                                                        classifier_activation=None, include_preprocessing=False)
        self.compare(reference, "mobilenet_v3_large_100", synth.synth_input(7, (2, 96, 96, 3)))

    def test_vgg16_backbone_small_input(self):
        reference = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
        randomize(reference, 4)
        path = os.path.join(self.tmp, "vgg16_notop.h5")
        reference.save_weights(path)
        model = kerasnets.get_model("vgg16", weights=path, input_shape=(32, 32, 3), include_top=False)
        x = synth.synth_input(8, (2, 32, 32, 3))
        ref = reference(x).numpy().astype(np.float64)
        self.assertLessEqual(relative_error(model, x, ref), BOUND)

    @pytest.mark.slow
    def test_vgg16_with_top_at_224(self):
        reference = keras.applications.VGG16(weights=None, input_shape=(224, 224, 3), classes=10,
                                             classifier_activation=None)
        self.compare(reference, "vgg16", synth.synth_input(9, (1, 224, 224, 3)))
