"""kerasnets.export.hostfit (the quick host-CPU calibration and its cache), the relative validation, and the
kerasnets-estimate flags for both (--calibrate=quick, --validate)."""
import copy
import json
import os

import numpy as np
import pytest

from kerasnets.export import calibrate, cost, hostfit, profiles
from kerasnets.backend import keras, tf
from tests.helpers import run_cli

L = keras.layers
ESTIMATE = "kerasnets.export.cli.estimate"


def _tiny_kernels():
    return [("conv", calibrate.kernel_model((16, 16, 8), lambda x: calibrate.conv_bn_relu6(x, 16, 3, 1), 0)),
            ("conv", calibrate.kernel_model((8, 8, 32), lambda x: calibrate.conv_bn_relu6(x, 64, 3, 1), 1)),
            ("conv1x1", calibrate.kernel_model((16, 16, 16), lambda x: calibrate.conv_bn_relu6(x, 32, 1, 1), 2)),
            ("add", calibrate.kernel_model((16, 16, 8), lambda x: L.Add()([x, x]), 3))]


def _tiny_network():
    (net,) = calibrate.network_models(1, seed=3, max_macs=2e6, sizes=(32,))
    return net


def _base():
    """The shipped host profile, as if fitted on another CPU (so every machine running the test mismatches)."""
    data = copy.deepcopy(profiles.load_profile(hostfit.SHIPPED_HOST_PROFILE).raw)
    data["measured_on"] = dict(data.get("measured_on", {}), processor="Another CPU 1000", threads=1)
    data["threads"] = 1
    return profiles.parse_profile(data, "'base'")


def _synthetic_measurement(base, kernels, nets, kernel_factor=2.0, context=1.25, overhead_ms=0.002,
                           precisions=("int8", "float32")):
    """What measure_quick returns, made up: every kernel ``kernel_factor`` x its base prediction alone,
    every network ``overhead_ms`` + ``context`` x the rescaled profile's in-model prediction."""
    alone = profiles.parse_profile(hostfit._without_context(base.raw), "'alone'")
    samples = []
    for i, (_, model) in enumerate(kernels):
        ops = [op for op in cost.analyze(model).ops if not op.is_free]
        for p in precisions:
            pred = cost.estimate_graph(cost.analyze(model), alone, p)["totals"]["cpu_ms"]
            samples.append({"kind": cost.cpu_predictor_kind(ops[0]), "precision": p, "kernel": i,
                            "ms": kernel_factor * pred})
    scaled = base.to_dict()
    for p in precisions:
        for kind, entry in scaled["predictors"][p].items():
            scaled["predictors"][p][kind] = {k: v if k == "channel_align" else v * kernel_factor
                                             for k, v in entry.items()}
    scaled_profile = profiles.parse_profile(scaled, "'scaled'")
    networks = []
    for net in nets:
        for p in precisions:
            cpu_ms = cost.estimate_graph(cost.analyze(net), scaled_profile, p)["totals"]["cpu_ms"]
            networks.append({"model": net, "name": net.name, "input": list(net.input_shape[1:]), "precision": p,
                             "measured_ms": overhead_ms + context * cpu_ms, "spec": net.kerasnets_spec})
    return samples, {p: overhead_ms for p in precisions}, networks


class CountingMeasure:
    """A stand-in for hostfit.measure_quick: synthetic timings, and how often it was called."""

    def __init__(self, base):
        self.base, self.calls = base, 0

    def __call__(self, threads=1, precisions=("int8", "float32"), rounds=15, kernels=None, networks=None, log=None):
        self.calls += 1
        kernels = _tiny_kernels()
        nets = [_tiny_network()]
        samples, overhead, networks = _synthetic_measurement(self.base, kernels, nets)
        return kernels, samples, overhead, networks


