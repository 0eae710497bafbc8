"""kerasnets.export.cost: MACs agree with the reference counts, per-layer reasons show the modeled effects."""
import pytest

import kerasnets
from kerasnets.export import cost, profiles
from kerasnets.backend import keras, tf

L = keras.layers


def _rows(result, **match):
    return [r for r in result["layers"] if all(getattr(r, k) == v for k, v in match.items())]


class MacsAgreeWithReferenceTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_totals_equal_reference_counts(self):
        # reference rows: kerasnets/data/reference_counts.json (copied by the zoo from the project's
        # reference table, timm 1.0.31 / torchvision counts at 224x224, 1000 classes)
        for name in ("mobilenet_v2_100", "shufflenet_v2_x1_0", "efficientnet_edgetpu_s", "regnetx_002"):
            info = kerasnets.get_model_info(name)
            model = kerasnets.get_model(name)
            result = cost.estimate(model, "edgetpu_usb")
            self.assertEqual(result["totals"]["macs"], info["reference"]["macs_conv_linear_224"], name)
            self.assertEqual(sum(r.macs for r in result["layers"]), result["totals"]["macs"])


class EffectsTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.mnv2 = cost.analyze(kerasnets.get_model("mobilenet_v2_100", input_shape=(96, 96, 3), classes=10))
        cls.axs = cost.analyze(kerasnets.get_model("axspine_middle", input_shape=(96, 96, 3), classes=10))

    def test_row_fields_and_totals(self):
        r = cost.estimate(self.mnv2, "edgetpu_usb")
        for row in r["layers"]:
            for key in ("kind", "macs", "params", "bytes_in", "bytes_out", "channels_padded", "compute_ms",
                        "memory_ms", "bound", "efficiency", "placement", "latency_ms", "reason"):
                self.assertIn(key, row.as_dict())
        t = r["totals"]
        self.assertAllClose(t["fps"], 1000 / t["latency_ms"])
        self.assertAllClose(t["latency_ms"], sum(x.latency_ms for x in r["layers"]) + t["invoke_ms"])
        self.assertBetween(t["mac_utilization"], 0.0, 1.0)
        self.assertGreater(t["param_cache_used_bytes"], 0)

    def test_depthwise_runs_far_below_peak(self):
        r = cost.estimate(self.mnv2, "m55h")
        dw = _rows(r, kind="depthwise")[1]
        pw = [x for x in _rows(r, kind="conv") if x.macs][3]
        self.assertIn("depthwise", dw.reason)
        self.assertLess(dw.efficiency, pw.efficiency / 4)

    def test_group_conv_fastest_at_best_channels_per_group(self):
        p = profiles.load_profile("m55h")
        best = p.best_channels_per_group()
        for cpg in (1, 2, 4, 16, 32):
            self.assertLess(p.group_conv_efficiency(cpg), p.group_conv_efficiency(best))
        rows = _rows(cost.estimate(self.axs, "m55h"), kind="group_conv")
        self.assertTrue(rows)
        self.assertIn("8 channels per group", rows[0].reason)
        self.assertIn("profile's best", rows[0].reason)

    def test_channel_padding_to_alignment(self):
        r = cost.estimate(self.mnv2, "m55h")  # alignment 16: MobileNetV2's 24-channel layers pad to 32
        padded = [x for x in r["layers"] if x.kind == "conv" and "padded to the alignment" in x.reason]
        self.assertTrue(padded)
        self.assertTrue(any(x.channels_padded == 32 and x.out_shape[-1] == 24 for x in padded))
        self.assertTrue(all(x.padded_macs > x.macs for x in padded))

    def test_concat_shuffle_and_elementwise_cost_memory_not_macs(self):
        g = cost.analyze(kerasnets.get_model("shufflenet_v2_x0_5", input_shape=(64, 64, 3), classes=10))
        r = cost.estimate(g, "edgetpu_usb")
        for kind in ("concat", "shuffle", "slice"):
            rows = _rows(r, kind=kind)
            self.assertTrue(rows, kind)
            self.assertEqual(rows[0].macs, 0)
            self.assertGreater(rows[0].latency_ms, 0)
            self.assertIn("memory traffic", rows[0].reason)
        adds = [x for x in _rows(cost.estimate(self.mnv2, "edgetpu_usb"), kind="add")]
        self.assertTrue(adds and all(x.latency_ms > 0 for x in adds))

    def test_parameters_beyond_the_cache_are_streamed(self):
        g = cost.analyze(kerasnets.get_model("vgg16", input_shape=(32, 32, 3), classes=10))
        r = cost.estimate(g, "edgetpu_usb")
        t = r["totals"]
        self.assertGreater(t["param_streamed_bytes"], 100e6)
        self.assertLessEqual(t["param_cache_used_bytes"], t["param_cache_bytes"])
        self.assertTrue(any("streamed" in x.reason for x in r["layers"]))

    def test_boundary_tensor_to_the_cpu_is_a_row(self):
        r = cost.estimate(self.mnv2, "edgetpu_usb", policy="float_head")
        links = [x for x in r["layers"] if x.kind == "transfer"]
        self.assertTrue(any(x.name.startswith("<to cpu:") for x in links))
        self.assertGreater(r["totals"]["cpu_ms"], 0)

    def test_host_cpu_profile_both_precisions(self):
        for precision in ("int8", "float32"):
            r = cost.estimate(self.mnv2, "host_cpu", precision=precision)
            self.assertTrue(all(x.placement in ("cpu", "host") for x in r["layers"]))
            self.assertGreater(r["totals"]["latency_ms"], 0)

    def test_float_precision_on_an_int8_npu_runs_on_the_cpu(self):
        r = cost.estimate(self.mnv2, "edgetpu_usb", precision="float32")
        npu = [x for x in r["layers"] if x.placement == "npu"]
        self.assertEqual(npu, [])
        self.assertIn("unsupported data type", r["layers"][1].placement_reason)


