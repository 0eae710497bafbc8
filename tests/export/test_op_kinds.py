"""One op-kind vocabulary: the kinds the graph describer gives ops (export.graph.OP_KINDS) are what the
profiles name (support.ops, memory_ops, CPU predictors), what the NPU cost and the CPU predictors price,
and what the host fitter measures; every zoo model's graph uses only these kinds."""
import pytest

import kerasnets
from kerasnets.export import calibrate, costing, graph, profiles
from kerasnets.zoo import get_spec
from tests.helpers import shared_spec_coster
from kerasnets.backend import keras, tf

_SHAPE = {"conv": (1, 8, 8, 16), "depthwise": (1, 8, 8, 16), "group_conv": (1, 8, 8, 16), "dense": (1, 16)}


def _op(kind, **fields):
    return graph.Op(0, kind, "Layer", kind, (), [], [_SHAPE.get(kind, (1, 8, 8, 16))], _SHAPE.get(kind, (1, 8, 8, 16)),
                    **fields)


def _costed_kinds():
    """Every non-free graph kind, with the variants that choose another CPU predictor."""
    ops = [_op(k) for k in graph.OP_KINDS if k not in graph.FREE_KINDS]
    ops += [_op("conv", kernel=(1, 1)), _op("conv", kernel=(3, 3))]
    ops += [_op("activation", activation=a) for a in ("relu", "hard_swish", "hard_sigmoid", "sigmoid")]
    return ops


class OpKindVocabularyTest(tf.test.TestCase):

    def test_profiles_support_exactly_the_graph_kinds(self):
        self.assertEqual(set(profiles.SUPPORT_OPS), set(graph.OP_KINDS) - set(graph.FREE_KINDS))
        self.assertEqual(len(set(graph.OP_KINDS)), len(graph.OP_KINDS))

    def test_every_kind_has_an_npu_price(self):
        for kind in profiles.SUPPORT_OPS:
            self.assertTrue(kind in graph.CONV_KINDS or kind in costing.MEMORY_GROUP, kind)
        self.assertEqual(set(costing.MEMORY_GROUP.values()), set(profiles.MEMORY_OP_KINDS))
        self.assertEqual(set(costing.MEMORY_GROUP) | set(graph.CONV_KINDS), set(profiles.SUPPORT_OPS))

    def test_every_kind_has_a_cpu_predictor_in_every_cpu_profile(self):
        kinds = {costing.cpu_predictor_kind(op) for op in _costed_kinds()}
        # each predictor a profile may fit is reached from some graph kind; the rest fall back to one
        self.assertEqual(set(profiles.CPU_KINDS) - kinds, set())
        for kind in kinds - set(profiles.CPU_KINDS):
            self.assertIn(kind, costing.CPU_FALLBACK, f"{kind} has no predictor and no fallback")
        self.assertLessEqual(set(costing.CPU_FALLBACK.values()), set(profiles.CPU_KINDS))
        for name in profiles.list_profiles():
            profile = profiles.load_profile(name)
            if profile.is_npu:
                continue
            for precision, table in profile.predictors.items():
                self.assertLessEqual(set(table), set(profiles.CPU_KINDS), (name, precision))
                for kind in kinds:
                    self.assertIn(costing.cpu_predictor_used(kind, table), table, (name, precision, kind))

    @pytest.mark.slow  # builds and describes every calibration kernel (~130 small models, ~40 s)
    def test_the_host_fitter_measures_the_predictor_kinds(self):
        measured = set()
        for label, shape, body in calibrate.kernel_specs(samples=1):
            x = keras.Input(shape, batch_size=1)
            ops = [op for op in graph.analyze(keras.Model(x, body(x))).ops if not op.is_free]
            self.assertTrue(ops, label)
            kind = costing.cpu_predictor_kind(ops[0])
            self.assertIn(kind, profiles.CPU_KINDS, label)
            measured.add(kind)
        fitted = set(profiles.load_profile("host_cpu").predictors["int8"])
        self.assertLessEqual(fitted, measured)  # nothing in the shipped profile that the fitter cannot measure

    @pytest.mark.slow  # every zoo model at 96x96
    def test_every_zoo_graph_uses_only_known_kinds(self):
        # From the spec, as kerasnets-search costs it (block ops cached, and shared with test_speccost's sweep,
        # which shows they are the built models' ops, op for op); building all ~55 models here took 95 s in CI.
        seen = set()
        coster = shared_spec_coster((96, 96, 3), 10)
        for name in kerasnets.list_models():
            kinds = {op.kind for op in coster.graph(get_spec(name))[0].ops}
            self.assertLessEqual(kinds, set(graph.OP_KINDS), name)
            seen |= kinds
        for name in ("repghostnet_050", "mobilenet_v2_035"):  # deployed forms, and the torch convention
            seen |= {op.kind for op in graph.analyze(kerasnets.deploy(kerasnets.get_model(
                name, input_shape=(64, 64, 3), classes=10, convention="torch"))).ops}
        self.assertEqual(set(graph.OP_KINDS) - seen - {"adaptive_pool", "activation"}, set())
