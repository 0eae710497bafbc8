"""kerasnets-run's host estimate: a host_cpu profile fitted on another CPU is quick-calibrated here once
(export.hostfit, cached), unless --no_calibrate. The measurement is replaced by made-up timings."""
import json
import os
import types

import pytest

import kerasnets
from kerasnets.export import calibrate, hostfit
from kerasnets.backend import keras, tf
from kerasnets.pipelines import job
from tests.helpers import run_cli


def _fake_measure(calls):
    def measure(threads=1, precisions=("int8", "float32"), rounds=15, kernels=None, networks=None, log=None):
        calls.append(threads)
        x = keras.layers
        kernel = calibrate.kernel_model((16, 16, 8), lambda t: x.ReLU()(x.Conv2D(16, 3, padding="same")(t)), 0)
        samples = [{"kind": "conv", "precision": p, "kernel": 0, "ms": 0.05} for p in precisions]
        return [("conv", kernel)], samples, {p: 0.001 for p in precisions}, []
    return measure


def _fake_run(calibrate_host):
    model = kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), classes=10)
    return types.SimpleNamespace(config=job.JobConfig(), float_model=lambda: model,
                                 forms=lambda: {"grouped_convs": 0}, log=lambda m: None,
                                 calibrate_host=calibrate_host)


class HostCalibrationHookTest(tf.test.TestCase):

    def _patch(self, mp, calls):
        mp.setenv("XDG_CACHE_HOME", self.get_temp_dir())
        mp.setattr(hostfit, "cpu_name", lambda: "Test CPU 9000")  # not the CPU any profile was fitted on
        mp.setattr(hostfit, "measure_quick", _fake_measure(calls))

    def test_estimate_step_calibrates_once_then_reads_the_cache(self):
        calls = []
        with pytest.MonkeyPatch.context() as mp:
            self._patch(mp, calls)
            first = job._estimate(_fake_run(True))["profiles"]
            second = job._estimate(_fake_run(True))["profiles"]
        self.assertEqual(calls, [1])
        for key in ("host_cpu_int8", "host_cpu_float32"):
            self.assertEqual(first[key]["host_profile"]["source"], "quick calibration")
            self.assertEqual(second[key]["host_profile"]["source"], "cache")
            self.assertEqual(first[key]["fitted_on"], "Test CPU 9000")
            self.assertAllClose(first[key]["latency_ms"], second[key]["latency_ms"])
            self.assertTrue(first[key]["host_profile"]["path"].startswith(
                os.path.join(self.get_temp_dir(), "kerasnets", "host_cpu-Test_CPU_9000-1t-")))
        self.assertIn("edgetpu_usb", first)  # the other profiles are estimated as before

    def test_no_calibrate_estimates_with_the_profile_as_found(self):
        calls = []
        with pytest.MonkeyPatch.context() as mp:
            self._patch(mp, calls)
            est = job._estimate(_fake_run(False))["profiles"]
        self.assertEqual(calls, [])
        entry = est["host_cpu_int8"]
        self.assertEqual(entry["host_profile"]["source"], "as found")
        self.assertNotEqual(entry["fitted_on"], "Test CPU 9000")
        self.assertIn("CPU", entry["host_profile"]["notes"][0])
        self.assertIn("quick calibration off", entry["host_profile"]["notes"][-1])

    def test_no_calibrate_flag_reaches_the_job(self):
        seen = []

        def fake_run_job(config, out, **kwargs):
            seen.append(kwargs["calibrate_host"])
            return {"accuracy": {}}

        out = os.path.join(self.get_temp_dir(), "run")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(job, "run_job", fake_run_job)
            for extra in ((), ("--no_calibrate",)):
                res = run_cli("kerasnets.pipelines.cli.run", f"--out={out}", "--json", *extra)
                self.assertEqual(res.returncode, 0, res.stderr[-2000:])
                self.assertEqual(json.loads(res.stdout), {"accuracy": {}})
        self.assertEqual(seen, [True, False])
