"""Typed cost rows (kerasnets.export.cost.CostRow) and typed profiles (kerasnets.export.profiles): the JSON
form of a row, a profile's round trip through its dict, and clear errors for misspelt fields."""
import dataclasses
import json
import os
import tempfile

import kerasnets
from kerasnets.export import cost, costing, profiles
from kerasnets.backend import tf

# The documented fields of a cost row (CostRow's docstring); a new field is a deliberate change of the JSON.
DOCUMENTED_ROW_FIELDS = {"name", "kind", "placement", "precision", "tflite_ops", "macs", "params", "padded_macs",
                         "efficiency", "compute_ms", "memory_ms", "overhead_ms", "stream_ms", "latency_ms", "bound",
                         "bytes_in", "bytes_out", "channels_padded", "reason", "class_name", "in_shapes", "out_shape",
                         "activation", "param_cache", "free", "placement_reason"}


def _plain(value):
    """A typed profile section as the dict it was read from (absent optional fields, None here, dropped)."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None and f.name not in ("raw", "path")}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class CostRowTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.graph = cost.analyze(kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), classes=10))

    def test_fields_are_the_documented_ones(self):
        self.assertEqual(set(cost.ROW_FIELDS), DOCUMENTED_ROW_FIELDS)
        layouts = set().union(*costing.ROW_LAYOUTS.values())
        self.assertEqual(layouts | {"placement_reason"}, DOCUMENTED_ROW_FIELDS)

    def test_as_dict_keys_and_values(self):
        seen = set()
        for profile, policy in (("edgetpu_usb", "float_head"), ("m55h", "max_npu"), ("host_cpu", "max_npu")):
            for row in cost.estimate(self.graph, profile, policy=policy)["layers"]:
                self.assertIsInstance(row, cost.CostRow)
                doc = row.as_dict()
                unset = {k for k in ("param_cache", "free", "placement_reason") if getattr(row, k) is None}
                self.assertEqual(list(doc), [k for k in costing.ROW_LAYOUTS[row.layout] + ("placement_reason",)
                                             if k not in unset], row.name)
                self.assertEqual(doc, {k: getattr(row, k) for k in doc})
                self.assertEqual(json.loads(json.dumps(doc)), doc)
                seen.add(row.layout)
        self.assertEqual(seen, set(costing.ROW_LAYOUTS))  # every kind of row was checked

    def test_misspelt_field(self):
        row = cost.estimate(self.graph, "m55h")["layers"][1]
        with self.assertRaisesRegex(AttributeError, r"CostRow has no field 'latency' \(did you mean 'latency_ms'\?\)"):
            row.latency


class TypedProfileTest(tf.test.TestCase):

    def test_sections_are_typed(self):
        m55h = profiles.load_profile("m55h")
        self.assertIsInstance(m55h, profiles.NpuProfile)
        self.assertEqual(m55h.compute.channel_alignment, 16)
        self.assertIsInstance(m55h.compute.efficiency, profiles.Efficiency)
        self.assertIsInstance(m55h.support.ops["group_conv"], profiles.OpConstraints)
        self.assertEqual(m55h.support.ops["group_conv"].forms, ["native", "split"])
        self.assertIsNone(m55h.support.ops["conv"].forms)
        host = profiles.load_profile("host_cpu")
        self.assertIsInstance(host, profiles.CpuProfile)
        self.assertIsInstance(host.predictors["int8"]["conv"], profiles.CpuPredictor)
        self.assertIsInstance(host.residual("int8", "conv"), (profiles.ResidualTable, type(None)))
        with self.assertRaises(dataclasses.FrozenInstanceError):
            m55h.compute.clock_hz = 1.0

    def test_every_field_of_every_profile_is_typed_and_round_trips(self):
        for name in profiles.list_profiles():
            p = profiles.load_profile(name)
            raw = p.to_dict()
            self.assertEqual(_plain(p), raw, name)  # nothing of the file is left outside the typed fields
            back = profiles.parse_profile(json.loads(json.dumps(raw)), repr(name))
            self.assertEqual(back, p, name)
            self.assertEqual(back.to_dict(), raw, name)
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, f"{name}.json")
                with open(path, "w") as f:
                    f.write(p.to_json())
                self.assertEqual(profiles.load_profile(path), p, name)

    def test_to_dict_is_a_copy(self):
        p = profiles.load_profile("edgetpu_usb")
        data = p.to_dict()
        data["compute"]["channel_alignment"] = 64
        self.assertEqual(p.compute.channel_alignment, 8)
        self.assertEqual(p.raw["compute"]["channel_alignment"], 8)

    def test_misspelt_fields(self):
        m55h = profiles.load_profile("m55h")
        with self.assertRaisesRegex(AttributeError, r"Compute has no field 'channel_alignmnt' \(did you mean "
                                                    r"'channel_alignment'\?\)"):
            m55h.compute.channel_alignmnt
        with self.assertRaisesRegex(AttributeError, r"CpuProfile has no field 'compute'"):
            profiles.load_profile("host_cpu").compute
        with self.assertRaisesRegex(AttributeError, r"NpuProfile has no field 'predictor'"):
            m55h.predictor
