"""kerasnets.export.partition: the must-pass cuts, the policies, the split, the export and the chained runner."""
import json
import os
import tempfile

import numpy as np
import pytest

import kerasnets
from kerasnets.export import cost, partition, profiles, runtime, tflite
from kerasnets import layers as kl
from kerasnets.backend import keras, tf
from kerasnets.stats import randomize_batch_norm

L = keras.layers


def _randomize_bn(model, seed=0):
    return randomize_batch_norm(model, seed, gamma=(0.8, 1.5), beta_std=0.5, mean_std=0.1, variance=(0.5, 1.0))


def _images(n, size, seed=1):
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, 3)).astype("float32")


def _first_cpu(plan):
    return next(d for d in plan.decisions if d["placement"] == "cpu")


def _profile_without(activation):
    data = profiles.load_profile("edgetpu_usb").to_dict()
    data["name"] = "edgetpu_no_hswish"
    data["support"]["activations"].remove(activation)
    return profiles.parse_profile(data, "'edgetpu_no_hswish'")


class MustPassCutsTest(tf.test.TestCase):

    @pytest.mark.slow
    def test_vgg16_on_gyrfalcon_is_cut_right_after_the_last_pool(self):
        model = kerasnets.get_model("vgg16", input_shape=(32, 32, 3), classes=5, classifier_activation=None)
        plan = partition.partition_for_profile(model, "gyrfalcon")
        pools = [l.name for l in model.layers if isinstance(l, L.MaxPooling2D)]
        self.assertEqual(plan.cut["after"], pools[-1])
        self.assertEqual(plan.cut["tensors"], [pools[-1]])
        convs = [l.name for l in model.layers if isinstance(l, L.Conv2D)]
        self.assertTrue(set(convs) <= set(plan.npu_layers))
        self.assertIn("predictions", plan.cpu_layers)
        self.assertEqual(_first_cpu(plan)["message"], partition.NOT_SUPPORTED)
        parts = partition.split_model(model, plan)
        x = _images(2, 32)
        self.assertAllClose(partition.run_parts_keras(parts, x), model(x, training=False), atol=1e-5, rtol=1e-5)

    def test_shufflenet_v2_low_rank_maps_entirely_5d_is_cut_at_first_shuffle(self):
        low = kerasnets.get_model("shufflenet_v2_x0_5", input_shape=(64, 64, 3), classes=10, shuffle="low_rank")
        plan = partition.partition_for_profile(low, "edgetpu_usb")
        self.assertEqual(plan.cpu_layers, [])
        self.assertEqual(len(plan.parts), 1)
        self.assertIn("Mapped to Edge TPU", plan.log)
        five = kerasnets.get_model("shufflenet_v2_x0_5", input_shape=(64, 64, 3), classes=10, shuffle="5d")
        plan = partition.partition_for_profile(five, "edgetpu_usb")
        first_shuffle = next(l.name for l in five.layers if isinstance(l, kl.ChannelShuffle))
        cpu = _first_cpu(plan)
        self.assertEqual(cpu["name"], first_shuffle)
        self.assertEqual(cpu["message"], partition.BAD_RANK)
        self.assertIn("5d", cpu["detail"])
        later = [d for d in plan.decisions[plan.decisions.index(cpu) + 1:] if d["placement"] == "cpu"
                 and d["message"] == partition.SUBGRAPH]
        self.assertTrue(later)  # supported ops after the cut: "More than one subgraph is not supported"
        self.assertIn(partition.SUBGRAPH, plan.log)

    def test_hard_swish_on_a_profile_without_it_is_cut_there(self):
        model = kerasnets.get_model("mobilenet_v3_small_100", input_shape=(64, 64, 3), classes=10)
        self.assertEqual(partition.partition_for_profile(model, "edgetpu_usb").cpu_layers, [])
        plan = partition.partition_for_profile(model, _profile_without("hard_swish"))
        first_hswish = next(l.name for l in model.layers if isinstance(l, kl.HardSwish))
        cpu = _first_cpu(plan)
        self.assertEqual(cpu["name"], first_hswish)
        self.assertEqual(cpu["message"], partition.NOT_SUPPORTED)
        self.assertIn("HARD_SWISH", cpu["detail"])

    def test_hard_swish_on_gyrfalcon_inside_a_residual_block(self):
        x = keras.Input((16, 16, 3), name="input")
        y = L.Conv2D(8, 3, padding="same", name="c1")(x)
        y = L.ReLU(name="r1")(y)
        s = L.MaxPooling2D(2, name="pool")(y)
        y = L.Conv2D(8, 3, padding="same", name="c2")(s)
        y = kl.HardSwish(name="hswish")(y)
        y = L.Conv2D(8, 3, padding="same", name="c3")(y)
        y = L.Add(name="add")([s, y])
        y = L.GlobalAveragePooling2D(name="gap")(y)
        model = keras.Model(x, L.Dense(4, name="predictions")(y))
        plan = partition.partition_for_profile(model, "gyrfalcon")
        self.assertEqual(_first_cpu(plan)["name"], "hswish")
        self.assertEqual(plan.npu_layers, ["c1", "r1", "pool", "c2"])
        self.assertEqual(sorted(plan.cut["tensors"]), ["c2", "pool"])  # two tensors cross: the shortcut too
        parts = partition.split_model(model, plan)
        xs = _images(3, 16)
        self.assertAllClose(partition.run_parts_keras(parts, xs), model(xs), atol=1e-5, rtol=1e-5)
        with tempfile.TemporaryDirectory() as d:
            partition.export_partition(model, plan, d, _images(8, 16))
            out = partition.ChainedRunner(d)(xs)
        self.assertEqual(out.shape, (3, 4))
        self.assertAllClose(out, model(xs), atol=0.15 * float(np.abs(model(xs)).max()) + 0.05)

    @pytest.mark.slow  # 5-7 s: the fast tier keeps the cheaper tests of the same code
    def test_float_head_never_leaves_a_float_layer_on_the_npu(self):
        for name, size in (("mobilenet_v2_035", 32), ("ghostnet_050", 32), ("vgg16", 32)):
            model = kerasnets.get_model(name, input_shape=(size, size, 3), classes=10)
            plan = partition.partition_for_profile(model, "edgetpu_usb", policy="float_head")
            for d in plan.decisions:
                if d["placement"] == "npu":
                    self.assertEqual(d["precision"], "int8", f"{name} {d['name']}")
                if d["precision"] == "float32" or d["message"].startswith(partition.BAD_TYPE):
                    self.assertEqual(d["placement"], "cpu", f"{name} {d['name']}")
            self.assertIn("predictions", plan.cpu_layers, name)
            dense = [l.name for l in model.layers if isinstance(l, L.Dense)]
            self.assertTrue(set(dense) <= set(plan.cpu_layers), msg=name)
        # the cut is at the pooled features
        model = kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), classes=10)
        plan = partition.partition_for_profile(model, "edgetpu_usb", policy="float_head")
        self.assertIsInstance(model.get_layer(plan.cut["after"]), L.GlobalAveragePooling2D)


class PoliciesAndExportTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.model = _randomize_bn(kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), classes=10,
                                                      classifier_activation=None))

    def test_min_latency_is_no_slower_than_the_alternatives(self):
        plans = {p: partition.partition_for_profile(self.model, "edgetpu_usb", policy=p) for p in partition.POLICIES}
        best = plans["min_latency"].estimate["totals"]["latency_ms"]
        for p in ("max_npu", "float_head"):
            self.assertLessEqual(best, plans[p].estimate["totals"]["latency_ms"] + 1e-9)
        graph = cost.analyze(self.model)
        all_cpu = cost.estimate_graph(graph, "edgetpu_usb", placement={op.name: "cpu" for op in graph.ops})
        self.assertLessEqual(best, all_cpu["totals"]["latency_ms"] + 1e-9)

    def test_plan_json_and_compiler_log(self):
        plan = partition.partition_for_profile(self.model, "edgetpu_usb", policy="float_head")
        doc = json.loads(plan.to_json())
        for key in ("npu_layers", "cpu_layers", "cut", "layers", "estimate", "parts"):
            self.assertIn(key, doc)
        for text in ("Mapped to Edge TPU", "Operation is working on an unsupported data type",
                     "On-chip memory used for caching model parameters",
                     "On-chip memory remaining for caching model parameters",
                     "Off-chip memory used for streaming uncached model parameters",
                     "Number of operations that will run on Edge TPU", "Number of operations that will run on CPU"):
            self.assertIn(text, plan.log)

    def test_unknown_policy_and_cpu_profile_are_refused(self):
        with self.assertRaisesRegex(ValueError, "policy 'fastest' is unknown"):
            partition.partition_for_profile(self.model, "edgetpu_usb", policy="fastest")
        with self.assertRaisesRegex(ValueError, "CPU profile"):
            partition.partition_for_profile(self.model, "host_cpu")

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_export_and_chained_runner_against_full_int8(self):
        plan = partition.partition_for_profile(self.model, "edgetpu_usb", policy="float_head")
        parts = partition.split_model(self.model, plan)
        x = _images(16, 32)
        want = self.model(x, training=False).numpy()
        self.assertAllClose(partition.run_parts_keras(parts, x), want, atol=1e-5, rtol=1e-5)
        with tempfile.TemporaryDirectory() as d:
            files = partition.export_partition(self.model, plan, d, _images(16, 32, seed=5))
            self.assertEqual([f["mode"] for f in files], ["int8", "float32"])
            for name in ("plan.json", "partition.log"):
                self.assertTrue(os.path.isfile(os.path.join(d, name)))
            npu_ops = runtime.op_counts(os.path.join(d, files[0]["file"]))
            self.assertNotIn("DEQUANTIZE", npu_ops)
            self.assertNotIn("FULLY_CONNECTED", npu_ops)
            head = runtime.load_interpreter(os.path.join(d, files[1]["file"]), probe=False)
            self.assertEqual(head.get_input_details()[0]["dtype"], np.float32)
            chained = partition.ChainedRunner(d)(x)
        full = tflite.convert(self.model, "int8", representative_data=_images(16, 32, seed=5), calibration_count=16)
        full_out = runtime.run_batch(runtime.load_interpreter(full, probe=False), x)
        agree = np.mean(chained.argmax(-1) == want.argmax(-1))
        self.assertGreaterEqual(agree, 0.75)
        err_chain = np.abs(chained - want).max()
        err_full = np.abs(full_out - want).max()
        self.assertLessEqual(err_chain, err_full * 1.5 + 1e-3)
