"""Hardware-friendly layers: shuffle, grouped conv forms, adaptive pooling, hard-swish."""
import numpy as np
import pytest

import kerasnets
from kerasnets import layers as kl
from kerasnets.backend import keras, tf
from kerasnets.export import tflite as tflite_export
from ai_edge_litert.interpreter import Interpreter


def _non_unit_dims(shape):
    return sum(1 for d in shape if d != 1)


def tflite_tensor_shapes(name, **overrides):
    """Build ``name`` at batch 1, convert it, and return the shape of every activation tensor
    (graph inputs and op outputs; constant weights such as 4-D conv filters are not activations)."""
    model = kerasnets.get_model(name, input_tensor=keras.Input((64, 64, 3), batch_size=1), classes=10, **overrides)
    # export.tflite.convert: the concrete-function path (TFLiteConverter.from_keras_model traces a SavedModel
    # first, 10-25x slower: this test took 95 s in CI with it)
    interpreter = Interpreter(model_content=tflite_export.convert(model, "float32", deploy=False))
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}
    activations = {d["index"] for d in interpreter.get_input_details()}
    for op in interpreter._get_ops_details():
        activations.update(int(i) for i in op["outputs"])
    return [shapes[i] for i in sorted(activations)]


class ChannelShuffleTest(tf.test.TestCase):

    def test_matches_the_reference_permutation(self):
        x = np.arange(2 * 3 * 4 * 12, dtype="float32").reshape(2, 3, 4, 12)
        groups = 3
        per = 12 // groups
        expected = x.reshape(2, 3, 4, groups, per).transpose(0, 1, 2, 4, 3).reshape(2, 3, 4, 12)
        for mode in ("low_rank", "5d"):
            self.assertAllEqual(kl.ChannelShuffle(groups, mode)(x), expected)

    def test_refuses_indivisible_channels_and_unknown_modes(self):
        with self.assertRaisesRegex(ValueError, "10 channels into 3"):
            kl.ChannelShuffle(3)(np.zeros((1, 2, 2, 10), "float32"))
        with self.assertRaisesRegex(ValueError, "mode 'cube'"):
            kl.ChannelShuffle(3, "cube")

    @pytest.mark.slow
    def test_shufflenets_at_batch_1_keep_at_most_3_non_unit_dims(self):
        for name in ("shufflenet_v1_g3_x0_5", "shufflenet_v1_g8_x0_5", "shufflenet_v2_x0_5"):
            shapes = tflite_tensor_shapes(name)
            self.assertTrue(all(_non_unit_dims(s) <= 3 for s in shapes), (name, max(shapes, key=_non_unit_dims)))
        five_d = tflite_tensor_shapes("shufflenet_v2_x0_5", shuffle="5d")
        self.assertTrue(any(_non_unit_dims(s) > 3 for s in five_d))


class GroupConvTest(tf.test.TestCase):

    def test_split_form_equals_native_grouped_conv(self):
        x = np.random.default_rng(0).normal(size=(2, 9, 11, 12)).astype("float32")
        native = keras.layers.Conv2D(6, 3, strides=2, padding="same", groups=3, use_bias=True)
        split = kl.GroupConv2D(6, 3, strides=2, padding="same", groups=3, use_bias=True)
        y = native(x)
        split(x)
        split.set_weights([w + 0 for w in native.get_weights()])
        self.assertAllClose(split(x), y, atol=1e-5)

    @pytest.mark.slow
    def test_whole_models_agree_between_forms(self):
        for name in ("shufflenet_v1_g8_x0_5", "regnetx_002", "axspine_small"):
            native = kerasnets.get_model(name, input_shape=(64, 64, 3), classes=4)
            split = kerasnets.get_model(name, input_shape=(64, 64, 3), classes=4, group_conv="split")
            self.assertTrue(any(isinstance(l, kl.GroupConv2D) for l in split.layers))
            split.set_weights(native.get_weights())
            x = np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype("float32")
            self.assertAllClose(native(x), split(x), atol=1e-5)


class SmallLayersTest(tf.test.TestCase):

    def test_adaptive_pool_uses_pytorch_bins(self):
        x = np.random.default_rng(0).normal(size=(1, 10, 9, 2)).astype("float32")
        y = kl.AdaptiveAveragePooling2D((7, 7))(x).numpy()
        for i in range(7):
            for j in range(7):
                r0, r1 = (i * 10) // 7, -(-(i + 1) * 10 // 7)
                c0, c1 = (j * 9) // 7, -(-(j + 1) * 9 // 7)
                self.assertAllClose(y[0, i, j], x[0, r0:r1, c0:c1].mean(axis=(0, 1)), atol=1e-6)
        same = np.ones((1, 7, 7, 3), "float32")
        self.assertAllEqual(kl.AdaptiveAveragePooling2D((7, 7))(same), same)

    def test_hard_swish_and_sigmoid(self):
        x = np.array([-4.0, -3.0, -1.0, 0.0, 1.0, 3.0, 5.0], "float32")
        self.assertAllClose(kl.HardSigmoid()(x), np.clip(x + 3, 0, 6) / 6)
        self.assertAllClose(kl.HardSwish()(x), x * np.clip(x + 3, 0, 6) / 6)

    def test_channel_slice_bounds(self):
        self.assertEqual(kl.ChannelSlice(2, 3)(np.zeros((1, 2, 2, 6), "float32")).shape, (1, 2, 2, 3))
        with self.assertRaisesRegex(ValueError, r"\[4, 8\) does not fit in 6 channels"):
            kl.ChannelSlice(4, 4)(np.zeros((1, 2, 2, 6), "float32"))
