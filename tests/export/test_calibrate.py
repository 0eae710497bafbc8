"""kerasnets.export.calibrate: kernel coverage, the non-negative fit, profile output, one real micro-benchmark."""
import numpy as np
import pytest

from kerasnets.export import calibrate, cost, litert_timing, profiles
from kerasnets.backend import keras, tf

L = keras.layers


class FitTest(tf.test.TestCase):

    def test_kernels_cover_every_kind(self):
        kinds = {k for k, _, _ in calibrate.kernel_specs()}
        for kind in ("conv", "conv1x1", "depthwise", "group_conv", "dense", "add", "multiply", "concat", "slice",
                     "shuffle", "max_pool", "avg_pool", "global_pool", "activation", "softmax"):
            self.assertIn(kind, kinds)
        self.assertLess(len(calibrate.kernel_specs(quick=True)), len(calibrate.kernel_specs()))

    def test_nnls_recovers_coefficients(self):
        rng = np.random.default_rng(0)
        x = np.column_stack([np.ones(20), rng.uniform(1e5, 1e8, 20), rng.uniform(1e4, 1e7, 20)])
        true = np.array([5e-6, 2e-11, 1e-10])
        coef = calibrate.nnls_relative(x, x @ true)
        self.assertAllClose(coef, true, rtol=1e-6)
        self.assertTrue(np.all(calibrate.nnls_relative(x, x @ np.array([5e-6, 0, 1e-10]) * 1.01) >= 0))

    def test_fitted_profile_is_valid_and_estimates(self):
        samples = []
        for precision in ("int8", "float32"):
            for kind in ("conv", "add", "depthwise"):
                for i in range(4):
                    w, b = 1e6 * (i + 1), 1e5 * (i + 2)
                    samples.append({"kind": kind, "precision": precision, "work": w, "bytes": b, "ops": 1,
                                    "ms": (2e-6 + 3e-11 * w + 1e-10 * b) * 1e3})
        data = calibrate.fit_host_profile(samples, {"int8": 0.01, "float32": 0.01}, threads=1, name="fitted_cpu")
        prof = profiles.parse_profile(data, "'fitted_cpu'")
        x = keras.Input((16, 16, 3))
        y = L.DepthwiseConv2D(3)(L.Conv2D(8, 3)(x))
        model = keras.Model(x, y)
        r = cost.estimate(model, prof, precision="int8")
        self.assertGreater(r["totals"]["latency_ms"], 0.01)
        # Networks measured 1.3x slower than their kernels predict give a context factor of
        # 1.3 for that precision (and no per-op term), and the estimate grows by it.
        def net(size):
            x = keras.Input((size, size, 3))
            return keras.Model(x, L.DepthwiseConv2D(3)(L.Conv2D(8, 3)(x)))
        nets = []
        for size in (16, 32, 48):
            est = cost.estimate(net(size), prof, precision="int8")["totals"]
            nets.append({"model": net(size), "name": f"net{size}", "input": [size, size, 3], "precision": "int8",
                         "measured_ms": est["cpu_ms"] * 1.3 + 0.01})
        data = calibrate.fit_host_profile(samples, {"int8": 0.01, "float32": 0.01}, name="fitted_cpu", networks=nets)
        self.assertAllClose(data["context_factor"]["int8"], 1.3)
        self.assertAllClose(data["context_per_op_s"]["int8"], 0.0, atol=1e-9)
        self.assertNotIn("float32", data["context_factor"])
        r2 = cost.estimate(model, profiles.parse_profile(data, "'fitted_cpu'"), precision="int8")
        self.assertAllClose(r2["totals"]["cpu_ms"], 1.3 * r["totals"]["cpu_ms"], rtol=1e-6)
        self.assertIn("in-model context", r2["layers"][-1].reason)

    def test_parameters_over_the_cache_are_fitted_and_charged(self):
        # Probe chains of more than 4 MiB of parameters run 1e-10 s per byte over it slower than the in-cache rate
        # (as float32 models whose weights do not fit this VM's caches do): the fit measures that curve, the
        # context fit on networks takes it off before fitting its own terms, and the estimate charges it to a large
        # model only, spread over its layers by their parameter bytes.
        mib = 2**20

        def stream_s(b):
            return 1e-10 * max(b - 4 * mib, 0)

        samples = []
        for kind in ("conv", "add"):
            for i in range(4):
                w, b = 1e6 * (i + 1), 1e5 * (i + 2)
                samples.append({"kind": kind, "precision": "int8", "work": w, "bytes": b, "ops": 1,
                                "ms": (2e-6 + 3e-11 * w + 1e-10 * b) * 1e3})
        plain = profiles.parse_profile(calibrate.fit_host_profile(samples, {"int8": 0.01}, name="c"), "'c'")
        probes = [{"kind": "param_cache", "precision": "int8", "param_bytes": size * mib, "ops": size,
                   "ms": (1e-5 + 2e-11 * size * mib + stream_s(size * mib)) * 1e3} for size in (1, 2, 3, 4, 6, 8, 12, 16)]

        def net(units):
            x = keras.Input((1024,))
            return keras.Model(x, L.Dense(16)(L.Dense(units)(x)))

        def params(model):
            return sum(cost.cpu_features(op, "int8")["param_bytes"] for op in cost.analyze(model).ops)

        nets = []
        for units in (300, 800, 1500, 2500, 4000, 6000, 8000):
            model = net(units)
            kernels = cost.estimate(model, plain, precision="int8")["totals"]["cpu_ms"]
            nets.append({"model": model, "name": f"net{units}", "input": [1024], "precision": "int8",
                         "measured_ms": kernels + stream_s(params(model)) * 1e3 + 0.01})
        data = calibrate.fit_host_profile(samples + probes, {"int8": 0.01}, name="c", networks=nets)
        curve = data["context_param_cache_curve"]["int8"]
        self.assertEqual([b for b, _ in curve], [size * mib for size in (4, 6, 8, 12, 16)])
        self.assertAllClose([t for _, t in curve], [stream_s(b) for b, _ in curve], rtol=1e-6, atol=1e-9)
        self.assertNotIn("param_cache", data["predictors"]["int8"])
        # The networks' extra time is the curve's: nothing is left for the context terms to absorb.
        self.assertAllClose(data["context_factor"]["int8"], 1.0, rtol=1e-3)
        self.assertLess(data["context_per_param_byte_s"]["int8"], 1e-13)
        fitted = profiles.parse_profile(data, "'c'")
        small, large = net(800), net(6000)
        for model in (small, large):
            before = cost.estimate(model, plain, precision="int8")
            after = cost.estimate(model, fitted, precision="int8")
            self.assertAllClose(after["totals"]["cpu_ms"], before["totals"]["cpu_ms"] + stream_s(params(model)) * 1e3,
                                rtol=1e-3)
        # Past the last probe the curve goes on at its last slope.
        self.assertAllClose(fitted.uncached_param_s("int8", 32 * mib), stream_s(32 * mib))
        rows = cost.estimate(large, fitted, precision="int8")["layers"]
        self.assertTrue(any("do not fit the caches" in r.reason and "over 4 MiB" in r.reason for r in rows))
        self.assertFalse(any("cache" in r.reason for r in cost.estimate(small, fitted, precision="int8")["layers"]))
        # Probes that all fit the caches give no curve, and the estimate is the plain one.
        flat = [dict(p, ms=(1e-5 + 2e-11 * p["param_bytes"]) * 1e3) for p in probes]
        self.assertNotIn("context_param_cache_curve", calibrate.fit_host_profile(samples + flat, {"int8": 0.01}))

    def test_compute_kernels_fit_per_byte_terms(self):
        # Enough conv samples get the input/output/parameter-byte terms; the fit recovers them.
        rng = np.random.default_rng(1)
        samples = []
        for _ in range(12):
            f = {"work": rng.uniform(1e5, 1e8), "in_bytes": rng.uniform(1e3, 1e6), "out_bytes": rng.uniform(1e3, 1e6),
                 "param_bytes": rng.uniform(1e2, 1e6), "groups": 0, "pixels": rng.uniform(1, 1e4)}
            f["bytes"] = f["in_bytes"] + f["out_bytes"] + f["param_bytes"]
            ms = 1e3 * (1e-6 + 2e-11 * f["work"] + 3e-10 * f["in_bytes"] + 1e-10 * f["param_bytes"]
                        + 5e-9 * f["pixels"])
            samples.append(dict(kind="conv", precision="int8", ops=1, ms=ms, **f))
        samples.append(dict(kind="add", precision="int8", ops=1, ms=0.002, work=100, bytes=300))
        coef = calibrate.fit_host_profile(samples, {"int8": 0.0})["predictors"]["int8"]["conv"]
        self.assertAllClose([coef["fixed_s"], coef["per_mac_s"], coef["per_in_byte_s"], coef["per_param_byte_s"],
                             coef["per_pixel_s"]], [1e-6, 2e-11, 3e-10, 1e-10, 5e-9], rtol=1e-4)

    @pytest.mark.slow
    def test_random_networks_are_seeded_and_bounded(self):
        a = calibrate.network_models(3, seed=5, max_macs=1e8)
        b = calibrate.network_models(3, seed=5, max_macs=1e8)
        self.assertEqual([m.count_params() for m in a], [m.count_params() for m in b])
        self.assertEqual([m.input_shape for m in a], [m.input_shape for m in b])
        for m in a:
            self.assertLessEqual(cost.analyze(m).total_macs(), 1e8)
            # The spec kept on the model rebuilds it (what --samples refits from).
            again = calibrate.build_network(m.kerasnets_spec, m.input_shape[1])
            self.assertEqual(again.count_params(), m.count_params())
        self.assertGreater(len({m.count_params() for m in a}), 1)

    def test_bad_cpu_predictor_term_is_refused(self):
        data = calibrate.fit_host_profile([dict(kind="conv", precision="int8", ops=1, ms=0.01, work=1e6, bytes=1e4),
                                           dict(kind="add", precision="int8", ops=1, ms=0.002, work=100, bytes=300)],
                                          {"int8": 0.0}, name="bad_cpu")
        data["predictors"]["int8"]["conv"]["per_flop_s"] = 1e-12
        with self.assertRaisesRegex(profiles.ProfileError, "per_flop_s"):
            profiles.parse_profile(data, "'bad_cpu'")
        del data["predictors"]["int8"]["conv"]["per_flop_s"]
        data["context_factor"] = {"int8": 0}
        with self.assertRaisesRegex(profiles.ProfileError, "context_factor.int8"):
            profiles.parse_profile(data, "'bad_cpu'")
        del data["context_factor"]
        for curve, problem in (([[1e6, 0.0]], "two or more"), ([[1e6, 0.0], [2e6, -1e-4]], "non-negative"),
                               ("1e6", "two or more"), ([[2e6, 0.0], [1e6, 1e-4]], "rising parameter bytes"),
                               ([[1e6, 2e-4], [2e6, 1e-4]], "never fall")):
            data["context_param_cache_curve"] = {"int8": curve}
            with self.assertRaisesRegex(profiles.ProfileError, f"context_param_cache_curve.int8' .*{problem}"):
                profiles.parse_profile(data, "'bad_cpu'")

    def test_spearman(self):
        self.assertAllClose(calibrate._spearman([1, 2, 3, 4], [10, 20, 30, 40]), 1.0)
        self.assertAllClose(calibrate._spearman([1, 2, 3, 4], [4, 3, 2, 1]), -1.0)

    def test_one_real_kernel_timing(self):
        kind, shape, body = calibrate.kernel_specs()[3]
        model = calibrate.kernel_model(shape, body, 0)
        timing = litert_timing.time_model(calibrate._convert(model, "int8"), threads=1, runs=5, warmup=1)
        self.assertGreater(timing["median_ms"], 0)
        self.assertGreaterEqual(timing["runs"], 5)

    def test_interleaved_timing(self):
        small = calibrate.kernel_model((8, 8, 8), lambda x: L.Add()([x, x]), 0)
        big = calibrate.kernel_model((56, 56, 32), lambda x: calibrate.conv_bn_relu6(x, 64, 3, 1), 1)
        its = {n: litert_timing.load(calibrate._convert(m, "float32")) for n, m in (("small", small), ("big", big))}
        t = litert_timing.time_interleaved(its, rounds=3)
        self.assertEqual(t["big"]["windows"], 9)
        self.assertGreater(t["big"]["steady_ms"], 2 * t["small"]["steady_ms"])

    @pytest.mark.slow  # moved out of the fast tier (make check under 5 minutes)
    def test_validation_report_with_a_repeat_pass(self):
        # The anchor's model is in the list at another size: timed as the anchor, not "added".
        report = calibrate.validate_host_profile(models=["mobilenet_v2_035"], resolutions=(32,),
                                                 precisions=("float32",), rounds=1, repeats=2,
                                                 anchor=("mobilenet_v2_035", 64), probe_mib=(1, 2, 3, 4))
        self.assertFalse(report["anchor"]["added"])
        # The parameter-cache probe ran with the cases, and the same measurements are scored with its curve.
        cache = report["in_run_cache"]
        self.assertEqual([(p, round(b / 2**20)) for p, b, _ in cache["probe_ms"]], [("float32", m) for m in (1, 2, 3, 4)])
        self.assertTrue(all(ms > 0 for _, _, ms in cache["probe_ms"]))
        self.assertIn("float32", cache["summary"]["relative"])
        self.assertIn("with the parameter-cache curve measured in this run", calibrate.format_validation(report))
        self.assertEqual([(r["model"], r["input"]) for r in report["anchor"]["rows"]], [("mobilenet_v2_035", 64)])
        (row,) = report["rows"]
        self.assertLen(row["pass_ms"], 2)
        self.assertGreater(row["pass_ms"][1], 0)
        self.assertEqual(row["measured_ms"], min(row["pass_ms"]))  # the fastest pass
        repeat = report["summary"]["repeat"]
        self.assertEqual(repeat["passes"], 2)
        diff = abs(100 * (row["pass_ms"][1] / row["pass_ms"][0] - 1))
        self.assertAllClose(repeat["mean_abs_pct_diff"], diff)
        self.assertEqual(repeat["within_10pct"], float(diff <= 10))
        self.assertIn("more pass(es) over the same loaded models", calibrate.format_validation(report))