class RescalingTest(tf.test.TestCase):

    def test_fit_scales_separates_the_term_groups(self):
        # Six conv kernels whose time is 20x their predicted per-MAC part, 1x the fixed part and 1.5x the
        # rest: the three factors are recovered (one factor each predicts them best, left out in turn).
        # Two add kernels at half their prediction: one factor. Kinds without kernels take their family's
        # factors (depthwise: conv's; slice: add's).
        parts = ((1.0, 0.1, 0.1), (0.2, 0.5, 0.1), (0.5, 0.1, 0.5), (0.05, 0.2, 0.3), (0.3, 0.3, 0.3), (2.0, 0.1, 1.0))
        rows = [{"precision": "int8", "kind": "conv", "parts": {"int8": {"mac": m, "fixed": f, "rest": r}},
                 "measured_ms": 20 * m + f + 1.5 * r} for m, f, r in parts]
        rows += [{"precision": "int8", "kind": "add", "parts": {"int8": {"mac": c, "fixed": c, "rest": 0.0}},
                  "measured_ms": c} for c in (0.01, 0.03)]
        scales, measured = hostfit.fit_scales(rows, {"int8": ["conv", "add", "depthwise", "slice"]})
        conv = scales["int8"]["conv"]
        self.assertAllClose([conv[g] for g in hostfit.TERM_GROUPS], [20.0, 1.0, 1.5])
        self.assertEqual(conv["source"], "int8")
        self.assertAllClose([scales["int8"]["add"][g] for g in hostfit.TERM_GROUPS], [0.5, 0.5, 0.5])
        self.assertEqual(scales["int8"]["depthwise"], conv)
        self.assertEqual(scales["int8"]["slice"], scales["int8"]["add"])
        self.assertEqual(measured, {"int8": {"add": 2, "conv": 6}})
        # Kernels measured at one ratio of their prediction, whatever their parts: one factor.
        same = [dict(r, measured_ms=f * sum(r["parts"]["int8"].values())) for r, f in zip(rows[:6], (2, 8, 4, 4, 2, 8))]
        scales, _ = hostfit.fit_scales(same, {"int8": ["conv"]})
        self.assertAllClose([scales["int8"]["conv"][g] for g in hostfit.TERM_GROUPS], [4.0, 4.0, 4.0])
        # int8 kernels that cost 1.2x what the float32 predictor says (and nothing like the int8 one): the
        # int8 predictor is rebuilt from the float32 one. Not the other way round.
        rng = np.random.default_rng(0)
        both = []
        for m, f, r in parts:
            other = {"mac": rng.uniform(0.1, 2), "fixed": rng.uniform(0.1, 1), "rest": rng.uniform(0.1, 1)}
            both.append({"precision": "int8", "kind": "conv", "parts": {"int8": other,
                                                                        "float32": {"mac": m, "fixed": f, "rest": r}},
                         "measured_ms": 1.2 * (m + f + r)})
        scales, _ = hostfit.fit_scales(both, {"int8": ["conv"]})
        self.assertEqual(scales["int8"]["conv"]["source"], "float32")
        self.assertAllClose([scales["int8"]["conv"][g] for g in hostfit.TERM_GROUPS], [1.2, 1.2, 1.2])
        f32 = [dict(r, precision="float32") for r in both]
        scales, _ = hostfit.fit_scales(f32, {"float32": ["conv"]})
        self.assertEqual(scales["float32"]["conv"]["source"], "float32")

    def test_apply_scales_and_context_scale(self):
        data = {"predictors": {"int8": {"conv": {"fixed_s": 1.0, "per_mac_s": 2.0, "per_pixel_s": 3.0,
                                                 "channel_align": 16}, "add": {"fixed_s": 1.0}},
                               "float32": {"add": {"fixed_s": 5.0, "per_byte_s": 1.0}}},
                "residuals": {"int8": {"add": {"points": []}}}, "peak_macs_per_s": {"int8": 100.0}}
        out = hostfit.apply_scales(data, {"int8": {"conv": {"mac": 10.0, "fixed": 3.0, "rest": 0.5},
                                                   "add": {"mac": 1, "fixed": 2, "rest": 3, "source": "float32"}}})
        self.assertEqual(out["predictors"]["int8"]["conv"], {"fixed_s": 3.0, "per_mac_s": 20.0, "per_pixel_s": 1.5,
                                                             "channel_align": 16})
        # From the float32 predictor, whose kernel-regression table does not fit int8 kernels: dropped.
        self.assertEqual(out["predictors"]["int8"]["add"], {"fixed_s": 10.0, "per_byte_s": 3.0})
        self.assertEqual(out["residuals"]["int8"], {})
        self.assertAllClose(out["peak_macs_per_s"]["int8"], 10.0)
        self.assertEqual(data["predictors"]["int8"]["conv"]["per_mac_s"], 2.0)  # the input is not changed
        # Context: networks whose kernel part runs 1.5x and per-op/parameter part 0.5x; or one factor.
        rows = [(1.5 * k + 0.5 * a, k, a) for k, a in ((1.0, 0.2), (0.3, 0.4), (2.0, 1.0))]
        self.assertAllClose(hostfit.context_scale(rows), (1.5, 0.5))
        self.assertAllClose(hostfit.context_scale([(2.0, 1.0, 0.0), (8.0, 1.0, 0.0)]), (4.0, 4.0))

    def test_the_quick_profile_measures_its_own_parameter_cache(self):
        # The base's curve describes another CPU's caches: the quick profile keeps the one its probes measure here
        # (parameters over 6 MiB cost 50 ps a byte on top), or none.
        raw = copy.deepcopy(_base().raw)
        raw["context_param_cache_curve"] = {p: [[2**20, 0.0], [2 * 2**20, 1e-3]] for p in ("int8", "float32")}
        base = profiles.parse_profile(raw, "'base'")
        kernels, nets = _tiny_kernels(), [_tiny_network()]
        samples, overhead, networks = _synthetic_measurement(base, kernels, nets)
        mib = 2**20
        probes = [{"kind": "param_cache", "precision": p, "kernel": -1, "param_bytes": m * mib,
                   "ms": (1e-5 + 2e-11 * m * mib + 5e-11 * max(m - 6, 0) * mib) * 1e3}
                  for p in ("int8", "float32") for m in hostfit.QUICK_PROBE_MIB]
        data = hostfit.rescale_profile(base, kernels, samples + probes, overhead, networks, threads=1)
        for p in ("int8", "float32"):
            curve = data["context_param_cache_curve"][p]
            self.assertEqual(curve[0], [6 * mib, 0.0])
            self.assertAllClose([t for _, t in curve], [5e-11 * (b - 6 * mib) for b, _ in curve], atol=1e-9)
        for n in data["context_fit"]:
            self.assertAllClose(n["fitted_ms"], n["measured_ms"], rtol=1e-6)
        self.assertNotIn("context_param_cache_curve",
                         hostfit.rescale_profile(base, kernels, samples, overhead, networks, threads=1))

    def test_rescale_profile_on_synthetic_timings(self):
        base = _base()
        kernels, nets = _tiny_kernels(), [_tiny_network()]
        samples, overhead, networks = _synthetic_measurement(base, kernels, nets, kernel_factor=2.0, context=1.25)
        data = hostfit.rescale_profile(base, kernels, samples, overhead, networks, threads=1)
        prof = profiles.parse_profile(data, "'quick'")
        for p in ("int8", "float32"):
            for kind in ("conv", "conv1x1", "add", "depthwise", "softmax"):
                scale = data["calibration"]["scales"][p][kind]
                self.assertAllClose([scale[g] for g in hostfit.TERM_GROUPS], [2.0] * 3, rtol=1e-6)
                self.assertEqual(scale["source"], p)
            self.assertAllClose(list(data["calibration"]["context_scale"][p].values()), [1.25, 1.25], rtol=1e-6)
            self.assertAllClose(data["invoke_overhead_s"][p], 2e-6)
            self.assertAllClose(data["context_factor"][p], 1.25 * base.context_factor[p], rtol=1e-6)
        for n in data["context_fit"]:
            self.assertAllClose(n["fitted_ms"], n["measured_ms"], rtol=1e-6)
        self.assertNotIn("context_param_cache_curve", data)
        # A kernel alone costs twice its base prediction.
        model = kernels[0][1]
        alone_base = profiles.parse_profile(hostfit._without_context(base.raw), "'a'")
        alone_new = profiles.parse_profile(hostfit._without_context(data), "'b'")
        before = cost.estimate_graph(cost.analyze(model), alone_base, "int8")["totals"]["cpu_ms"]
        after = cost.estimate_graph(cost.analyze(model), alone_new, "int8")["totals"]["cpu_ms"]
        self.assertAllClose(after, 2 * before, rtol=1e-6)
        self.assertEqual(prof.name, "host_cpu")
        self.assertEqual(data["calibration"]["method"], "quick")
        self.assertEqual(data["calibration"]["base"]["measured_on"]["processor"], "Another CPU 1000")
        for key in ("processor", "cores", "threads", "litert", "date"):
            self.assertIn(key, data["measured_on"])


