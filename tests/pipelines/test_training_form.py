"""Train fast, export right: the group-conv form training uses (split on a CPU, native on a GPU, or the user's
override), the form the export target takes, and the weights carried between the two (kerasnets.forms)."""
import json
import os

import numpy as np
import pytest

import kerasnets
from kerasnets.export import profiles
from kerasnets import forms
from kerasnets.backend import tf
from kerasnets.errors import ModelConfigError
from kerasnets.pipelines import data, qat, train
from kerasnets.pipelines.errors import ConfigError
from tests.helpers import run_cli


def _randomize(model, seed=0):
    """Random weights everywhere, BN statistics included (positive variances), so a wrong copy shows."""
    rng = np.random.RandomState(seed)
    values = []
    for w in model.weights:
        v = rng.normal(0, 0.3, w.shape).astype("float32")
        if "moving_variance" in w.name or "gamma" in w.name:
            v = 0.5 + np.abs(v)
        values.append(v)
    model.set_weights(values)
    return model


class CarryWeightsTest(tf.test.TestCase):

    def _check_round_trip(self, name, size=32):
        native = _randomize(kerasnets.get_model(name, input_shape=(size, size, 3), classes=10))
        self.assertEqual(forms.group_conv_form(native), "native")
        split = forms.to_form(native, "split")
        self.assertEqual(forms.group_conv_form(split), "split")
        self.assertEqual(len(forms.grouped_convs(split)), len(forms.grouped_convs(native)))
        self.assertGreater(len(forms.grouped_convs(native)), 0)
        back = forms.to_form(split, "native")
        self.assertEqual(forms.group_conv_form(back), "native")
        x = np.random.RandomState(1).rand(4, size, size, 3).astype("float32")
        want = native(x, training=False).numpy()
        self.assertAllClose(split(x, training=False).numpy(), want, atol=1e-5, rtol=0)
        self.assertAllClose(back(x, training=False).numpy(), want, atol=1e-5, rtol=0)
        self.assertIs(forms.to_form(native, "native"), native)  # already in that form
        # A model built split by get_model takes the weights too (what the job's weights file relies on).
        built = kerasnets.get_model(name, input_shape=(size, size, 3), classes=10, group_conv="split")
        forms.carry_weights(native, built)
        self.assertAllClose(built(x, training=False).numpy(), want, atol=1e-5, rtol=0)
        return native, split, x, want

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_axspine_small_native_split_native(self):
        native, split, x, want = self._check_round_trip("axspine_small")
        # final.weights.h5 of a split training run loads into the native model (the job's float_model) and back;
        # a *.weights.h5 file names layers by class, so a plain load_weights across forms would not fit.
        for source, form, target_form in ((split, "split", "native"), (native, "native", "split")):
            path = os.path.join(self.get_temp_dir(), f"{form}.weights.h5")
            source.save_weights(path)
            self.assertEqual(forms.weights_file_form(path), form)
            fresh = kerasnets.get_model("axspine_small", input_shape=(32, 32, 3), classes=10, group_conv=target_form)
            train.load_weights_file(fresh, path)
            self.assertAllClose(fresh(x, training=False).numpy(), want, atol=1e-5, rtol=0)

    @pytest.mark.slow  # 5-13 s: the fast tier keeps the cheaper tests of the same code
    def test_shufflenet_v1_g3_native_split_native(self):
        self._check_round_trip("shufflenet_v1_g3_x0_5")

    def test_refusals(self):
        from kerasnets.backend import keras
        inputs = keras.Input((8, 8, 4))
        plain = keras.Model(inputs, keras.layers.Conv2D(4, 3, name="c")(inputs))
        self.assertIsNone(forms.group_conv_form(plain))
        self.assertIs(forms.to_form(plain, "split"), plain)  # nothing grouped: nothing to convert
        with self.assertRaisesRegex(ModelConfigError, "unknown"):
            forms.to_form(plain, "grouped")
        other = keras.Model(inputs, keras.layers.Conv2D(6, 3, name="c")(inputs))
        with self.assertRaisesRegex(ModelConfigError, "other shapes"):
            forms.carry_weights(plain, other)
        grouped = keras.Model(inputs, keras.layers.Conv2D(4, 3, groups=2, name="g")(inputs))
        self.assertEqual(forms.group_conv_form(forms.to_form(grouped, "split")), "split")
        with self.assertRaisesRegex(ModelConfigError, "quantiz"):
            forms.to_form(qat.quantize_model(grouped), "split")