class ResidualTest(tf.test.TestCase):

    def test_kernel_regression_corrects_near_and_fades_far(self):
        # Kernels whose time is 1.5x the linear predictor in one region of feature space:
        # the correction is about 1.5 there and 1 far away.
        rng = np.random.default_rng(0)
        group, log_ratio = [], []
        for _ in range(40):
            work = float(rng.uniform(1e5, 1e6))
            group.append({"work": work, "in_bytes": work / 10, "out_bytes": work / 10, "param_bytes": 100,
                          "groups": 0})
            log_ratio.append(np.log(1.5))
        table, loo = calibrate._fit_residuals(group, np.array(log_ratio))
        self.assertAllClose(np.exp(loo), np.full(40, 1.5), rtol=0.1)  # the prior shrinks the edges a little
        typed = profiles.ResidualTable(**table)  # as a loaded profile holds it
        near = cost.cpu_residual(typed, {"work": 5e5, "in_bytes": 5e4, "out_bytes": 5e4, "param_bytes": 100})
        far = cost.cpu_residual(typed, {"work": 1e10, "in_bytes": 1e9, "out_bytes": 1e9, "param_bytes": 1e7})
        self.assertAllClose(near, 1.5, rtol=0.05)
        self.assertAllClose(far, 1.0)
        self.assertEqual(cost.cpu_residual(None, {"work": 1}), 1.0)
        self.assertEqual(calibrate._fit_residuals(group[:3], np.zeros(3))[0], None)

    def test_bad_residual_table_is_refused(self):
        data = calibrate.fit_host_profile([dict(kind="conv", precision="int8", ops=1, ms=0.01, work=1e6, bytes=1e4),
                                           dict(kind="add", precision="int8", ops=1, ms=0.002, work=100, bytes=300)],
                                          {"int8": 0.0}, name="bad_cpu")
        data["residuals"] = {"int8": {"conv": {"points": [[1, 2]], "log_ratio": [0.1], "scale": [1, 1, 1, 1, 1],
                                               "bandwidth": 0.3, "prior": 0.5}}}
        with self.assertRaisesRegex(profiles.ProfileError, "residuals.int8.conv.points"):
            profiles.parse_profile(data, "'bad_cpu'")