class ModelFormsTest(tf.test.TestCase):

    def test_torch_convention_pads_are_costed_and_mapped(self):
        # The torch convention's explicit ZeroPadding2D becomes a PAD op: supported by the Edge TPU
        # (no cut), costed as memory traffic, so the torch graph is a little slower, never split.
        kw = dict(input_shape=(96, 96, 3), classes=10)
        tf_model = kerasnets.get_model("mobilenet_v2_035", **kw)
        torch_model = kerasnets.get_model("mobilenet_v2_035", convention="torch", **kw)
        pads = [op for op in cost.analyze(torch_model).ops if op.kind == "pad"]
        self.assertLen(pads, 5)  # the stem and the four stride-2 depthwise convs
        self.assertEqual(pads[0].tflite_ops, ("PAD",))
        tf_est = cost.estimate(tf_model, "edgetpu_usb")["totals"]
        torch_est = cost.estimate(torch_model, "edgetpu_usb")["totals"]
        self.assertEqual(torch_est["cpu_ops"], 0)
        self.assertEqual(torch_est["npu_ops"], tf_est["npu_ops"] + 5)
        self.assertGreater(torch_est["latency_ms"], tf_est["latency_ms"])
        self.assertLess(torch_est["latency_ms"], 1.5 * tf_est["latency_ms"])

    @pytest.mark.slow
    def test_deployed_and_train_form_cost_the_same(self):
        model = kerasnets.get_model("repghostnet_050", input_shape=(64, 64, 3), classes=10)
        train = cost.estimate(model, "edgetpu_usb")["totals"]
        deployed = cost.estimate(kerasnets.deploy(model), "edgetpu_usb")["totals"]
        self.assertAllClose(train["latency_ms"], deployed["latency_ms"], rtol=0.03)
        fused = [op for op in cost.analyze(model).ops if "re-parameterized" in op.fused_note]
        self.assertTrue(fused)

    def test_qat_wrapped_model_is_estimable(self):
        import tensorflow_model_optimization as tfmot
        x = keras.Input((32, 32, 3))
        y = L.Conv2D(16, 3, 2, padding="same", use_bias=False)(x)
        y = L.BatchNormalization()(y)
        y = L.ReLU(6.0)(y)
        y = L.DepthwiseConv2D(3, padding="same", use_bias=False)(y)
        y = L.BatchNormalization()(y)
        y = L.ReLU(6.0)(y)
        y = L.Conv2D(32, 1, use_bias=False)(y)
        y = L.GlobalAveragePooling2D()(y)
        y = L.Dense(10)(y)
        model = keras.Model(x, y)
        qat = tfmot.quantization.keras.quantize_model(model)
        a = cost.estimate(model, "edgetpu_usb")["totals"]
        b = cost.estimate(qat, "edgetpu_usb")["totals"]
        self.assertEqual(a["macs"], b["macs"])
        self.assertEqual(a["macs"], kerasnets.count_macs(model))
        self.assertAllClose(a["latency_ms"], b["latency_ms"], rtol=0.05)

    def test_non_functional_model_is_refused(self):
        class Tiny(keras.Model):
            def call(self, x):
                return x
        with self.assertRaisesRegex(ValueError, "functional"):
            cost.analyze(Tiny())