class QuickCalibrationTest(tf.test.TestCase):

    def test_tiny_quick_calibration_measures_here(self):
        # A real run on a tiny set (three kernels, one network, float32, one round): a valid profile with
        # this machine's identity and every measured kind scaled.
        kernels = _tiny_kernels()[:3]
        data = hostfit.quick_calibrate(base=_base(), precisions=("float32",), rounds=1, kernels=kernels,
                                       networks=[_tiny_network()])
        profiles.parse_profile(copy.deepcopy(data), "'quick'")
        here = hostfit.identity(1)
        for key in ("processor", "threads", "litert"):
            self.assertEqual(data["measured_on"][key], here[key])
        self.assertEqual(data["measured_on"]["cores"], os.cpu_count())
        self.assertEqual(sorted(data["calibration"]["measured_kinds"]["float32"]), ["conv", "conv1x1"])
        self.assertGreater(data["calibration"]["context_scale"]["float32"]["factor"], 0)
        self.assertEqual(data["calibration"]["kernels"], 3)
        self.assertGreaterEqual(data["calibration"]["seconds"], 0)

    def test_cache_key_hit_and_messages(self):
        folder = self.get_temp_dir()
        base = _base()
        measure = CountingMeasure(base)
        logged = []
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hostfit, "measure_quick", measure)
            first = hostfit.host_profile(threads=1, log=logged.append, folder=folder, base=base)
            second = hostfit.host_profile(threads=1, log=logged.append, folder=folder, base=base)
        self.assertEqual(measure.calls, 1)  # the second call reads the cache
        self.assertEqual((first.source, second.source), ("quick calibration", "cache"))
        here = hostfit.identity(1)
        self.assertEqual(first.path, hostfit.cache_path(here, folder))
        name = os.path.basename(first.path)
        self.assertIn("-1t-litert", name)
        self.assertNotEqual(name, os.path.basename(hostfit.cache_path(dict(here, threads=2), folder)))
        self.assertNotEqual(name, os.path.basename(hostfit.cache_path(dict(here, litert="0.0"), folder)))
        self.assertNotEqual(name, os.path.basename(hostfit.cache_path(dict(here, processor="Other"), folder)))
        with open(first.path) as f:
            cached = json.load(f)
        self.assertEqual(cached["measured_on"]["processor"], here["processor"])
        self.assertEqual(second.profile.predictors, first.profile.predictors)
        self.assertIn("CPU 'Another CPU 1000'", logged[0])
        self.assertTrue(any("cached at" in m for m in logged))
        self.assertEqual(os.listdir(folder), [name])
        # A cache made by another version of the quick calibration is redone.
        cached["calibration"]["version"] = hostfit.QUICK_CALIBRATION_VERSION - 1
        with open(first.path, "w") as f:
            json.dump(cached, f)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hostfit, "measure_quick", measure)
            again = hostfit.host_profile(threads=1, folder=folder, base=base)
        self.assertEqual((again.source, measure.calls), ("quick calibration", 2))
        self.assertTrue(any("another version" in m for m in again.messages))
        # A profile fitted here with these threads and this LiteRT is used as found: nothing measured, no message.
        data = base.to_dict()
        data["measured_on"] = dict(data["measured_on"], processor=here["processor"], litert=here["litert"])
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hostfit, "measure_quick", measure)
            same = hostfit.host_profile(threads=1, folder=folder, base=profiles.parse_profile(data, "'here'"))
        self.assertEqual((same.source, same.messages, measure.calls), ("as found", [], 2))

    def test_shipped_full_fits_are_valid_and_say_what_they_were_fitted_on(self):
        names = [n for n in os.listdir(hostfit.SHIPPED_HOSTS_DIR) if n.endswith(".json")]
        self.assertTrue(names)
        for name in names:
            prof = profiles.load_profile(os.path.join(hostfit.SHIPPED_HOSTS_DIR, name))
            self.assertEqual((prof.name, prof.kind), ("host_cpu", "cpu"))
            here = {"processor": prof.measured_on["processor"], "threads": prof.threads,
                    "litert": prof.measured_on["litert"]}
            self.assertEqual(name, os.path.basename(hostfit.cache_path(here, "x")))  # named as the cache names it
            self.assertEqual(sorted(prof.predictors), ["float32", "int8"])

    def test_a_full_fit_shipped_for_this_cpu_is_used_without_measuring(self):
        shipped = self.get_temp_dir()
        here = hostfit.identity(1)
        data = _base().to_dict()
        for name, processor in (("a_other.json", "Yet Another CPU"), ("b_here.json", here["processor"])):
            data["measured_on"] = dict(data["measured_on"], processor=processor, litert=here["litert"])
            with open(os.path.join(shipped, name), "w") as f:
                json.dump(data, f)
        measure = CountingMeasure(_base())
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hostfit, "measure_quick", measure)
            mp.setattr(hostfit, "SHIPPED_HOSTS_DIR", shipped)
            mp.setattr(hostfit, "load_profile", lambda p: _base() if p == "host_cpu" else profiles.load_profile(p))
            choice = hostfit.host_profile(threads=1, folder=self.get_temp_dir())
            other_threads = hostfit.host_profile(threads=2, allow_calibration=False, folder=self.get_temp_dir())
        self.assertEqual((choice.source, measure.calls), ("shipped for this CPU", 0))
        self.assertEqual(choice.path, os.path.join(shipped, "b_here.json"))
        self.assertIn("full fit shipped for this CPU", choice.messages[-1])
        self.assertEqual(other_threads.source, "as found")  # fitted with 1 thread: not this machine's at 2

    def test_unwritable_cache_folder_estimates_with_the_profile_as_found(self):
        blocker = os.path.join(self.get_temp_dir(), "a_file")
        with open(blocker, "w") as f:
            f.write("x")
        base = _base()
        measure = CountingMeasure(base)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hostfit, "measure_quick", measure)
            choice = hostfit.host_profile(threads=1, folder=os.path.join(blocker, "kerasnets"), base=base)
        self.assertEqual((choice.source, measure.calls), ("as found", 0))
        self.assertIs(choice.profile, base)
        (line,) = [m for m in choice.messages if "cannot cache" in m]
        self.assertIn("estimating with profile host_cpu as found", line)
        self.assertNotIn("\n", line)

    def test_other_threads_and_litert_are_named(self):
        data = _base().to_dict()
        here = hostfit.identity(2)
        data["measured_on"] = dict(data["measured_on"], processor=here["processor"], litert="0.9.9")
        prof = profiles.parse_profile(data, "'p'")
        choice = hostfit.host_profile(threads=2, allow_calibration=False, folder=self.get_temp_dir(), base=prof)
        self.assertEqual(choice.source, "as found")
        self.assertIn("thread count 1 (here 2)", choice.messages[0])
        self.assertIn(f"LiteRT version '0.9.9' (here '{here['litert']}')", choice.messages[0])
        self.assertIn("quick calibration off", choice.messages[-1])

    def test_interrupted_calibration_writes_nothing(self):
        folder = os.path.join(self.get_temp_dir(), "cache")

        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hostfit, "measure_quick", interrupted)
            with self.assertRaises(KeyboardInterrupt):
                hostfit.host_profile(threads=1, folder=folder, base=_base())
        self.assertEqual(os.listdir(folder), [])

    def test_unusable_cache_file_is_measured_again(self):
        folder = self.get_temp_dir()
        base = _base()
        path = hostfit.cache_path(hostfit.identity(1), folder)
        with open(path, "w") as f:
            f.write("{not json")
        measure = CountingMeasure(base)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hostfit, "measure_quick", measure)
            choice = hostfit.host_profile(threads=1, folder=folder, base=base)
        self.assertEqual((choice.source, measure.calls), ("quick calibration", 1))
        self.assertTrue(any("unusable" in m for m in choice.messages))
        profiles.load_profile(path)


