"""features_only models: timm's out_indices levels, feature_info, save/load, deploy, int8 export."""
import os
import tempfile

from absl.testing import parameterized
import numpy as np
import pytest

import kerasnets
from kerasnets.backend import keras, tf
from kerasnets.stats import randomize_batch_norm
from kerasnets.zoo import _REGISTRY

L = keras.layers

# Channels of the out_indices=(1, 2, 3, 4) endpoints (reductions 4, 8, 16, 32), head conv excluded.
EXPECTED_CHANNELS = {
    "mobilenet_v2_100": [24, 32, 96, 320],      # timm mobilenetv2_100 features_only
    "shufflenet_v2_x1_0": [24, 116, 232, 464],  # max pool, stages 2-4 (conv5 excluded)
    "repghostnet_050": [12, 20, 56, 80],
    "efficientnet_edgetpu_s": [32, 48, 144, 192],
    "axspine_small": [32, 32, 64, 160],
    "vgg16": [256, 512, 512, 512],              # last conv before each pool; /32 is pool5
}


class FeaturesTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(*sorted(EXPECTED_CHANNELS))
    def test_endpoints(self, name):
        model = kerasnets.get_model(name, input_shape=(64, 96, 3), features_only=True)
        self.assertLen(model.outputs, 4)
        info = kerasnets.feature_info(model)
        self.assertEqual(model.feature_info, info)
        self.assertEqual([d["index"] for d in info], [1, 2, 3, 4])
        self.assertEqual([d["reduction"] for d in info], [4, 8, 16, 32])
        self.assertEqual([d["channels"] for d in info], EXPECTED_CHANNELS[name])
        for d, shape in zip(info, model.output_shape):
            self.assertEqual(shape, (None, 64 // d["reduction"], 96 // d["reduction"], d["channels"]))
            self.assertTrue(d["layer"].startswith(f"stage{d['index'] + 1}_block"), d["layer"])
        outputs = model(np.zeros((1, 64, 96, 3), "float32"), training=False)
        self.assertEqual([tuple(o.shape) for o in outputs], [(1,) + s[1:] for s in model.output_shape])

    def test_head_conv_is_excluded(self):
        model = kerasnets.get_model("mobilenet_v2_100", input_shape=(64, 64, 3), features_only=True,
                                    out_indices=(4,))
        self.assertFalse([l.name for l in model.layers if isinstance(l, L.Conv2D) and l.filters == 1280])
        spec = _REGISTRY["axspine_small"].spec()  # no head marked: the default rule finds its 1x1 conv
        self.assertEqual(spec.head_flags()[-1], True)
        self.assertEqual(sum(spec.head_flags()), 1)
        regnet = _REGISTRY["regnetx_002"].spec()
        self.assertFalse(any(regnet.head_flags()))

    @pytest.mark.slow
    def test_all_levels_torch_convention_and_save_load(self):
        model = kerasnets.get_model("shufflenet_v1_g3_x0_5", input_shape=(64, 64, 3), features_only=True,
                                    out_indices=(0, 1, 2, 3, 4), convention="torch")
        self.assertEqual([d["reduction"] for d in model.feature_info], [2, 4, 8, 16, 32])
        self.assertEqual(kerasnets.model_convention(model), "torch")
        path = os.path.join(tempfile.mkdtemp(), "f.keras")
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        self.assertEqual(kerasnets.feature_info(loaded), model.feature_info)
        x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
        for a, b in zip(model(x, training=False), loaded(x, training=False)):
            self.assertAllClose(a, b, atol=1e-6)

    def test_out_indices_keep_the_requested_order(self):
        model = kerasnets.get_model("mobilenet_v2_035", input_shape=(64, 64, 3), features_only=True,
                                    out_indices=(3, 1))
        self.assertEqual([d["index"] for d in model.feature_info], [3, 1])

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_deploy_and_int8_export(self):
        from kerasnets.export import runtime, tflite  # the export side of the same endpoints
        model = kerasnets.get_model("mobilenet_v2_035", input_shape=(64, 64, 3), features_only=True)
        randomize_batch_norm(model)
        deployed = kerasnets.deploy(model)
        x = np.random.default_rng(1).uniform(-1, 1, size=(8, 64, 64, 3)).astype("float32")
        for a, b in zip(model(x, training=False), deployed(x)):
            self.assertLess(np.abs(a.numpy() - b.numpy()).max(), 1e-4)
        self.assertEqual([d["channels"] for d in kerasnets.feature_info(deployed)],
                         [d["channels"] for d in model.feature_info])
        content = tflite.convert(model, "int8", representative_data=[x], calibration_count=8)
        interpreter = runtime.load_interpreter(content, probe=False)
        shapes = sorted(tuple(d["shape"][1:]) for d in interpreter.get_output_details())
        self.assertEqual(shapes, sorted(tuple(s[1:]) for s in model.output_shape))
        self.assertEqual(runtime.op_counts(content)["PAD"], 0)  # the tf convention has no PAD op


class FeatureErrorsTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(
        (dict(include_top=True), "include_top=True"),
        (dict(pooling="avg"), "pooling='avg'"),
        (dict(out_indices=(5,)), "value 5 is out of range.*0, 1, 2, 3, 4"),
        (dict(out_indices=(-1, 2)), "value -1 is out of range"),
        (dict(out_indices=(1, 1)), "level 1 twice"),
        (dict(out_indices=("1",)), "value '1' is not an int"),
        (dict(out_indices=(1.0,)), "value 1.0 is not an int"),
        (dict(out_indices=3), "out_indices=3 must be a sequence"),
        (dict(out_indices=()), r"out_indices=\(\) is empty"),
    )
    def test_bad_features_input(self, kwargs, message):
        with self.assertRaisesRegex(kerasnets.ModelConfigError, message):
            kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), features_only=True, **kwargs)

    def test_feature_info_of_a_classifier(self):
        model = kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), classes=3)
        with self.assertRaisesRegex(kerasnets.ModelConfigError, "'predictions'.*features_only=True"):
            kerasnets.feature_info(model)


if __name__ == "__main__":
    tf.test.main()
