"""export.calibrate: kernel coverage, the non-negative fit, profile output, one real micro-benchmark."""
import numpy as np

from export import calibrate, cost, litert_timing, profiles
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
        coef = calibrate._nnls_relative(x, x @ true)
        self.assertAllClose(coef, true, rtol=1e-6)
        self.assertTrue(np.all(calibrate._nnls_relative(x, x @ np.array([5e-6, 0, 1e-10]) * 1.01) >= 0))

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
        r = cost.estimate(keras.Model(x, y), prof, precision="int8")
        self.assertGreater(r["totals"]["latency_ms"], 0.01)

    def test_spearman(self):
        self.assertAllClose(calibrate._spearman([1, 2, 3, 4], [10, 20, 30, 40]), 1.0)
        self.assertAllClose(calibrate._spearman([1, 2, 3, 4], [4, 3, 2, 1]), -1.0)

    def test_one_real_kernel_timing(self):
        kind, shape, body = calibrate.kernel_specs()[3]
        model = calibrate._kernel_model(shape, body, 0)
        timing = litert_timing.time_model(calibrate._convert(model, "int8"), threads=1, runs=5, warmup=1)
        self.assertGreater(timing["median_ms"], 0)
        self.assertGreaterEqual(timing["runs"], 5)
