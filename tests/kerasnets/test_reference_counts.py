"""Every registry model matches its reference implementation exactly (params and MACs at 224)."""
from absl.testing import parameterized
import pytest

import kerasnets
from kerasnets.backend import keras, tf
from tests.helpers import split_sweep

EXPECTED_NAMES = sorted(
    [f"mobilenet_v2_{w}" for w in ("035", "050", "075", "100", "140")]
    + [f"axspine_{v}" for v in ("small", "middle", "big")]
    + [f"shufflenet_v1_g{g}_x{w}" for g in (3, 8) for w in ("0_5", "1_0", "1_5", "2_0")]
    + [f"shufflenet_v2_x{w}" for w in ("0_5", "1_0", "1_5", "2_0")]
    + [f"ghostnet_{w}" for w in ("050", "100", "130")]
    + [f"repghostnet_{w}" for w in ("050", "058", "080", "100", "111", "130", "150", "200")]
    + [f"efficientnet_edgetpu_{v}" for v in ("s", "m", "l")]
    + ["mobilenet_v3_large_100", "mobilenet_v3_small_100", "regnetx_002", "regnetx_004", "vgg16"]
    + ["resnet50", "resnet50_v2", "resnet152_v2"]
    + [f"vargnetv2_{w}" for w in ("025", "050", "100")] + ["tinyvargnetv2_100", "mixvargenet_100"])

WITH_REFERENCE = [n for n in EXPECTED_NAMES if not n.startswith("axspine")]
# No checkpoint import yet: AXSpine (none published), the ResNets (Keras Applications' .h5 has no key map)
# and the VarGNet family (no public checkpoint; its reference rows are computed from the VarGNet digest).
VARGNET = ("vargnetv2", "tinyvargnetv2", "mixvargenet")
WITH_CHECKPOINTS = [n for n in WITH_REFERENCE if not n.startswith(("resnet",) + VARGNET)]
REPGHOST = [n for n in EXPECTED_NAMES if n.startswith("repghostnet")]
FAST_REFERENCE, SLOW_REFERENCE = split_sweep(WITH_REFERENCE)
FAST_REPGHOST, SLOW_REPGHOST = split_sweep(REPGHOST)


class RegistryTest(tf.test.TestCase):

    def test_names_are_exactly_the_contract(self):
        self.assertEqual(kerasnets.list_models(), EXPECTED_NAMES)

    def test_every_model_but_axspine_has_a_reference(self):
        for name in EXPECTED_NAMES:
            info = kerasnets.get_model_info(name)
            self.assertEqual(info["reference"] is not None, name in WITH_REFERENCE, name)

    def test_registry_names_the_checkpoints_each_model_imports(self):
        for name in EXPECTED_NAMES:
            sources = kerasnets.get_model_info(name)["checkpoints"]
            self.assertEqual(bool(sources), name in WITH_CHECKPOINTS, name)
            self.assertTrue(all(convention in ("tf", "torch") for _, convention in sources), name)
        info = kerasnets.get_model_info
        self.assertIn(("timm tf_efficientnet_es", "tf"), info("efficientnet_edgetpu_s")["checkpoints"])
        self.assertIn(("Keras Applications MobileNetV2(alpha=0.35)", "tf"), info("mobilenet_v2_035")["checkpoints"])
        self.assertNotIn("torchvision mobilenet_v2", [s for s, _ in info("mobilenet_v2_035")["checkpoints"]])


class ReferenceCountsTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(*FAST_REFERENCE)
    def test_params_and_macs_at_224(self, name):
        self._check_counts(name)

    @parameterized.parameters(*SLOW_REFERENCE)
    @pytest.mark.slow
    def test_params_and_macs_at_224_rest_of_zoo(self, name):
        self._check_counts(name)

    def _check_counts(self, name):
        ref = kerasnets.get_model_info(name)["reference"]
        model = kerasnets.get_model(name, input_shape=(224, 224, 3), classes=1000)
        self.assertEqual(model.count_params(), ref["keras_count_params_equiv"])
        self.assertEqual(kerasnets.count_macs(model), ref["macs_conv_linear_224"])

    @parameterized.parameters(*FAST_REPGHOST)
    def test_repghost_deploy_rows(self, name):
        self._check_deploy_rows(name)

    @parameterized.parameters(*SLOW_REPGHOST)
    @pytest.mark.slow
    def test_repghost_deploy_rows_other_widths(self, name):
        self._check_deploy_rows(name)

    def _check_deploy_rows(self, name):
        info = kerasnets.get_model_info(name)
        model = kerasnets.get_model(name, input_shape=(224, 224, 3))
        reparam = kerasnets.deploy(model, fold_batch_norm=False)
        self.assertEqual(reparam.count_params(), info["deploy_reference"]["keras_count_params_equiv"])
        self.assertEqual(kerasnets.count_macs(reparam), info["deploy_reference"]["macs_conv_linear_224"])
        folded = kerasnets.deploy(model)
        self.assertEqual(folded.count_params(), info["deploy_reference"]["params_bn_folded_est"])
        self.assertEqual(kerasnets.count_macs(folded), info["reference"]["macs_conv_linear_224"])

    @parameterized.parameters(("resnet50", "ResNet50"), ("resnet50_v2", "ResNet50V2"))
    def test_resnets_are_keras_applications_layer_for_layer(self, name, application):
        self._check_keras_application(name, application)

    @pytest.mark.slow
    def test_resnet152_v2_is_keras_applications_layer_for_layer(self):
        self._check_keras_application("resnet152_v2", "ResNet152V2")

    def _check_keras_application(self, name, application):
        # The same weight tensors (shapes, sorted), the same count and the same conv MACs as
        # Keras Applications' own build, at a non-square size.
        ours = kerasnets.get_model(name, input_shape=(160, 224, 3), classes=10)
        ref = getattr(keras.applications, application)(weights=None, input_shape=(160, 224, 3), classes=10)
        self.assertEqual(sorted(tuple(w.shape) for w in ours.weights), sorted(tuple(w.shape) for w in ref.weights))
        self.assertEqual(ours.count_params(), ref.count_params())
        self.assertEqual(kerasnets.count_macs(ours), kerasnets.count_macs(ref))

    def test_default_sizes_follow_the_papers(self):
        self.assertEqual(kerasnets.get_model_info("efficientnet_edgetpu_m")["default_input_shape"], (240, 240, 3))
        self.assertEqual(kerasnets.get_model_info("efficientnet_edgetpu_l")["default_input_shape"], (300, 300, 3))
        self.assertEqual(kerasnets.get_model("mobilenet_v2_035").input_shape, (None, 224, 224, 3))
