"""Horizon Robotics' VarGNet family (VargNetV2, TinyVargNetV2, MixVarGENet) against the VarGNet digest.

No public implementation of these models runs here, and no parameter or MAC count is published
for them. The figures below are copied from the project's VarGNet facts digest (section 6:
counts its independent counter computes from the digest's block rules, at 1000 classes; MACs at
224x224 unless said otherwise), and the seven MAC comments of Horizon's ``mixvargenet_cls_id6``
ImageNet-128 config (the digest's section 4.5: "X M x 2" FLOPs read as X M MACs), the only
published counts of the family. The exact integers the registry checks are in
kerasnets/data/reference_counts.json (computed from the same rules; each row's note quotes the
digest's rounded figures, which the tests below hold them to).
"""
import json
import os
import tempfile

import numpy as np
import pytest

import kerasnets
from kerasnets import families
from kerasnets import spec as kspec
from kerasnets.backend import keras, tf
from kerasnets.builder import BuildOptions, block_prefixes, build_model
from kerasnets.errors import ModelConfigError
from kerasnets.heads import float_head_layer_names
from kerasnets.zoo import get_spec
from tests.helpers import random_images, randomized_bn

L = keras.layers
VARGNET_MODELS = ("vargnetv2_025", "vargnetv2_050", "vargnetv2_100", "tinyvargnetv2_100", "mixvargenet_100")
SOURCE = "computed from the VarGNet digest (no public implementation runs here)"

# Digest section 6: (params train in M, params Keras (with BN moving statistics) in M, MACs in M).
DIGEST_COUNTS = {
    "vargnetv2_100": (3.629, 3.661, 360.2),
    "vargnetv2_050": (1.918, 1.936, 130.8),
    "vargnetv2_025": (1.371, 1.382, 53.5),
    "tinyvargnetv2_100": (2.634, 2.655, 267.1),
    "mixvargenet_100": (2.311, 2.325, 1033.7),  # section 4.4 layout, bias=True
}
DIGEST_BACKBONE = {"vargnetv2_100": (2.337, 2.365, 346.3), "mixvargenet_100": (1.117, 1.127, 1024.7)}
DIGEST_MIX_NO_BIAS = (2.304, 2.318, 1033.7)  # bias=False, the 1x1 shortcuts keep theirs
# Digest section 6, per stage at alpha 1: (params train in k, MACs in M); "head" = the 1x1 head conv
# plus the 1x1 conv + BN classifier.
DIGEST_STAGES = {
    "vargnetv2_100": {"stem": (1.0, 10.8), "mod2": (10.6, 31.3), "mod3": (117.2, 88.7), "mod4": (759.7, 145.5),
                      "mod5": (1448.2, 69.9), "head": (1292.2, 13.9)},
    "mixvargenet_100": {"stem": (1.0, 10.8), "mod2": (20.8, 256.9), "mod3": (125.4, 388.6), "mod4": (377.5, 293.8),
                        "mod5": (319.5, 61.4), "mod6": (272.7, 13.1), "head": (1193.9, 9.1)},
}
# Digest section 4.5 / 6 at 128x128 with the head: (HAT config comment in M MACs, digest's count in M).
CLS6_MACS = {"cls6_v1": (355, 357.2), "cls6_v2": (305, 304.8), "cls6_v3": (289, 289.0), "cls6_v4": (237, 236.6),
             "cls6_v5": (228, 228.2), "cls6_v6": (189, 189.4), "cls6_v7": (105, 104.8)}
# Feature endpoints at out_indices (0, 1, 2, 3, 4) (reductions 2 ... 32), head conv excluded.
ENDPOINT_CHANNELS = {"vargnetv2_050": [16, 16, 32, 64, 128], "mixvargenet_100": [32, 32, 64, 96, 160]}


def _trainable(layers):
    return sum(int(np.prod(w.shape)) for layer in layers for w in layer.trainable_weights)


def _counts(model):
    """(params train, params Keras, MACs) of ``model``."""
    return _trainable(model.layers), model.count_params(), kerasnets.count_macs(model)


def _rounded(counts):
    train, keras_params, macs = counts
    return round(train / 1e6, 3), round(keras_params / 1e6, 3), round(macs / 1e6, 1)


