"""kerasnets.export.speccost: a spec costed from cached per-block ops agrees with the estimate of its built model."""
import dataclasses
import time

import pytest
from absl.testing import parameterized

import kerasnets
from kerasnets.export import cost
from kerasnets.export.speccost import SpecCoster, estimate_spec
from kerasnets.backend import tf
from kerasnets.spec import Block, ModelSpec, Top
from kerasnets.zoo import get_spec
from tests.helpers import check_bad_call, shared_spec_coster, split_sweep

PROFILES = ("m55h", "edgetpu_usb")


def _agree(test, spec, shape, coster=None, options=None, classes=1000, method="blocks"):
    """Spec-level and built-model estimates: the same rows (names, placements, latencies) and totals."""
    coster = coster or SpecCoster(shape, classes=classes, options=options)
    model = kerasnets.get_model(spec=spec, input_shape=shape, classes=classes, **dataclasses.asdict(coster.options))
    for profile in PROFILES:
        got = coster.estimate(spec, profile)
        want = cost.estimate(model, profile)
        test.assertEqual(got["method"], method)
        test.assertEqual([r.name for r in got["layers"]], [r.name for r in want["layers"]])
        test.assertEqual([r.placement for r in got["layers"]], [r.placement for r in want["layers"]])
        test.assertAllClose([r.latency_ms for r in got["layers"]], [r.latency_ms for r in want["layers"]],
                            rtol=1e-9, atol=0)
        a, b = got["totals"]["latency_ms"], want["totals"]["latency_ms"]
        test.assertLess(abs(a / b - 1), 0.01, f"{spec.name} {shape} {profile}: {a:.4f} vs {b:.4f} ms")
        for key in ("macs", "params", "npu_ops", "cpu_ops", "param_streamed_bytes"):
            test.assertEqual(got["totals"][key], want["totals"][key], key)
    return coster


def _small_variant():
    """A MobileNetV2-0.35 with 5x5 kernels and 8-wide group convs in its last stages and hard-swish."""
    blocks = []
    for b, stage in zip(get_spec("mobilenet_v2_035").blocks, get_spec("mobilenet_v2_035").block_stages()):
        if b.kind == "ir" and stage >= 4:
            b = dataclasses.replace(b, kernel=5, group_width=8, mid=-(-b.mid // 8) * 8)
        blocks.append(dataclasses.replace(b, act="hard_swish") if b.act else b)
    return ModelSpec("mnv2_035_variant", tuple(blocks), Top("pool_fc", dropout=0.2))


class AgreementTest(tf.test.TestCase, parameterized.TestCase):

    def test_small_variant_agrees_and_a_cached_estimate_is_fast(self):
        spec = _small_variant()
        coster = _agree(self, spec, (64, 64, 3), classes=10)
        misses = coster.stats["misses"]
        self.assertLess(misses, len(spec.blocks), "repeated blocks are built once")
        runs = 20
        started = time.perf_counter()
        for i in range(runs):
            coster.estimate(dataclasses.replace(spec, name=f"copy{i}"), "m55h")  # new spec: stitched anew, no build
        per = (time.perf_counter() - started) / runs
        self.assertEqual(coster.stats["misses"], misses)
        print(f"spec-level estimate with every block cached: {per * 1e3:.2f} ms per candidate "
              f"({coster.stats['build_s'] / misses * 1e3:.0f} ms per block the first time)")

    @parameterized.parameters("mobilenet_v2_100", "axspine_middle")
    def test_zoo_models_at_224_agree(self, name):
        _agree(self, get_spec(name), (224, 224, 3))

    def test_a_fusion_across_blocks_is_costed_from_the_whole_model(self):
        # A linear conv without BN, then a BN + ReLU block: the converter folds the BN into the conv across the
        # block boundary, which the per-block ops cannot show.
        spec = ModelSpec("cross", (Block("conv", 16, 3, 2, act=None, norm=False), Block("norm_act", 16),
                                   Block("ir", 24, 3, 2, mid=48)), Top())
        _agree(self, spec, (32, 32, 3), classes=4, method="full")

    def test_torch_convention_and_split_group_convs(self):
        _agree(self, get_spec("axspine_small"), (64, 96, 3), options={"convention": "torch", "group_conv": "split"})

    def test_estimate_spec_without_a_coster(self):
        result = estimate_spec(get_spec("mobilenet_v2_035"), "m55h", input_shape=(64, 64, 3), classes=10)
        self.assertEqual(result["method"], "blocks")
        self.assertGreater(result["totals"]["latency_ms"], 0)

    def test_bad_arguments(self):
        check_bad_call(self, lambda: SpecCoster((64, 64, 3), classes=0), ["classes=0"])
        check_bad_call(self, lambda: SpecCoster("64x64"), ["'64x64'", "(height, width"])
        check_bad_call(self, lambda: SpecCoster((64, -1, 3)), ["positive integers"])
        check_bad_call(self, lambda: SpecCoster((16, 16, 3)).graph(get_spec("mobilenet_v2_035")),
                       ["total stride 32", "32x32"])
        check_bad_call(self, lambda: SpecCoster().graph("mobilenet_v2_035"), ["ModelSpec"])
        check_bad_call(self, lambda: SpecCoster(options=3), ["options=3"])


_FAST, _SLOW = split_sweep(kerasnets.list_models())


class ZooSweepTest(tf.test.TestCase, parameterized.TestCase):
    """Every zoo model at 96x96: the same rows and totals from the spec as from the built model."""

    @parameterized.parameters(*_FAST)
    @pytest.mark.slow  # ~13 s; AgreementTest keeps zoo models in the fast tier
    def test_fast(self, name):
        _agree(self, get_spec(name), (96, 96, 3), coster=shared_spec_coster((96, 96, 3), 10), classes=10)

    @parameterized.parameters(*_SLOW)
    @pytest.mark.slow
    def test_slow(self, name):
        _agree(self, get_spec(name), (96, 96, 3), coster=shared_spec_coster((96, 96, 3), 10), classes=10)
