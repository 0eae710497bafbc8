"""The "tf" and "torch" conventions: same weights and counts, PyTorch's padding / BN epsilon /
ShuffleNet V1 shuffle and pooling in "torch", stage-based layer names, names for overrides."""
import os
import tempfile

from absl.testing import parameterized
import numpy as np
import pytest

import kerasnets
from kerasnets import layers as kl
from kerasnets.backend import keras, tf
from kerasnets.builder import BuildOptions, block_prefixes, build_model
from kerasnets.spec import Block, ModelSpec, Top
from kerasnets.stats import randomize_batch_norm
from kerasnets.zoo import _REGISTRY

L = keras.layers
ONE_PER_FAMILY = ("mobilenet_v2_035", "axspine_small", "shufflenet_v1_g3_x0_5", "shufflenet_v2_x0_5",
                  "ghostnet_050", "repghostnet_050", "efficientnet_edgetpu_s", "mobilenet_v3_small_100",
                  "regnetx_002", "vgg16")


def _x(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _single_block_model(block, convention, size=8, cin=3):
    spec = ModelSpec("one_block", (block,), Top())
    return build_model(spec, keras.Input((size, size, cin)), include_top=False,
                       options=BuildOptions(convention=convention))


def _nchw(x):
    return np.transpose(x, (0, 3, 1, 2))


def _nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


class CountsSweepTest(tf.test.TestCase, parameterized.TestCase):
    pytestmark = pytest.mark.slow  # 2-9 s per family, about 45 s for the sweep on 2 cores

    @parameterized.parameters(*ONE_PER_FAMILY)
    def test_same_params_and_macs_in_both_conventions(self, name):
        top = name != "vgg16"  # VGG16's 120M-parameter classifier adds nothing here
        tf_model = kerasnets.get_model(name, input_shape=(64, 64, 3), classes=10, include_top=top)
        torch_model = kerasnets.get_model(name, input_shape=(64, 64, 3), classes=10, include_top=top,
                                          convention="torch")
        self.assertEqual(kerasnets.count_params(torch_model), kerasnets.count_params(tf_model))
        self.assertEqual(kerasnets.count_macs(torch_model), kerasnets.count_macs(tf_model))
        self.assertEqual(torch_model.output_shape, tf_model.output_shape)
        self.assertEqual([w.shape for w in torch_model.weights], [w.shape for w in tf_model.weights])
        self.assertEqual(kerasnets.model_convention(tf_model), "tf")
        self.assertEqual(kerasnets.model_convention(torch_model), "torch")
        pads = [l for l in torch_model.layers if isinstance(l, L.ZeroPadding2D)]
        self.assertEqual(bool(pads), name != "vgg16")  # VGG16 has no strided padded window
        self.assertFalse(any(isinstance(l, L.ZeroPadding2D) for l in tf_model.layers))


class CountsTest(tf.test.TestCase):

    def test_torch_convention_matches_the_reference_counts_at_224(self):
        for name in ("shufflenet_v1_g3_x0_5", "mobilenet_v2_035"):
            ref = kerasnets.get_model_info(name)["reference"]
            model = kerasnets.get_model(name, input_shape=(224, 224, 3), convention="torch")
            self.assertEqual(model.count_params(), ref["keras_count_params_equiv"], name)
            self.assertEqual(kerasnets.count_macs(model), ref["macs_conv_linear_224"], name)

    def test_bn_epsilon_follows_the_convention_unless_set(self):
        def eps(model):
            return {l.epsilon for l in model.layers if isinstance(l, L.BatchNormalization)}
        kwargs = dict(input_shape=(32, 32, 3), classes=3)
        self.assertEqual(eps(kerasnets.get_model("mobilenet_v2_035", **kwargs)), {1e-3})
        self.assertEqual(eps(kerasnets.get_model("mobilenet_v2_035", convention="torch", **kwargs)), {1e-5})
        self.assertEqual(eps(kerasnets.get_model("mobilenet_v2_035", convention="torch", bn_epsilon=1e-3,
                                                 **kwargs)), {1e-3})


class PaddingTest(tf.test.TestCase):

    def test_strided_conv_pads_symmetrically(self):
        for k in (3, 5):
            x = _x((1, 8, 8, 3), k)
            out = {}
            for convention in ("tf", "torch"):
                model = _single_block_model(Block("conv", 4, k, 2, act=None), convention)
                conv = next(l for l in model.layers if isinstance(l, L.Conv2D))
                conv.set_weights([_x(conv.kernel.shape, 10 + k)])
                out[convention] = model(x, training=False).numpy()
            p = k // 2
            ref = tf.nn.conv2d(x, conv.kernel, 2, [[0, 0], [p, p], [p, p], [0, 0]]).numpy() / np.sqrt(1 + 1e-5)
            self.assertAllClose(out["torch"], ref, atol=1e-5)
            self.assertEqual(out["torch"].shape, (1, 4, 4, 4))
            self.assertGreater(np.abs(out["tf"] - ref).max(), 1e-2)  # 'same' pads (0, 1) / (1, 2) here

    def test_strided_depthwise_pads_symmetrically(self):
        x = _x((1, 8, 8, 8), 3)
        model = _single_block_model(Block("ds", 8, 5, 2, act=None), "torch", cin=8)
        dw = model.get_layer("stage1_block0_dw")
        self.assertEqual(dw.padding, "valid")
        self.assertIsInstance(model.get_layer("stage1_block0_dw_pad"), L.ZeroPadding2D)
        dw.set_weights([_x(dw.depthwise_kernel.shape, 4)])
        probe = keras.Model(model.input, dw.output)
        ref = tf.nn.depthwise_conv2d(x, dw.depthwise_kernel, [1, 2, 2, 1], [[0, 0], [2, 2], [2, 2], [0, 0]])
        self.assertAllClose(probe(x), ref, atol=1e-5)

    def test_stride_one_windows_stay_same(self):
        model = kerasnets.get_model("ghostnet_050", input_shape=(32, 32, 3), classes=3, convention="torch")
        for layer in model.layers:
            if isinstance(layer, L.Conv2D) and layer.strides == (1, 1) and layer.kernel_size[0] > 1:
                self.assertEqual(layer.padding, "same", layer.name)
            if isinstance(layer, L.Conv2D) and layer.strides == (2, 2) and layer.kernel_size[0] > 1:
                self.assertEqual(layer.padding, "valid", layer.name)

    def test_torch_max_pool_equals_minus_inf_padding(self):
        model = kerasnets.get_model("shufflenet_v2_x0_5", input_shape=(32, 32, 3), classes=3, convention="torch")
        probe = keras.Model(model.input, [model.get_layer("stage1_block0_relu").output,
                                          model.get_layer("stage2_block0_maxpool").output])
        stem, pooled = [t.numpy() for t in probe(_x((1, 32, 32, 3)), training=False)]
        padded = np.pad(stem, [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=-np.inf)
        ref = np.stack([np.stack([padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].max(axis=(1, 2))
                                  for j in range(8)], 1) for i in range(8)], 1)
        self.assertAllClose(pooled, ref)

    def test_torch_max_pool_refuses_a_signed_input(self):
        spec = ModelSpec("t", (Block("conv", 4, 3, 1, act=None), Block("maxpool", 4, 3, 2)), Top())
        with self.assertRaisesRegex(kerasnets.ModelConfigError, "stage1_block0.*ReLU"):
            build_model(spec, keras.Input((8, 8, 3)), include_top=False, options=BuildOptions(convention="torch"))


class ShuffleNetV1Test(tf.test.TestCase):

    def test_shuffle_orders_are_torchvision_and_megvii(self):
        b, c, h, w, g = 2, 12, 3, 2, 3
        x = _x((b, h, w, c))
        nchw = _nchw(x)
        torchvision = _nhwc(nchw.reshape(b, g, c // g, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w))
        megvii = _nhwc(nchw.reshape(b, c // g, g, h, w).transpose(0, 2, 1, 3, 4).reshape(b, c, h, w))
        self.assertGreater(np.abs(torchvision - megvii).max(), 0.1)  # the two orders differ
        for mode in kl.SHUFFLE_MODES:
            self.assertAllEqual(kl.ChannelShuffle(g, mode)(x), torchvision)
            self.assertAllEqual(kl.ChannelShuffle(g, mode, order="groups_last")(x), megvii)
        self.assertEqual(kl.ChannelShuffle(g, order="groups_last").get_config()["order"], "groups_last")
        with self.assertRaisesRegex(ValueError, "'inverse'"):
            kl.ChannelShuffle(g, order="inverse")

    @pytest.mark.slow
    def test_models_use_the_reference_order(self):
        def orders(name, convention):
            model = kerasnets.get_model(name, input_shape=(32, 32, 3), classes=3, convention=convention)
            return {l.order for l in model.layers if isinstance(l, kl.ChannelShuffle)}
        self.assertEqual(orders("shufflenet_v1_g3_x0_5", "tf"), {"groups_first"})
        self.assertEqual(orders("shufflenet_v1_g3_x0_5", "torch"), {"groups_last"})
        for convention in ("tf", "torch"):  # torchvision's ShuffleNet V2 order in both
            self.assertEqual(orders("shufflenet_v2_x0_5", convention), {"groups_first"})

    def test_stride_two_avg_pool_counts_the_padding(self):
        out = {}
        for convention in ("tf", "torch"):
            model = kerasnets.get_model("shufflenet_v1_g3_x0_5", input_shape=(32, 32, 3), classes=3,
                                        convention=convention)
            probe = keras.Model(model.input, [model.get_layer("stage2_block0_maxpool").output,
                                              model.get_layer("stage3_block0_avgpool").output])
            out[convention] = [t.numpy() for t in probe(_x((1, 32, 32, 3)) + 1.0, training=False)]
        x, pooled = out["torch"]
        padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
        ref = np.stack([np.stack([padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3].sum(axis=(1, 2)) / 9.0
                                  for j in range(4)], 1) for i in range(4)], 1)
        self.assertAllClose(pooled, ref, atol=1e-6)
        self.assertGreater(np.abs(out["tf"][1] - ref).max(), 1e-3)  # 'same' averages real inputs only


class DeployTorchTest(tf.test.TestCase):

    @pytest.mark.slow  # 5-7 s: the fast tier keeps the cheaper tests of the same code
    def test_deploy_keeps_the_function(self):
        x = _x((2, 64, 64, 3), 5)
        for name in ("repghostnet_050", "shufflenet_v1_g3_x0_5"):
            model = kerasnets.get_model(name, input_shape=(64, 64, 3), classes=7, classifier_activation=None,
                                        convention="torch")
            randomize_batch_norm(model)
            deployed = kerasnets.deploy(model)
            self.assertLess(np.abs(deployed(x).numpy() - model(x, training=False).numpy()).max(), 1e-4, name)
            self.assertFalse(any(isinstance(l, L.BatchNormalization) for l in deployed.layers))
            self.assertFalse(any(l.name.endswith("fusion_add") for l in deployed.layers))
            self.assertEqual(kerasnets.model_convention(deployed), "torch")

    @pytest.mark.slow
    def test_keras_round_trip_keeps_convention_and_order(self):
        model = kerasnets.get_model("shufflenet_v1_g3_x0_5", input_shape=(32, 32, 3), classes=3,
                                    convention="torch")
        path = os.path.join(tempfile.mkdtemp(), "m.keras")
        model.save(path)
        loaded = keras.models.load_model(path, safe_mode=True)
        x = _x((1, 32, 32, 3))
        self.assertAllClose(model(x, training=False), loaded(x, training=False), atol=1e-6)
        self.assertEqual(kerasnets.model_convention(loaded), "torch")
        vgg = kerasnets.get_model("vgg16", input_shape=(32, 32, 3), include_top=False, convention="torch")
        self.assertEqual((vgg.name, kerasnets.model_convention(vgg)), ("vgg16_torch", "torch"))

    def test_bad_convention(self):
        with self.assertRaisesRegex(kerasnets.ModelConfigError, "convention='pytorch'"):
            kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), convention="pytorch")


class NamesTest(tf.test.TestCase):

    def test_block_prefixes_follow_the_stride(self):
        spec = _REGISTRY["mobilenet_v2_100"].spec()
        self.assertEqual(block_prefixes(spec)[:6], ["stage1_block0", "stage1_block1", "stage2_block0",
                                                    "stage2_block1", "stage3_block0", "stage3_block1"])
        vgg = block_prefixes(_REGISTRY["vgg16"].spec())
        self.assertEqual(vgg[:4], ["stage0_block0", "stage1_block0", "stage1_block1", "stage2_block0"])
        model = kerasnets.get_model("mobilenet_v2_100", input_shape=(32, 32, 3), classes=3)
        self.assertIsInstance(model.get_layer("stage3_block2_expand_conv"), L.Conv2D)
        self.assertFalse([l.name for l in model.layers if l.name[:1] == "b" and l.name[1:2].isdigit()])

    def test_adding_a_block_renames_only_its_stage(self):
        base = _REGISTRY["axspine_small"].spec()
        deeper = _REGISTRY["axspine_small"].spec(depths=(2, 3, 6, 2))
        a, b = block_prefixes(base), block_prefixes(deeper)
        self.assertEqual([p for p in a if not p.startswith("stage3_")], [p for p in b if not p.startswith("stage3_")])

    @pytest.mark.slow
    def test_overrides_name_the_model(self):
        small = dict(input_shape=(32, 32, 3), classes=3)
        self.assertEqual(kerasnets.ShuffleNetV1(groups=2, **small).name, "shufflenet_v1_g2_x1_0")
        self.assertEqual(kerasnets.get_model("shufflenet_v1_g3_x1_0", groups=2, **small).name,
                         "shufflenet_v1_g2_x1_0")
        self.assertEqual(kerasnets.get_model("shufflenet_v1_g3_x1_0", groups=3, **small).name,
                         "shufflenet_v1_g3_x1_0")
        self.assertEqual(kerasnets.get_model("axspine_small", alignment=8, **small).name, "axspine_small_alignment8")
        self.assertEqual(kerasnets.get_model("mobilenet_v2_100", width=0.5, **small).name, "mobilenet_v2_050")
        self.assertEqual(kerasnets.get_model("repghostnet_050", convention="torch", **small).name,
                         "repghostnet_050_torch")


if __name__ == "__main__":
    tf.test.main()
