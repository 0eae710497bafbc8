"""kerasnets.deploy: RepGhost fused and BN folded, same outputs within 1e-4, for every model."""
from absl.testing import parameterized
import numpy as np

import kerasnets
from kerasnets.backend import keras, tf

L = keras.layers


def randomize_batch_norm(model, seed=0):
    """Give every BN non-trivial statistics so that folding mistakes show."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.2, b.shape),
                               rng.normal(0, 0.2, m.shape), rng.uniform(0.5, 1.5, v.shape)])


class DeployTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(*kerasnets.list_models())
    def test_deploy_matches_train_form(self, name):
        model = kerasnets.get_model(name, input_shape=(64, 80, 3), classes=10, classifier_activation=None)
        randomize_batch_norm(model)
        deployed = kerasnets.deploy(model)
        x = np.random.default_rng(1).normal(size=(2, 64, 80, 3)).astype("float32")
        expected = model(x, training=False).numpy()
        got = deployed(x, training=False).numpy()
        self.assertLess(np.abs(expected - got).max(), 1e-4)
        self.assertEqual(deployed.input_shape, model.input_shape)
        self.assertEqual(deployed.output_shape, model.output_shape)
        self.assertFalse(any(isinstance(l, L.BatchNormalization) for l in deployed.layers))
        self.assertFalse(any(l.name.endswith("fusion_add") for l in deployed.layers))
        self.assertEqual(kerasnets.count_macs(deployed), kerasnets.count_macs(model))

    def test_split_group_conv_folds_too(self):
        model = kerasnets.get_model("shufflenet_v1_g3_x0_5", input_shape=(64, 64, 3), classes=5,
                                    classifier_activation=None, group_conv="split")
        randomize_batch_norm(model)
        deployed = kerasnets.deploy(model)
        x = np.random.default_rng(2).normal(size=(1, 64, 64, 3)).astype("float32")
        self.assertAllClose(model(x, training=False), deployed(x), atol=1e-4)
        self.assertFalse(any(isinstance(l, L.BatchNormalization) for l in deployed.layers))

    def test_refuses_non_functional_models(self):
        with self.assertRaisesRegex(ValueError, "functional Keras model"):
            kerasnets.deploy(keras.Sequential())