def _row(model, res, precision, pred, meas, repeat=None):
    row = {"model": model, "input": res, "precision": precision, "predicted_ms": pred, "measured_ms": meas}
    if repeat is not None:
        row["repeat_ms"] = [repeat]
    return row


class RelativeValidationTest(tf.test.TestCase):

    def test_summary_on_synthetic_numbers(self):
        # Anchors: int8 predicted 10 / measured 20 (the machine is 2x slower than predicted, uniformly).
        anchors = [_row("anchor", 224, "int8", 10.0, 20.0, 22.0), _row("anchor", 224, "float32", 10.0, 10.0, 10.0)]
        rows = [_row("a", 96, "int8", 1.0, 2.0, 2.2),     # relative: exact
                _row("b", 96, "int8", 2.0, 3.6, 4.4),     # relative: 0.2 / 0.18 -> +11.1%
                _row("c", 96, "int8", 3.0, 6.3, 6.93),    # relative: 0.3 / 0.315 -> -4.8%
                _row("d", 96, "float32", 1.0, 1.05, 1.0),  # +-4.8%
                _row("e", 96, "float32", 4.0, 3.0, 3.3)]   # +33%, and out of rank order
        s = calibrate.summarize_validation(rows, anchors, ("int8", "float32"))
        self.assertAllClose([r["relative_error_pct"] for r in rows],
                            [0.0, 100 * (0.2 / 0.18 - 1), 100 * (0.3 / 0.315 - 1), 100 * (1 / 1.05 - 1),
                             100 * (4 / 3 - 1)])
        self.assertAllClose(s["relative"]["int8"]["within_10pct"], 2 / 3)
        self.assertAllClose(s["relative"]["float32"]["within_10pct"], 0.5)
        self.assertAllClose(s["relative"]["int8"]["spearman"], 1.0)
        self.assertAllClose(s["relative"]["float32"]["spearman"], 1.0)
        self.assertEqual(s["targets"]["met"]["int8"], {"relative_within_10pct": False, "spearman": True})
        # Absolute: int8 is off by about -50% everywhere (the slow machine), float32 as above.
        self.assertAllClose(s["int8"]["within_10pct"], 0.0)
        self.assertAllClose(s["int8"]["mean_abs_pct_error"],
                            100 * np.mean([0.5, 1 - 2 / 3.6, 1 - 3 / 6.3]))
        # Spread between passes: the int8 anchor and cases moved +10% together (relative: unchanged, except b).
        r = s["repeat"]
        self.assertEqual(r["passes"], 2)
        self.assertAllClose(r["relative_mean_abs_pct_diff"],
                            100 * np.mean([0, abs((4.4 / 22) / (3.6 / 20) - 1), 0, abs(1 / 1.05 - 1),
                                           abs(3.3 / 3 - 1)]))
        self.assertGreater(r["mean_abs_pct_diff"], r["relative_mean_abs_pct_diff"])

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_real_tiny_validation_adds_the_anchor(self):
        report = calibrate.validate_host_profile(models=["mobilenet_v2_035"], resolutions=(32,),
                                                 precisions=("float32",), rounds=1, repeats=2,
                                                 anchor=("mobilenet_v3_small_100", 48), probe_mib=())
        self.assertTrue(report["anchor"]["added"])
        self.assertIsNone(report["in_run_cache"])
        self.assertNotIn("parameter-cache curve", calibrate.format_validation(report))
        self.assertIn("added: it is not in the model list", report["anchor"]["note"])
        (anchor,) = report["anchor"]["rows"]
        (row,) = report["rows"]
        self.assertEqual((anchor["model"], anchor["input"]), ("mobilenet_v3_small_100", 48))
        expected = 100 * ((row["predicted_ms"] / anchor["predicted_ms"])
                          / (row["measured_ms"] / anchor["measured_ms"]) - 1)
        self.assertAllClose(row["relative_error_pct"], expected)
        s = report["summary"]
        self.assertEqual(s["relative"]["float32"]["within_10pct"], float(abs(expected) <= 10))
        text = calibrate.format_validation(report)
        for needle in ("(a) predicted / measured latency relative to the anchor", "(b) Spearman", "(c) absolute",
                       "measurement spread in this run", "added: it is not in the model list"):
            self.assertIn(needle, text)