class ChooseFormsTest(tf.test.TestCase):
    """device + profile + overrides -> training form, export form, reasons."""

    def test_training_form_by_device(self):
        cpu = train.choose_forms(12, {}, gpu=False)
        self.assertEqual(cpu["training"]["group_conv"], "split")
        self.assertIn("CPU", cpu["training"]["reason"])
        self.assertFalse(cpu["training"]["override"])
        self.assertIsNone(cpu["export"])
        gpu = train.choose_forms(12, {}, gpu=True)
        self.assertEqual(gpu["training"]["group_conv"], "native")
        self.assertIn("GPU", gpu["training"]["reason"])

    def test_override_wins_for_training_only(self):
        usb = profiles.load_profile("edgetpu_usb")
        for gpu in (False, True):
            f = train.choose_forms(12, {"group_conv": "native", "width": 0.5}, gpu=gpu, profile=usb)
            self.assertEqual(f["training"]["group_conv"], "native")
            self.assertTrue(f["training"]["override"])
            self.assertIn("override", f["training"]["reason"])
            self.assertEqual(f["export"]["group_conv"], "split")  # the target still decides the export
        self.assertIn("slower", train.choose_forms(3, {"group_conv": "native"}, gpu=False)["training"]["reason"])
        f = train.choose_forms(3, {"group_conv": "split"}, gpu=True)
        self.assertEqual((f["training"]["group_conv"], f["training"]["override"]), ("split", True))

    def test_export_form_by_profile(self):
        want = {"edgetpu_usb": "split", "edgetpu_devboard": "split", "m55h": "native", "gyrfalcon": "native",
                "host_cpu": "native"}
        for name in profiles.list_profiles():
            profile = profiles.load_profile(name)
            entry = profile.support.ops.get("group_conv") if profile.is_npu else None
            f = train.choose_forms(5, {}, gpu=False, profile=profile)
            got = f["export"]["group_conv"]
            if name in want:
                self.assertEqual(got, want[name], name)
            self.assertIn(name, f["export"]["reason"])
            if entry and entry.forms:
                self.assertIn(got, entry.forms, name)
            self.assertEqual(f["training"]["group_conv"], "split")
        # A profile given as its dict works the same.
        self.assertEqual(train.choose_forms(5, gpu=False, profile=profiles.load_profile("m55h").to_dict())
                         ["export"]["group_conv"], "native")

    def test_no_grouped_convs(self):
        f = train.choose_forms(0, {}, gpu=False, profile=profiles.load_profile("edgetpu_usb"))
        self.assertIsNone(f["training"]["group_conv"])
        self.assertIsNone(f["export"]["group_conv"])
        self.assertIn("no grouped convolution", f["export"]["reason"])

    def test_bad_arguments(self):
        with self.assertRaises(ConfigError):
            train.choose_forms(-1)
        with self.assertRaises(ConfigError):
            train.choose_forms(3, gpu=False, profile="edgetpu_usb")


class FitFormTest(tf.test.TestCase):

    @pytest.mark.slow  # 5-13 s: the fast tier keeps the cheaper tests of the same code
    def test_fit_trains_split_on_cpu_and_weights_load_native(self):
        if train.gpu_visible():
            self.skipTest("a GPU is visible: training keeps the native form")
        tr = data.load_fashion_mnist("train").take(32, seed=0)
        config = train.TrainConfig(model="axspine_small", input_size=32, epochs=1, batch_size=32, verbose=0,
                                   tensorboard=False, augment=False)
        out = os.path.join(self.get_temp_dir(), "fit")
        result = train.fit(config, tr, None, out)
        self.assertEqual(forms.group_conv_form(result.model), "split")
        self.assertEqual(result.forms["training"]["group_conv"], "split")
        self.assertEqual(result.metrics["group_conv_form"], "split")
        with open(os.path.join(out, "metrics.json")) as f:
            self.assertEqual(json.load(f)["group_conv_form"], "split")
        native = kerasnets.get_model("axspine_small", input_shape=(32, 32, 3), classes=10)
        train.load_weights_file(native, os.path.join(out, "final.weights.h5"))
        x = np.random.RandomState(0).rand(2, 32, 32, 3).astype("float32")
        self.assertAllClose(native(x, training=False).numpy(), result.model(x, training=False).numpy(),
                            atol=1e-5, rtol=0)


SMALL = ["--model=axspine_small", "--input_size=32x32", "--train_subset=128", "--val_subset=64", "--epochs=1",
         "--batch_size=64", "--calibration_count=16", "--runs=3", "--verbose=0"]


class JobFormsTest(tf.test.TestCase):

    def _run(self, *extra):
        out = os.path.join(self.get_temp_dir(), "run_" + "_".join(a.strip("-").split("=")[-1] for a in extra))
        result = run_cli("kerasnets.pipelines.cli.run", *SMALL, f"--out={out}", "--json", *extra)
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        for mode in ("float32", "int8", "partitioned"):
            self.assertTrue(summary["verification"][mode]["passed"], mode)
        with open(os.path.join(out, "report.md")) as f:
            self.assertIn("## Group-conv forms", f.read())
        return summary

    @pytest.mark.slow
    def test_edgetpu_trains_split_exports_split(self):
        forms_ = self._run("--quantization=ptq")["forms"]
        self.assertEqual(forms_["grouped_convs"], 12)
        self.assertEqual(forms_["training"]["group_conv"], "native" if train.gpu_visible() else "split")
        self.assertEqual((forms_["export"]["group_conv"], forms_["export"]["profile"]), ("split", "edgetpu_usb"))
        self.assertEqual(forms_["quantization"]["group_conv"], "split")

    @pytest.mark.slow
    def test_m55h_trains_split_exports_native(self):
        forms_ = self._run("--quantization=qat", "--qat_epochs=1", "--profile=m55h")["forms"]
        self.assertEqual(forms_["training"]["group_conv"], "native" if train.gpu_visible() else "split")
        self.assertFalse(forms_["training"]["override"])
        self.assertEqual((forms_["export"]["group_conv"], forms_["export"]["profile"]), ("native", "m55h"))
        self.assertEqual(forms_["quantization"]["group_conv"], "native")  # QAT tunes the exported form

    @pytest.mark.slow
    def test_override_is_used_and_reported_by_kerasnets_train(self):
        out = os.path.join(self.get_temp_dir(), "train_native")
        result = run_cli("kerasnets.pipelines.cli.train", "--model=axspine_small", "--input_size=32x32", "--train_subset=32",
                         "--val_subset=32", "--epochs=1", "--batch_size=32", "--verbose=0", f"--out={out}", "--json",
                         '--overrides={"group_conv": "native"}')
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        with open(os.path.join(out, "metrics.json")) as f:
            metrics = json.load(f)
        self.assertEqual(metrics["group_conv_form"], "native")
        self.assertIn("override", metrics["group_conv_reason"])