def _stage_groups(name):
    """Digest stage label -> the layer-name prefixes of its blocks (the top layers go with "head")."""
    spec = get_spec(name)
    prefixes = block_prefixes(spec)
    mix = name.startswith("mixvargenet")
    labels, stage = [], 0
    for i, block in enumerate(spec.blocks):
        if i == 0:
            labels.append("stem")
        elif block.head:
            labels.append("head")
        else:
            if block.stride == 2 or (mix and i == 1):
                stage += 1
            labels.append(f"mod{stage + 1}")
    groups = {}
    for label, prefix in zip(labels, prefixes):
        groups.setdefault(label, []).append(prefix + "_")
    groups["head"] += ["classifier_"]
    return groups


class DigestCountsTest(tf.test.TestCase):

    def test_reference_rows_name_their_source_and_round_to_the_digest(self):
        for name in VARGNET_MODELS:
            ref = kerasnets.get_model_info(name)["reference"]
            self.assertEqual(ref["source"], SOURCE, name)
            self.assertEqual(ref["keras_count_params_equiv"], ref["params"] + 2 * ref["bn_channels"], name)
            self.assertEqual(_rounded((ref["params"], ref["keras_count_params_equiv"], ref["macs_conv_linear_224"])),
                             DIGEST_COUNTS[name], name)
            self.assertEqual(kerasnets.get_model_info(name)["default_input_shape"], (224, 224, 3))
            self.assertEqual(kerasnets.get_model_info(name)["checkpoints"], [])

    @pytest.mark.slow
    def test_every_model_matches_the_digest(self):
        for name in VARGNET_MODELS:
            model = kerasnets.get_model(name)
            self.assertEqual(_rounded(_counts(model)), DIGEST_COUNTS[name], name)

    def test_totals_exactly_and_per_stage_counts(self):
        for name, stages in DIGEST_STAGES.items():
            model = kerasnets.get_model(name)
            ref = kerasnets.get_model_info(name)["reference"]
            self.assertEqual(_counts(model), (ref["params"], ref["keras_count_params_equiv"],
                                              ref["macs_conv_linear_224"]), name)
            groups = _stage_groups(name)
            self.assertEqual(sorted(groups), sorted(stages))
            for label, (params_k, macs_m) in stages.items():
                layers = [l for l in model.layers if l.name.startswith(tuple(groups[label]))]
                self.assertEqual(round(_trainable(layers) / 1e3, 1), params_k, (name, label))
                self.assertEqual(round(sum(kerasnets.layer_macs(l) for l in layers) / 1e6, 1), macs_m, (name, label))
            # the backbone: everything but the head conv and the classifier
            body = [l for l in model.layers if not l.name.startswith(tuple(groups["head"]))]
            self.assertEqual(_rounded((_trainable(body), sum(int(np.prod(w.shape)) for l in body for w in l.weights),
                                       sum(kerasnets.layer_macs(l) for l in body))), DIGEST_BACKBONE[name], name)

    def test_bias_free_mixvargenet(self):
        no_bias = kerasnets.get_model("mixvargenet_100", bias=False)
        self.assertEqual(no_bias.name, "mixvargenet_100_biasFalse")
        self.assertEqual(_rounded(_counts(no_bias)), DIGEST_MIX_NO_BIAS)
        self.assertTrue(all(no_bias.get_layer(l.name).use_bias for l in no_bias.layers
                            if l.name.endswith("_shortcut_conv")))

    def test_selected_cls6_variant_reproduces_its_published_comment(self):
        self._check_cls6("cls6_v6")

    @pytest.mark.slow
    def test_cls6_variants_reproduce_the_published_comments(self):
        for variant in CLS6_MACS:
            self._check_cls6(variant)

    def _check_cls6(self, variant):
        comment, digest = CLS6_MACS[variant]
        spec = families.mixvargenet_spec(variant)
        self.assertEqual(spec.default_size, (128, 128))
        model = build_model(spec, keras.Input((128, 128, 3)), classes=1000)
        macs = kerasnets.count_macs(model) / 1e6
        self.assertEqual(round(macs, 1), digest, variant)
        self.assertLess(abs(macs - comment) / comment, 0.01, variant)