def _fake_report(profile, models=None, threads=1, repeats=1, log=None, **kwargs):
    anchors = [_row("mobilenet_v2_100", 224, p, 10.0, 12.0) for p in ("int8", "float32")]
    rows = [_row(m, 96, p, 1.0, 1.1) for m in models for p in ("int8", "float32")]
    summary = calibrate.summarize_validation(rows, anchors, ("int8", "float32"))
    for r in rows:
        r["reason"] = "test"
    return {"profile": "host_cpu", "threads": threads, "precisions": ["int8", "float32"], "method": "fake",
            "anchor": {"model": "mobilenet_v2_100", "input": 224, "added": True, "rows": anchors,
                       "note": "anchor mobilenet_v2_100 at 224x224 added: it is not in the model list"},
            "fitted_on": {"processor": "x"}, "measured_here": {"processor": "x"},
            "summary": summary, "worst": rows[:5], "rows": rows}


class EstimateFlagsTest(tf.test.TestCase):

    def test_quick_calibration_writes_the_profile(self):
        out = os.path.join(self.get_temp_dir(), "host_cpu.json")
        measure = CountingMeasure(_base())
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hostfit, "measure_quick", measure)
            proc = run_cli(ESTIMATE, "--calibrate=quick", f"--profile_out={out}", "--json")
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
            doc = json.loads(proc.stdout)
            self.assertEqual(doc["calibration"], "quick")
            with open(out) as f:
                data = json.load(f)
            self.assertEqual(data["calibration"]["method"], "quick")
            self.assertEqual(data["measured_on"]["processor"], hostfit.identity(1)["processor"])
            # --calibrate --quick is the same; text output names the scales.
            proc = run_cli(ESTIMATE, "--calibrate", "--quick", f"--profile_out={out}")
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
            self.assertIn("quick-calibrated", proc.stdout)
            self.assertIn("per MAC x", proc.stdout)
        self.assertEqual(measure.calls, 2)

    def test_validate_alone_and_its_flags(self):
        calls = []

        def fake(profile, **kwargs):
            calls.append((profile, kwargs))
            return _fake_report(profile, **kwargs)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(calibrate, "validate_host_profile", fake)
            proc = run_cli(ESTIMATE, "--validate", "--validate_models=ghostnet_100,regnetx_002", "--repeats=3")
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        ((profile, kwargs),) = calls
        self.assertEqual(kwargs["models"], ["ghostnet_100", "regnetx_002"])
        self.assertEqual(kwargs["repeats"], 3)
        self.assertEqual(profile, hostfit.profile_for_here("host_cpu", threads=1).profile.path)  # as the estimate
        self.assertIn("(a) predicted / measured latency relative to the anchor", proc.stdout)
        self.assertIn("added: it is not in the model list", proc.stdout)

    def test_bad_flag_combinations_exit_2(self):
        for args, needle in ((["--calibrate=sometimes"], "--calibrate=sometimes"),
                             (["--calibrate=quick", "--networks=8"], "applies to the full fit only"),
                             (["--calibrate=quick", "--samples=/tmp/t.json"], "applies to the full fit only"),
                             (["--validate_models=ghostnet_100"], "only applies with --validate"),
                             (["--repeats=3", "--model=ghostnet_100"], "only applies with --validate"),
                             (["--validate", "--model=ghostnet_100"], "--model does not apply with --validate"),
                             (["--validate", "--profile=edgetpu_usb"], "NPU profile"),
                             (["--quick"], "--quick only applies with --calibrate")):
            proc = run_cli(ESTIMATE, *args)
            self.assertEqual(proc.returncode, 2, (args, proc.stderr[-2000:]))
            self.assertIn(needle, proc.stderr)
            self.assertNotIn("Traceback", proc.stderr)
