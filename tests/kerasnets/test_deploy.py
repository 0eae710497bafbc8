"""kerasnets.deploy special cases (the every-model check is in test_shapes_and_saving.py)."""
import numpy as np

import kerasnets
from kerasnets.backend import keras, tf
from kerasnets.stats import randomize_batch_norm

L = keras.layers


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
