"""kerasnets.export.profiles: shipped profiles load, malformed ones are refused naming the field, fits hold."""
import json
import os
import tempfile

import pytest

import kerasnets
from kerasnets.export import cost, profiles
from kerasnets.backend import tf


def _edit(name, change):
    with open(os.path.join(os.path.dirname(profiles.__file__), "profiles", f"{name}.json")) as f:
        data = json.load(f)
    change(data)
    return data


class ProfileFilesTest(tf.test.TestCase):

    def test_shipped_profiles_load(self):
        names = profiles.list_profiles()
        for name in ("edgetpu_usb", "edgetpu_devboard", "m55h", "gyrfalcon", "host_cpu"):
            self.assertIn(name, names)
            p = profiles.load_profile(name)
            self.assertEqual(p.name, name)
        self.assertEqual(profiles.load_profile("edgetpu_usb").default_precision(), "int8")
        self.assertEqual(profiles.load_profile("host_cpu").default_precision(), "float32")

    def test_inherits_merges_and_overrides(self):
        usb, board = profiles.load_profile("edgetpu_usb"), profiles.load_profile("edgetpu_devboard")
        # The same chip: peak, cache and support inherited; efficiencies fitted on each board's own column.
        self.assertEqual(board.compute.peak_macs_per_s, usb.compute.peak_macs_per_s)
        self.assertEqual(board.memory.param_cache_bytes, usb.memory.param_cache_bytes)
        self.assertNotEqual(board.compute.efficiency.conv, usb.compute.efficiency.conv)
        self.assertNotEqual(board.memory.host_link_bandwidth_bytes_per_s, usb.memory.host_link_bandwidth_bytes_per_s)
        self.assertEqual(board.support, usb.support)

    def test_malformed_profiles_name_the_bad_field(self):
        cases = {
            "compute.efficiency.depthwise": lambda d: d["compute"]["efficiency"].update(depthwise=1.5),
            "memory.param_cache_bytes": lambda d: d["memory"].pop("param_cache_bytes"),
            "support.ops.warp": lambda d: d["support"]["ops"].update(warp={}),
            "compute.peak_macs_per_s.int8": lambda d: d["compute"]["peak_macs_per_s"].update(int8="fast"),
            "support.activations": lambda d: d["support"]["activations"].append("gelu_fancy"),
            "segments.max_npu_segments": lambda d: d["segments"].update(max_npu_segments=0),
        }
        for field, change in cases.items():
            with self.assertRaisesRegex(profiles.ProfileError, f"field '{field}'"):
                profiles.parse_profile(_edit("edgetpu_usb", change), "'test'")
        bad_cpu = _edit("host_cpu", lambda d: d["predictors"]["float32"].pop("conv"))
        with self.assertRaisesRegex(profiles.ProfileError, "predictors.float32.conv"):
            profiles.parse_profile(bad_cpu, "'cpu'")

    def test_unknown_and_broken_files(self):
        with self.assertRaisesRegex(profiles.ProfileError, "unknown"):
            profiles.load_profile("tpu_v9000")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "broken.json")
            with open(path, "w") as f:
                f.write("{not json")
            with self.assertRaisesRegex(profiles.ProfileError, "not valid JSON"):
                profiles.load_profile(path)

    def test_adding_an_accelerator_is_adding_a_file(self):
        with tempfile.TemporaryDirectory() as d:
            data = {"name": "my_npu", "inherits": "edgetpu_usb", "kind": "npu", "description": "x", "sources": [],
                    "compute": {"peak_macs_per_s": {"int8": 4.0e12}}}
            with open(os.path.join(d, "my_npu.json"), "w") as f:
                json.dump(data, f)
            old = os.environ.get("KERASNETS_PROFILE_DIR")
            os.environ["KERASNETS_PROFILE_DIR"] = d
            try:
                self.assertIn("my_npu", profiles.list_profiles())
                p = profiles.load_profile("my_npu")
                self.assertEqual(p.peak_macs("int8"), 4.0e12)
            finally:
                if old is None:
                    os.environ.pop("KERASNETS_PROFILE_DIR")
                else:
                    os.environ["KERASNETS_PROFILE_DIR"] = old


class FittedProfilesTest(tf.test.TestCase):
    """The NPU profiles reproduce their published calibration points and nothing is per-model."""

    def _ms(self, name, size, profile):
        graph = cost.analyze(kerasnets.get_model(name, input_shape=size + (3,)))
        return cost.estimate(graph, profile)["totals"]["latency_ms"]

    def test_edgetpu_calibration_points(self):
        self.assertAllClose(self._ms("mobilenet_v2_100", (224, 224), "edgetpu_usb"), 2.6, rtol=0.02)
        self.assertAllClose(self._ms("efficientnet_edgetpu_s", (224, 224), "edgetpu_usb"), 5.1, rtol=0.02)

    @pytest.mark.slow
    def test_edgetpu_streaming_points_of_both_boards(self):
        # Coral's benchmark table, USB Accelerator / Dev Board (coral.ai/docs/edgetpu/benchmarks): the ResNets'
        # int8 parameters (25-60 MB) overflow the ~8 MiB cache and stream on every invoke.
        points = (("mobilenet_v2_100", (224, 224), 2.6, 2.6), ("efficientnet_edgetpu_s", (224, 224), 5.1, 5.5),
                  ("resnet50", (299, 299), 49, 56), ("resnet50_v2", (299, 299), 50, 59),
                  ("resnet152_v2", (299, 299), 128, 151))
        for name, size, usb, devboard in points:
            graph = cost.analyze(kerasnets.get_model(name, input_shape=size + (3,)))
            for profile, published in (("edgetpu_usb", usb), ("edgetpu_devboard", devboard)):
                totals = cost.estimate(graph, profile)["totals"]
                self.assertAllClose(totals["latency_ms"], published, rtol=0.10, msg=f"{name} on {profile}")
                self.assertLessEqual(totals["param_cache_used_bytes"], totals["param_cache_bytes"])
                self.assertEqual(totals["param_streamed_bytes"] > 0, name.startswith("resnet"), name)

    def test_m55h_axspine_is_about_1_5x_faster_through_modeled_effects(self):
        mnv2 = self._ms("mobilenet_v2_100", (576, 320), "m55h")
        axs = self._ms("axspine_middle", (576, 320), "m55h")
        self.assertAllClose(mnv2, 1000 / 124, rtol=0.05)
        self.assertAllClose(self._ms("mobilenet_v2_100", (288, 160), "m55h"), 1000 / 373.7, rtol=0.05)
        self.assertBetween(mnv2 / axs, 1.35, 1.65)
        p = profiles.load_profile("m55h")
        text = json.dumps({k: v for k, v in p.raw.items() if k not in ("fitted_to", "sources", "description",
                                                                           "assumptions")})
        for model in ("mobilenet", "axspine"):
            self.assertNotIn(model, text.lower())  # no per-model factor anywhere in the model fields
        for fields in p.fitted_fields.values():
            self.assertTrue(all(path.startswith("compute.") for path in fields))
        self.assertEqual(p.best_channels_per_group(), 8)
        self.assertLess(p.compute.efficiency.depthwise, 0.25 * p.compute.efficiency.conv)
