"""The catalogue of bad calls to the kerasnets library: every one raises a KerasnetsError subclass
(never a raw TypeError / AttributeError / ValueError of TensorFlow or numpy) whose one sentence names
the bad value. Nothing here builds more than a small model, so the whole table runs in seconds."""
import os
import tempfile

from absl.testing import parameterized

import kerasnets
from tests.helpers import TempFoldersTestCase, check_bad_call

M = "mobilenet_v2_035"
S = (32, 32, 3)
_TMP = []  # the test class's scratch folder, removed after the class


def _scratch():
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="kn-bad-lib-"))
    return _TMP[0]


def _get(**kwargs):
    return lambda: kerasnets.get_model(M, **{"input_shape": S, **kwargs})


def _other_weights():
    """Weights Keras saved from another model (mobilenet_v2_050), and a file that is not HDF5."""
    path = os.path.join(_scratch(), "other.weights.h5")
    kerasnets.get_model("mobilenet_v2_050", input_shape=S, classes=10).save_weights(path)
    return path


def _text_file(suffix=".h5"):
    fd, path = tempfile.mkstemp(suffix=suffix, dir=_scratch())
    with os.fdopen(fd, "w") as f:
        f.write("not weights")
    return path


# (name, call, words): call() must raise a KerasnetsError whose message holds every word.
CASES = [
    # the name
    ("name_int", lambda: kerasnets.get_model(5), ("5", "not a string")),
    ("name_none", lambda: kerasnets.get_model(None), ("model name", "spec=")),
    ("name_list", lambda: kerasnets.get_model(["mobilenet_v2_100"]), ("['mobilenet_v2_100']",)),
    ("name_unknown", lambda: kerasnets.get_model("mobilenet_v2_10"), ("'mobilenet_v2_10'", "mobilenet_v2_100")),
    ("name_empty", lambda: kerasnets.get_model(""), ("''",)),
    ("info_name_int", lambda: kerasnets.get_model_info(3.5), ("3.5",)),
    ("info_name_unknown", lambda: kerasnets.get_model_info("vgg19"), ("'vgg19'", "vgg16")),
    # the input shape
    ("shape_two", _get(input_shape=(64, 64)), ("(64, 64)", "(height, width, channels)")),
    ("shape_int", _get(input_shape=224), ("input_shape=224",)),
    ("shape_string", _get(input_shape="224x224"), ("'224x224'",)),
    ("shape_zero_channels", _get(input_shape=(64, 64, 0)), ("channels=0",)),
    ("shape_negative", _get(input_shape=(-64, 64, 3)), ("height=-64",)),
    ("shape_float", _get(input_shape=(64.5, 64, 3)), ("height=64.5",)),
    ("shape_text", _get(input_shape=("a", 64, 3)), ("height='a'",)),
    ("shape_bool", _get(input_shape=(64, True, 3)), ("width=True",)),
    ("shape_too_small", _get(input_shape=(16, 64, 3)), ("16", "at least 32x32")),
    # classes, top, pooling, activation
    ("classes_zero", _get(classes=0), ("classes=0",)),
    ("classes_text", _get(classes="10"), ("classes='10'",)),
    ("classes_float", _get(classes=2.5), ("classes=2.5",)),
    ("classes_none", _get(classes=None), ("classes=None",)),
    ("include_top_text", _get(include_top="yes"), ("include_top='yes'",)),
    ("pooling_unknown", _get(include_top=False, pooling="mean"), ("pooling='mean'",)),
    ("pooling_int", _get(include_top=False, pooling=1), ("pooling=1",)),
    ("activation_int", _get(classifier_activation=5), ("classifier_activation=5",)),
    ("input_tensor", _get(input_tensor="x"), ("input_tensor='x'",)),
    # weights
    ("weights_int", _get(weights=5), ("weights=5",)),
    ("weights_missing", _get(weights="/no/such/file.h5"), ("'/no/such/file.h5'", "no weights are downloaded")),
    ("weights_not_hdf5", lambda: kerasnets.get_model(M, input_shape=S, weights=_text_file()), ("could not be loaded",)),
    ("weights_other_model", lambda: kerasnets.get_model(M, input_shape=S, classes=10, weights=_other_weights()),
     ("other.weights.h5", "could not be loaded into mobilenet_v2_035")),
    ("weights_missing_checkpoint", _get(weights="/no/such/model.safetensors"), ("'/no/such/model.safetensors'",)),
    # overrides: unknown keys, types, ranges, choices
    ("override_unknown", _get(frobnicate=1), ("'frobnicate'", "is not valid")),
    ("override_typo", _get(widht=0.5), ("'widht'", "did you mean 'width'")),
    ("override_typo_bn", _get(bn_epsilom=1e-3), ("'bn_epsilom'", "did you mean 'bn_epsilon'")),
    ("override_not_tunable", _get(groups=3), ("'groups'", "not valid for mobilenet_v2_035")),
    ("width_text", _get(width="a"), ("width='a'", "positive number")),
    ("width_negative", _get(width=-1), ("width=-1",)),
    ("width_zero", _get(width=0), ("width=0",)),
    ("width_none", _get(width=None), ("width=None",)),
    ("width_nan", _get(width=float("nan")), ("width=nan",)),
    ("bn_epsilon_negative", _get(bn_epsilon=-1), ("bn_epsilon=-1",)),
    ("bn_epsilon_zero", _get(bn_epsilon=0), ("bn_epsilon=0",)),
    ("bn_epsilon_text", _get(bn_epsilon="small"), ("bn_epsilon='small'",)),
    ("bn_momentum_two", _get(bn_momentum=2), ("bn_momentum=2", "[0, 1)")),
    ("bn_momentum_negative", _get(bn_momentum=-0.1), ("bn_momentum=-0.1",)),
    ("bn_momentum_one", _get(bn_momentum=1), ("bn_momentum=1",)),
    ("group_conv_unknown", _get(group_conv="fast"), ("group_conv='fast'", "native")),
    ("group_conv_int", _get(group_conv=2), ("group_conv=2",)),
    ("shuffle_unknown", _get(shuffle="6d"), ("shuffle='6d'", "low_rank")),
    ("convention_unknown", _get(convention="jax"), ("convention='jax'", "torch")),
    ("groups_unpublished", lambda: kerasnets.get_model("shufflenet_v1_g3_x0_5", groups=5),
     ("groups=5", "no published width table")),
    ("groups_text", lambda: kerasnets.get_model("shufflenet_v1_g3_x0_5", groups="3"), ("groups='3'",)),
    ("groups_bool", lambda: kerasnets.get_model("shufflenet_v1_g3_x0_5", groups=True), ("groups=True",)),
    ("shufflenet_v2_width", lambda: kerasnets.get_model("shufflenet_v2_x0_5", width=0.75),
     ("width=0.75", "no published table")),
    ("axspine_channels_per_group", lambda: kerasnets.get_model("axspine_small", channels_per_group=0),
     ("channels_per_group=0",)),
    ("axspine_alignment", lambda: kerasnets.get_model("axspine_small", alignment=2.5), ("alignment=2.5",)),
    ("axspine_depths_short", lambda: kerasnets.get_model("axspine_small", depths=(1, 2, 3)), ("depths=(1, 2, 3)",)),
    ("axspine_depths_text", lambda: kerasnets.get_model("axspine_small", depths="3393"), ("depths='3393'",)),
    ("axspine_expand", lambda: kerasnets.get_model("axspine_small", expand=0), ("expand=0",)),
    # features_only / out_indices
    ("features_only_text", _get(features_only="yes"), ("features_only='yes'",)),
    ("out_indices_range", _get(features_only=True, out_indices=(7,)), ("out_indices value 7",)),
    ("out_indices_text", _get(features_only=True, out_indices="12"), ("out_indices='12'",)),
    ("out_indices_twice", _get(features_only=True, out_indices=(1, 1)), ("twice",)),
    ("out_indices_float", _get(features_only=True, out_indices=(1.0,)), ("out_indices value 1.0",)),
    ("features_only_with_top", _get(features_only=True, include_top=True), ("include_top=True",)),
    ("features_only_with_pooling", _get(features_only=True, pooling="avg"), ("pooling='avg'",)),
    # family constructors and the other public functions
    ("family_width_text", lambda: kerasnets.MobileNetV2(width="wide", input_shape=S), ("width='wide'",)),
    ("family_width_negative", lambda: kerasnets.GhostNet(width=-0.5, input_shape=S), ("width=-0.5",)),
    ("family_unknown_variant", lambda: kerasnets.EfficientNetEdgeTPU(variant="xl"), ("'efficientnet_edgetpu_xl'",)),
    ("deploy_not_a_model", lambda: kerasnets.deploy("model"), ("functional Keras model", "str")),
    ("feature_info_not_a_model", lambda: kerasnets.feature_info(5), ("feature_info", "int")),
    ("model_convention_not_a_model", lambda: kerasnets.model_convention(None), ("model_convention", "NoneType")),
    ("preprocessing_for_not_a_model", lambda: kerasnets.preprocessing_for("model"), ("preprocessing_for", "str")),
    ("load_weights_not_a_model", lambda: kerasnets.load_weights("model", "x.safetensors"), ("str",)),
    ("load_weights_source_type", lambda: kerasnets.load_weights(kerasnets.get_model(M, input_shape=S), 42),
     ("42", "int")),
    ("load_weights_convention", lambda: kerasnets.load_weights(kerasnets.get_model(M, input_shape=S), "x.safetensors",
                                                               convention="jax"), ("convention='jax'",)),
]


class LibraryBadInputsTest(TempFoldersTestCase):
    TEMP = _TMP

    @parameterized.named_parameters(*CASES)
    def test_bad_call(self, call, words):
        check_bad_call(self, call, words)