class NetworkKernelTest(tf.test.TestCase):

    def test_network_kernels_cover_every_costed_op_once(self):
        x = keras.Input((16, 16, 8), name="input")
        a = calibrate.conv_bn_relu6(x, 8, 3, 1)
        b = calibrate.conv_bn_relu6(a, 8, 3, 1)           # same configuration as a: deduplicated
        y = L.Add()([a, b])
        pooled = L.GlobalAveragePooling2D(keepdims=True)(y)
        y = L.Multiply()([y, L.Activation("sigmoid")(pooled)])   # a squeeze-excite style broadcast multiply
        model = keras.Model(x, y)
        kernels = calibrate.network_kernels(model)
        kinds = sorted(ops[0].kind for _, ops in kernels)
        self.assertEqual(kinds, ["activation", "add", "conv", "global_pool", "multiply"])
        for sub, ops in kernels:
            if len(sub.inputs) > 1:   # two-input kernels convert through the calibration's own path
                content = calibrate._convert(sub, "int8", calibration=2)
                it = litert_timing.load(content)
                it.invoke()
                self.assertEqual(len(it.get_input_details()), 2)


class ChannelAlignTest(tf.test.TestCase):

    def test_fit_finds_the_output_channel_block_width(self):
        # Conv kernels timed as if output channels were padded to 16: the fit picks 16
        # and predicts a 20-channel conv like a 32-channel one.
        rng = np.random.default_rng(2)
        samples = []
        for _ in range(30):
            cout, unit = int(rng.integers(2, 40)) * 4, float(rng.uniform(1e4, 1e6))
            work = unit * cout
            padded = unit * (-(-cout // 16) * 16)
            samples.append(dict(kind="conv1x1", precision="float32", ops=1, work=work, channels=cout, in_bytes=1e3,
                                out_bytes=1e3, param_bytes=1e2, bytes=2.1e3, groups=0,
                                ms=(2e-6 + 1e-11 * padded) * 1e3))
        samples.append(dict(kind="add", precision="float32", ops=1, ms=0.002, work=100, bytes=300))
        samples.append(dict(kind="conv", precision="float32", ops=1, ms=0.01, work=1e6, bytes=1e4))
        data = calibrate.fit_host_profile(samples, {"float32": 0.0}, name="aligned_cpu")
        entry = data["predictors"]["float32"]["conv1x1"]
        self.assertEqual(entry["channel_align"], 16)
        self.assertAllClose(entry["per_mac_s"], 1e-11, rtol=1e-3)
        prof = profiles.parse_profile(data, "'aligned_cpu'")
        x = keras.Input((8, 8, 16))
        narrow = cost.estimate(keras.Model(x, L.Conv2D(20, 1, use_bias=False)(x)), prof, precision="float32")
        wide = cost.estimate(keras.Model(x, L.Conv2D(32, 1, use_bias=False)(x)), prof, precision="float32")
        self.assertAllClose(narrow["layers"][1].compute_ms, wide["layers"][1].compute_ms, rtol=1e-6)

    def test_padded_work(self):
        self.assertEqual(cost.padded_work(100, 20, 16), 160)
        self.assertEqual(cost.padded_work(100, 32, 16), 100)
        self.assertEqual(cost.padded_work(100, 0, 16), 100)
        self.assertEqual(cost.padded_work(100, 20, 1), 100)


class TimingsFileTest(tf.test.TestCase):

    def test_saved_timings_load_back_with_their_networks(self):
        net = calibrate.network_models(1, seed=3, max_macs=5e7)[0]
        networks = [{"model": net, "name": net.name, "input": list(net.input_shape[1:]), "precision": "int8",
                     "measured_ms": 1.0, "spec": net.kerasnets_spec}]
        samples = [{"kind": "add", "precision": "int8", "ops": 1, "work": 10, "bytes": 30, "ms": 0.002}]
        path = self.get_temp_dir() + "/timings.json"
        calibrate.save_timings(path, samples, {"int8": 0.001}, networks)
        s, o, n = calibrate.load_timings(path)
        self.assertEqual(s, samples)
        self.assertEqual(o, {"int8": 0.001})
        self.assertEqual(n[0]["model"].count_params(), net.count_params())
        self.assertEqual(n[0]["measured_ms"], 1.0)