class StructureTest(tf.test.TestCase):

    def test_blocks_follow_the_digest(self):
        v2 = families.vargnetv2_spec()
        varg = [b for b in v2.blocks if b.kind == "varg"]
        self.assertEqual(len(varg), 1 + 3 + 7 + 4)
        self.assertEqual([b.factor for b in varg[:2]], [1.0, 2.0])  # mod2: 8 // group_base
        self.assertEqual([i for i, b in enumerate(varg) if b.merge], [1, 4, 11])  # first block of mod3..mod5
        self.assertEqual({b.group_width for b in varg}, {8})
        self.assertIsNone(v2.blocks[0].act)
        self.assertEqual(families.tinyvargnetv2_spec().blocks[0].act, "relu")
        self.assertEqual(len([b for b in families.tinyvargnetv2_spec().blocks if b.kind == "varg"]), 1 + 3 + 4 + 2)
        self.assertEqual(v2.blocks[-1].out, 1024)
        self.assertEqual(families.vargnetv2_spec(2.0).blocks[-1].out, 2048)
        mix = families.mixvargenet_spec()
        blocks = [b for b in mix.blocks if b.kind == "mixvarge"]
        self.assertEqual(len(blocks), 1 + 3 + 3 + 7 + 3)
        # mod5's stack blocks: 3x3 96 -> 192 with 6 groups (16 in per group), dense 1x1 192 -> 96
        model = build_model(mix, keras.Input((224, 224, 3)), classes=10)
        conv1 = model.get_layer("stage4_block1_conv1_conv")
        self.assertEqual((conv1.input_shape[-1], conv1.filters, conv1.groups), (96, 192, 6))
        self.assertEqual(model.get_layer("stage4_block1_conv2_conv").groups, 1)
        self.assertIn("stage4_block0_shortcut_conv", [l.name for l in model.layers])
        self.assertNotIn("stage4_block1_shortcut_conv", [l.name for l in model.layers])

    def test_features_only_endpoints(self):
        for name, channels in ENDPOINT_CHANNELS.items():  # depth does not change the endpoints: one block a stage
            model = kerasnets.get_model(name, input_shape=(64, 96, 3), features_only=True, out_indices=(0, 1, 2, 3, 4),
                                        repeats=(1,) * (5 if name.startswith("mix") else 4))
            info = kerasnets.feature_info(model)
            self.assertEqual([d["reduction"] for d in info], [2, 4, 8, 16, 32])
            self.assertEqual([d["channels"] for d in info], channels, name)
            for d, shape in zip(info, model.output_shape):
                self.assertEqual(shape, (None, 64 // d["reduction"], 96 // d["reduction"], d["channels"]))
            self.assertFalse([l.name for l in model.layers if isinstance(l, L.Conv2D) and l.filters == 1024])
            outputs = model(random_images(1, 64, width=96), training=False)
            self.assertEqual([tuple(o.shape) for o in outputs], [(1,) + s[1:] for s in model.output_shape])
        two = kerasnets.get_model("tinyvargnetv2_100", input_shape=(64, 64, 3), features_only=True, out_indices=(4, 2),
                                  repeats=(1, 1, 1, 1))
        self.assertEqual([d["index"] for d in two.feature_info], [4, 2])

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_native_and_split_group_convs_agree(self):
        x = random_images(2, 32)
        for name, overrides in (("vargnetv2_050", {"repeats": (1, 2, 1, 1)}),
                                ("mixvargenet_100", {"alpha": 0.5, "repeats": (1, 1, 2, 1, 1),
                                                     "ops": ("mixvarge_f2", "mixvarge_f2_r_gb16",
                                                             "mixvarge_k3k3_f2_gb16", "mixvarge_f4",
                                                             "mixvarge_f2_gb16")})):
            native = kerasnets.get_model(name, input_shape=(32, 32, 3), classes=10, **overrides)
            split = kerasnets.get_model(name, input_shape=(32, 32, 3), classes=10, group_conv="split", **overrides)
            self.assertTrue(any(type(l).__name__ == "GroupConv2D" for l in split.layers), name)
            self.assertTrue(any(isinstance(l, L.Conv2D) and l.groups > 1 for l in native.layers), name)
            randomized_bn(native)
            split.set_weights(native.get_weights())
            self.assertAllClose(native(x, training=False), split(x, training=False), atol=1e-5)
            self.assertEqual(_counts(native), _counts(split))

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_tf_and_torch_conventions_count_the_same(self):
        for name, repeats in (("vargnetv2_025", (1, 2, 1, 1)), ("mixvargenet_100", (1, 2, 1, 1, 2))):
            tf_model = kerasnets.get_model(name, input_shape=(64, 64, 3), classes=10, repeats=repeats)
            torch_model = kerasnets.get_model(name, input_shape=(64, 64, 3), classes=10, convention="torch",
                                              repeats=repeats)
            self.assertEqual(_counts(tf_model), _counts(torch_model), name)
            self.assertEqual(kerasnets.model_convention(torch_model), "torch")
            self.assertEqual(kerasnets.model_convention(tf_model), "tf")
            self.assertEqual(torch_model.output_shape, tf_model.output_shape)
            self.assertEqual({l.epsilon for l in torch_model.layers if isinstance(l, L.BatchNormalization)}, {1e-5})

    def test_classifier_is_a_1x1_conv_and_bn(self):
        model = kerasnets.get_model("vargnetv2_025", input_shape=(32, 32, 3), classes=7, classifier_activation=None,
                                    repeats=(1, 1, 1, 1))
        self.assertEqual([l.name for l in model.layers[-5:]],
                         ["avg_pool", "classifier_conv", "classifier_bn", "flatten", "predictions"])
        self.assertEqual(model.get_layer("classifier_conv").kernel_size, (1, 1))
        self.assertEqual(float_head_layer_names(model),
                         ["classifier_conv", "classifier_bn", "flatten", "predictions"])
        randomized_bn(model)
        x = random_images(3, 32)
        deployed = kerasnets.deploy(model)
        self.assertFalse([l for l in deployed.layers if isinstance(l, L.BatchNormalization)])
        self.assertLess(np.abs(deployed(x).numpy() - model(x, training=False).numpy()).max(), 1e-4)
        soft = kerasnets.get_model("vargnetv2_025", input_shape=(32, 32, 3), classes=7, repeats=(1, 1, 1, 1))
        self.assertAllClose(np.sum(soft(x, training=False).numpy(), -1), np.ones(3), atol=1e-5)


class SpecAndErrorsTest(tf.test.TestCase):

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_specs_save_and_load(self):
        folder = tempfile.mkdtemp()
        for spec in (families.vargnetv2_spec(0.5, group_base=16, head_factor=2, factor=1.5),
                     families.tinyvargnetv2_spec(), families.mixvargenet_spec(),
                     families.mixvargenet_spec("cls6_v6", ops=("mixvarge_f2_r", "mixvarge_k3k3_f2_gb16",
                                                               "mixvarge_k3k3_f2_gb16", "mixvarge_f4_gb16",
                                                               "mixvarge_f2_r_gb16"), bias=False)):
            path = kspec.save_spec(spec, os.path.join(folder, f"{spec.name}.json"), BuildOptions(convention="torch"))
            loaded, options = kspec.load_spec(path, check=False)  # the build below checks the last one
            self.assertEqual(loaded, spec)
            self.assertEqual(options["convention"], "torch")
        from_file = kerasnets.get_model(spec=path, input_shape=(64, 64, 3), classes=10)
        direct = build_model(spec, keras.Input((64, 64, 3)), classes=10, options=BuildOptions(convention="torch"))
        self.assertEqual(_counts(from_file), _counts(direct))

    def test_a_spec_file_with_an_impossible_group_width_is_refused(self):
        data = kspec.spec_to_dict(families.vargnetv2_spec(0.5))
        data["blocks"][1]["group_width"] = 5
        path = os.path.join(tempfile.mkdtemp(), "bad.json")
        with open(path, "w") as f:
            json.dump(data, f)
        with self.assertRaisesRegex(ModelConfigError, r"16 input channels are not a multiple of group_width 5"):
            kspec.load_spec(path)

    def test_bad_arguments_name_the_value_and_the_fix(self):
        cases = [
            (dict(alpha=0.75, group_base=16, head_factor=2), r"alpha=0.75 gives a 24-channel layer, not a multiple "
                                                              r"of group_base 16; pick an alpha"),
            (dict(group_base=16), r"head_factor=1 with group_base=16 .* pass head_factor=2"),
            (dict(factor=1.3), r"factor=1.3 widens each group of 8 channels to 10.4"),
            (dict(repeats=(1, 2)), r"repeats=\(1, 2\) must be 4 positive integers"),
            (dict(head_factor=3), r"head_factor=3 for vargnetv2_100 must be 1 or 2"),
            (dict(alpha=0), r"alpha=0 for vargnetv2_100 must be a positive number"),
        ]
        for overrides, message in cases:
            with self.assertRaisesRegex(ModelConfigError, message):
                kerasnets.get_model("vargnetv2_100", input_shape=(32, 32, 3), **overrides)
        with self.assertRaisesRegex(ModelConfigError, r"MixVarGENet alpha=0.25 gives a 24-channel layer"):
            kerasnets.get_model("mixvargenet_100", alpha=0.25)
        with self.assertRaisesRegex(ModelConfigError, r"op mixvarge_k3k3_f2_gb16 on a 32 -> 48 block: its second "
                                                      r"conv cannot split 64 channels into 3 groups"):
            families.mixvargenet_spec(alpha=0.5, ops=("mixvarge_f2",) * 3 + ("mixvarge_k3k3_f2_gb16",) * 2)
        with self.assertRaisesRegex(ModelConfigError, r"'mixvarge_f3' is not one of"):
            families.mixvargenet_spec(ops=("mixvarge_f3",) * 5)
        with self.assertRaisesRegex(ModelConfigError, r"variant 'cls6_v9' is unknown"):
            families.mixvargenet_spec("cls6_v9")

    def test_overrides_name_the_model(self):
        self.assertEqual(get_spec("vargnetv2_100", alpha=0.5).name, "vargnetv2_050")
        self.assertEqual(get_spec("vargnetv2_100", group_base=16, head_factor=2).name,
                         "vargnetv2_100_group_base16_head_factor2")
        self.assertEqual(get_spec("tinyvargnetv2_100", repeats=(1, 2, 2, 1)).name, "tinyvargnetv2_100_repeats1x2x2x1")
        self.assertEqual(get_spec("mixvargenet_100", alpha=0.5).name, "mixvargenet_050")


def _small_vargnet(size=32):
    model = kerasnets.get_model("vargnetv2_025", input_shape=(size, size, 3), classes=10, repeats=(1, 1, 1, 1))
    return randomized_bn(model)


class ExportTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_float_and_int8_tflite_estimate_and_partition(self):
        from kerasnets.export import cost, partition, runtime, tflite  # the export side of the same models
        images = random_images(16, 32, seed=3)
        for model in (_small_vargnet(), randomized_bn(kerasnets.get_model(
                "mixvargenet_100", input_shape=(32, 32, 3), classes=10, alpha=0.5, repeats=(1, 1, 1, 2, 1)))):
            for mode in ("float32", "int8"):
                content = tflite.convert(model, mode, representative_data=images, calibration_count=16)
                report = runtime.verify(model, content, images, mode)
                self.assertTrue(report["passed"], (model.name, mode, report))
            for profile in ("m55h", "edgetpu_usb"):
                result = cost.estimate(model, profile)
                self.assertEqual(result["totals"]["macs"], kerasnets.count_macs(model))
                self.assertGreater(result["totals"]["latency_ms"], 0)
                self.assertTrue(any(r.kind == "group_conv" for r in result["layers"]), profile)
                plan = partition.partition_for_profile(model, profile)
                self.assertTrue(plan.npu_layers, profile)
                if profile == "m55h":  # it runs grouped convs: the whole model on the NPU
                    self.assertEqual(plan.cpu_layers, [])

    @pytest.mark.slow
    def test_qat_wraps_and_converts(self):
        from kerasnets.export import runtime, tflite
        from kerasnets.pipelines import qat
        model = _small_vargnet()
        q = qat.quantize_model(model)
        wrapped = qat.quantized_layer_names(q)
        self.assertIn("predictions", wrapped)
        self.assertTrue(any(n.endswith("_gconv_conv") for n in wrapped))
        x = random_images(4, 32)
        self.assertEqual(q.predict(x, verbose=0).shape, (4, 10))
        q.compile("sgd", "sparse_categorical_crossentropy")
        q.fit(x, np.arange(4) % 10, epochs=1, batch_size=4, verbose=0)  # one QAT step
        content = tflite.convert(q, "int8", representative_data=x, calibration_count=4)
        self.assertNotIn("DEQUANTIZE", runtime.op_counts(content))
        self.assertTrue(runtime.verify(q, content, x, "int8")["passed"])
        mix = kerasnets.get_model("mixvargenet_100", input_shape=(32, 32, 3), classes=10, alpha=0.5,
                                  repeats=(1, 1, 1, 1, 1))
        mix = qat.quantize_model(mix, float_head=True)
        self.assertNotIn("classifier_conv", qat.quantized_layer_names(mix))
        self.assertEqual(mix.predict(x, verbose=0).shape, (4, 10))
