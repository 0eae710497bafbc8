"""Every model builds at non-square sizes, runs, deploys to the same outputs, and round-trips
through .keras without Lambda layers (one build per model shared by the checks, for speed)."""
import os
import tempfile

from absl.testing import parameterized
import numpy as np
import pytest

import kerasnets
from kerasnets.backend import keras, tf
from kerasnets.stats import randomize_batch_norm
from tests.helpers import split_sweep

L = keras.layers


# 7-15 s a model (one build at 1080x1920 each): one in the fast tier, the whole zoo in make test.
FAST_MODELS, SLOW_MODELS = split_sweep(kerasnets.list_models(), fast=("shufflenet_v1_g3_x0_5",))


class EveryModelTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(*FAST_MODELS)
    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_non_square_sizes_deploy_and_keras_round_trip(self, name):
        self._check_model(name)

    @parameterized.parameters(*SLOW_MODELS)
    @pytest.mark.slow
    def test_non_square_sizes_deploy_and_keras_round_trip_rest_of_zoo(self, name):
        self._check_model(name)

    def _check_model(self, name):
        x = np.random.default_rng(0).normal(size=(2, 72, 104, 3)).astype("float32")
        model = kerasnets.get_model(name, input_shape=(72, 104, 3), classes=7, classifier_activation=None)
        randomize_batch_norm(model)
        y = model(x, training=False)
        self.assertEqual(y.shape, (2, 7))
        # deploy(): RepGhost fused, every BN folded, same logits within 1e-4.
        deployed = kerasnets.deploy(model)
        self.assertLess(np.abs(deployed(x).numpy() - y.numpy()).max(), 1e-4)
        self.assertEqual((deployed.input_shape, deployed.output_shape), (model.input_shape, model.output_shape))
        # Every BN after a conv is folded; ResNet V2's pre-activation BNs (after an Add) stay.
        self.assertFalse([l.name for l in deployed.layers if isinstance(l, L.BatchNormalization)
                          and isinstance(l.inbound_nodes[0].inbound_layers, (L.Conv2D, L.Dense))])
        if not name.endswith("_v2"):
            self.assertFalse(any(isinstance(l, L.BatchNormalization) for l in deployed.layers))
        self.assertFalse(any(l.name.endswith("fusion_add") for l in deployed.layers))
        self.assertEqual(kerasnets.count_macs(deployed), kerasnets.count_macs(model))
        self.assertFalse([l.name for l in model.layers if type(l).__name__ in ("Lambda", "TFOpLambda")])
        # .keras round trip with the custom layers, loadable in safe mode (no code deserialized).
        path = os.path.join(tempfile.mkdtemp(), f"{name}.keras")
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        self.assertAllClose(y, loaded(x), atol=1e-6)
        self.assertEqual(loaded.count_params(), model.count_params())
        os.remove(path)
        # Without the top: 'same' padding rounds up (72x104 -> 3x4 at /32); VGG's valid pools round down.
        features = kerasnets.get_model(name, input_shape=(72, 104, 3), include_top=False)
        self.assertEqual(features(x).shape[:3], (2, 2, 3) if name == "vgg16" else (2, 3, 4))
        # A large non-square input builds with static shapes (not run: CPU time).
        big = kerasnets.get_model(name, input_shape=(1080, 1920, 3), classes=3)
        self.assertEqual(big.output_shape, (None, 3))

    @pytest.mark.slow
    def test_runs_at_320x576(self):
        for name in ("mobilenet_v2_035", "axspine_small", "shufflenet_v2_x0_5", "repghostnet_050"):
            model = kerasnets.get_model(name, input_shape=(320, 576, 3), include_top=False)
            self.assertEqual(model(np.zeros((1, 320, 576, 3), "float32")).shape[1:3], (10, 18))

    @pytest.mark.slow
    def test_pooling_without_top(self):
        for pooling in ("avg", "max"):
            model = kerasnets.get_model("ghostnet_050", input_shape=(64, 96, 3), include_top=False, pooling=pooling)
            self.assertEqual(model.output_shape, (None, 480))

    def test_input_tensor_and_family_constructors(self):
        inp = keras.Input((96, 64, 3))
        model = kerasnets.MobileNetV2(0.5, input_tensor=inp, classes=3)
        self.assertEqual(model.name, "mobilenet_v2_050")
        self.assertIs(model.inputs[0], inp)
        self.assertEqual(kerasnets.ShuffleNetV1(0.5, groups=8, input_shape=(64, 64, 3)).name, "shufflenet_v1_g8_x0_5")
        g2 = kerasnets.ShuffleNetV1(1.0, groups=2, input_shape=(64, 64, 3), classes=3)
        self.assertEqual(g2.get_layer("stage3_block0_gconv2_conv").groups, 2)

    @pytest.mark.slow  # builds four more models (~6 s)
    def test_constructors_of_the_later_families(self):
        # the families added later have constructors too, named as their registry entries
        self.assertEqual(kerasnets.VargNetV2(0.5, input_shape=(64, 64, 3), classes=3).name, "vargnetv2_050")
        self.assertEqual(kerasnets.VargNetV2(0.75, input_shape=(64, 64, 3), classes=3).name, "vargnetv2_075")
        self.assertEqual(kerasnets.ResNet50V2(input_shape=(64, 64, 3), classes=3).name, "resnet50_v2")
        self.assertEqual(kerasnets.MixVarGENet(input_shape=(64, 64, 3), classes=3).name, "mixvargenet_100")


class WeightsTest(tf.test.TestCase):

    def test_weights_argument_loads_a_file(self):
        model = kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), classes=3)
        path = os.path.join(tempfile.mkdtemp(), "w.weights.h5")
        model.save_weights(path)
        again = kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), classes=3, weights=path)
        for a, b in zip(model.get_weights(), again.get_weights()):
            self.assertAllEqual(a, b)
        not_weights = os.path.join(tempfile.mkdtemp(), "notes.txt")
        with open(not_weights, "w") as f:
            f.write("not an HDF5 file")
        with self.assertRaisesRegex(kerasnets.ModelConfigError, r"notes.txt' could not be loaded into mobilenet_v2_035"):
            kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), classes=3, weights=not_weights)
