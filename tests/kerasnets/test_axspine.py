"""AXSpine is MobileNetV2's spec with the five changes of Axera's article applied."""
import pytest

from kerasnets import builder, families
import kerasnets
from kerasnets.backend import keras, tf

L = keras.layers


def _macs(spec, size=224):
    return kerasnets.count_macs(builder.build_model(spec, keras.Input((size, size, 3))))


class AXSpineTest(tf.test.TestCase):

    def test_change4_expand_ratios_cut_about_30_percent_of_macs(self):
        base = families.MOBILENET_V2_STAGES
        changed = tuple((t if t == 1 else (2 if i == 1 else 4), c, n, s) for i, (t, c, n, s) in enumerate(base))
        before = _macs(families.mobilenet_v2_spec(stages=base))
        after = _macs(families.mobilenet_v2_spec(stages=changed))
        self.assertBetween(1 - after / before, 0.25, 0.40)

    def test_no_depthwise_group_width_alignment_and_stage_layout(self):
        model = kerasnets.get_model("axspine_middle", input_shape=(224, 224, 3))
        convs = [l for l in model.layers if isinstance(l, L.Conv2D)]
        self.assertFalse(any(isinstance(l, L.DepthwiseConv2D) for l in convs))
        grouped = [l for l in convs if l.groups > 1]
        self.assertNotEmpty(grouped)
        for layer in grouped:
            self.assertEqual(layer.input_shape[-1] // layer.groups, 8, layer.name)
        for layer in convs:
            self.assertEqual(layer.filters % 16, 0, layer.name)
        # Change 2: the second layer is one plain 3x3 conv.
        second = model.get_layer("stage1_block1_conv")
        self.assertEqual((second.kernel_size, second.groups), ((3, 3), 1))
        # Change 5: 3:3:9:3 inverted-residual blocks at /4, /8, /16, /32.
        spec = families.axspine_spec("middle")
        strides = [b.stride for b in spec.blocks if b.kind == "ir"]
        firsts = [i for i, s in enumerate(strides) if s == 2] + [len(strides)]
        self.assertEqual([b - a for a, b in zip(firsts, firsts[1:])], [3, 3, 9, 3])

    def test_widths_follow_the_mobilenet_v2_spec(self):
        # AXSpine is a transform of MobileNetV2's spec: a wider MobileNetV2 widens it the same way.
        for width in (0.75, 1.4):
            base = families.mobilenet_v2_spec(width)
            axs = families.axspine_spec("middle", width=width, alignment=8)
            entries = [b.out for b in base.blocks if b.kind == "ir" and b.stride == 2]
            firsts = [b.out for b in axs.blocks if b.kind == "ir" and b.stride == 2]
            self.assertEqual(firsts, entries)
            self.assertEqual(axs.blocks[-1].out, base.blocks[-1].out)

    @pytest.mark.slow
    def test_variants_scale_in_order(self):
        macs = [_macs(families.axspine_spec(v)) for v in ("small", "middle", "big")]
        self.assertLess(macs[0], macs[1])
        self.assertLess(macs[1], macs[2])

    def test_parameters_are_validated(self):
        with self.assertRaisesRegex(ValueError, "alignment 12 and channels_per_group 8"):
            families.axspine_spec("middle", channels_per_group=8, alignment=12)
        with self.assertRaisesRegex(ValueError, r"depths=\(3, 3, 9\) must be four positive integers"):
            families.axspine_spec("middle", depths=(3, 3, 9))
        with self.assertRaisesRegex(ValueError, "unknown model 'axspine_huge'; did you mean axspine_big"):
            kerasnets.AXSpine("huge")
        model = kerasnets.get_model("axspine_small", input_shape=(64, 64, 3), channels_per_group=16, alignment=32)
        for layer in model.layers:
            if isinstance(layer, L.Conv2D) and layer.groups > 1:
                self.assertEqual(layer.input_shape[-1] // layer.groups, 16)
