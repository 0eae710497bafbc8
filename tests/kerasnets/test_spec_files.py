"""Specs as files: kerasnets.spec.save_spec / load_spec and kerasnets.get_model(spec=...)."""
import json
import os
import tempfile

import numpy as np
import pytest

import kerasnets
from kerasnets import spec as kspec
from kerasnets.backend import tf
from kerasnets.builder import BuildOptions
from kerasnets.errors import ModelConfigError, PathError
from kerasnets.zoo import get_spec
from tests.helpers import check_bad_call, random_images, randomized_bn


def _shapes(model):
    return [(w.name, tuple(w.shape)) for w in model.weights]


class SpecFileTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp()

    def _path(self, name="spec.json"):
        return os.path.join(self.dir, name)

    def _write(self, data, name="spec.json"):
        path = self._path(name)
        with open(path, "w") as f:
            json.dump(data, f)
        return path

    def test_round_trip_of_every_family_spec(self):
        for name in ("axspine_small", "mobilenet_v2_035", "shufflenet_v1_g3_x0_5", "shufflenet_v2_x0_5",
                     "ghostnet_050", "repghostnet_050", "mobilenet_v3_small_100", "regnetx_002", "vgg16",
                     "resnet50_v2", "efficientnet_edgetpu_s"):
            spec = get_spec(name)
            path = kspec.save_spec(spec, self._path(f"{name}.json"), BuildOptions(group_conv="split"))
            loaded, options = kspec.load_spec(path, check=False)
            self.assertEqual(loaded, spec, name)
            self.assertEqual(options, {"group_conv": "split", "shuffle": "low_rank", "bn_momentum": 0.99,
                                       "convention": "tf"})

    @pytest.mark.slow  # 5-13 s: the fast tier keeps the cheaper tests of the same code
    def test_get_model_from_spec_file_equals_the_registry_model(self):
        spec = get_spec("axspine_small")
        path = kspec.save_spec(spec, self._path(), {"group_conv": "split"})
        from_file = kerasnets.get_model(spec=path, input_shape=(64, 64, 3), classes=10)
        from_name = kerasnets.get_model("axspine_small", input_shape=(64, 64, 3), classes=10, group_conv="split")
        self.assertEqual(from_file.name, "axspine_small")
        self.assertEqual(_shapes(from_file), _shapes(from_name))
        randomized_bn(from_name)
        from_file.set_weights(from_name.get_weights())
        x = random_images(2, 64)
        self.assertAllClose(from_file(x), from_name(x), atol=1e-6)
        # an override wins over the file's build options; a ModelSpec works as well
        native = kerasnets.get_model(spec=path, input_shape=(64, 64, 3), classes=10, group_conv="native")
        self.assertFalse(any(type(l).__name__ == "GroupConv2D" for l in native.layers))
        self.assertEqual(_shapes(kerasnets.get_model(spec=spec, input_shape=(64, 64, 3), classes=10)),
                         _shapes(from_name))

    def test_unknown_fields_are_refused_naming_the_closest(self):
        data = kspec.spec_to_dict(get_spec("mobilenet_v2_035"))
        check_bad_call(self, lambda: kspec.load_spec(self._write({**data, "blokcs": []})), ["'blokcs'", "'blocks'"])
        bad = json.loads(json.dumps(data))
        bad["blocks"][2]["group_widht"] = 8
        check_bad_call(self, lambda: kspec.load_spec(self._write(bad)), ["block 2", "'group_widht'", "'group_width'"])
        bad = json.loads(json.dumps(data))
        bad["top"]["dropuot"] = 0.1
        check_bad_call(self, lambda: kspec.load_spec(self._write(bad)), ["'dropuot'", "'dropout'"])
        check_bad_call(self, lambda: kspec.load_spec(self._write({**data, "build_options": {"group_cnv": "split"}})),
                       ["'group_cnv'", "'group_conv'"])
        check_bad_call(self, lambda: kspec.load_spec(self._write({**data, "build_options": {"group_conv": "x"}})),
                       ["group_conv='x'"])

    def test_impossible_channel_counts_are_refused_by_the_builder_checks(self):
        data = kspec.spec_to_dict(get_spec("axspine_small"))
        data["blocks"][2]["group_width"] = 5  # mid 32 does not split into groups of 5
        path = self._write(data)
        check_bad_call(self, lambda: kspec.load_spec(path), ["axspine_small", "cannot be split", "groups"])
        check_bad_call(self, lambda: kerasnets.get_model(spec=path, input_shape=(64, 64, 3)), ["cannot be split"])
        data = kspec.spec_to_dict(get_spec("axspine_small"))
        data["blocks"][0]["out"] = 0
        check_bad_call(self, lambda: kspec.load_spec(self._write(data)), ["block 0", "'out'", "0"])
        data["blocks"][0]["out"] = "32"
        check_bad_call(self, lambda: kspec.load_spec(self._write(data)), ["block 0", "'out'"])

    def test_bad_files_and_arguments(self):
        data = kspec.spec_to_dict(get_spec("mobilenet_v2_035"))
        check_bad_call(self, lambda: kspec.load_spec(self._write({**data, "version": 99})), ["version 99"])
        check_bad_call(self, lambda: kspec.load_spec(self._write({**data, "format": "x"})), ["'format'"])
        path = self._path("broken.json")
        with open(path, "w") as f:
            f.write("{not json")
        check_bad_call(self, lambda: kspec.load_spec(path), ["not valid JSON"])
        check_bad_call(self, lambda: kspec.load_spec(self._path("missing.json")), ["missing.json"])
        with self.assertRaises(PathError):
            kspec.save_spec(get_spec("mobilenet_v2_035"), self.dir)
        good = self._write(data)
        check_bad_call(self, lambda: kerasnets.get_model(spec=good, width=0.5), ["'width'", "spec"])
        check_bad_call(self, lambda: kerasnets.get_model("mobilenet_v2_035", spec=good), ["mobilenet_v2_035", "spec"])
        check_bad_call(self, lambda: kerasnets.get_model(spec=self._path("nope.json")), ["nope.json", "not a file"])
        check_bad_call(self, lambda: kerasnets.get_model(spec=42), ["spec=42", "ModelSpec"])
        check_bad_call(self, lambda: kerasnets.get_model(), ["model name"])
        check_bad_call(self, lambda: get_spec("mobilenet_v2_035", widht=0.5), ["'widht'", "'width'"])
        with self.assertRaises(ModelConfigError):
            kerasnets.get_model(spec=good, input_shape=(16, 16, 3))  # below the total stride

    def test_saved_bytes_are_stable(self):
        spec = get_spec("shufflenet_v2_x0_5")
        a = kspec.save_spec(spec, self._path("a.json"))
        loaded, _ = kspec.load_spec(a, check=False)
        b = kspec.save_spec(loaded, self._path("b.json"))
        with open(a) as fa, open(b) as fb:
            self.assertEqual(fa.read(), fb.read())
        self.assertEqual(np.asarray(json.load(open(a))["default_size"]).tolist(), [224, 224])
