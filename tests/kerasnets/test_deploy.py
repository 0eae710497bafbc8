"""kerasnets.deploy special cases (the every-model check is in test_shapes_and_saving.py)."""
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


class DeployTest(tf.test.TestCase):

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
