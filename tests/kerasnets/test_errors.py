"""Bad input gives one sentence naming the value and the fix."""
import kerasnets
from kerasnets.backend import tf


class ErrorsTest(tf.test.TestCase):

    def test_unknown_name_lists_close_names(self):
        with self.assertRaisesRegex(kerasnets.ModelConfigError, "unknown model 'mobilenet_v2_10'.*mobilenet_v2_100"):
            kerasnets.get_model("mobilenet_v2_10")

    def test_too_small_input_names_the_minimum(self):
        with self.assertRaisesRegex(kerasnets.ModelConfigError, "at least 32x32"):
            kerasnets.get_model("shufflenet_v2_x0_5", input_shape=(16, 64, 3))

    def test_bad_shapes_and_options(self):
        cases = [
            (dict(input_shape=(64, 64)), "must be \\(height, width, channels\\)"),
            (dict(input_shape=(64, 64, 0)), "channels=0"),
            (dict(pooling="mean", include_top=False), "pooling='mean'"),
            (dict(classes=0), "classes=0"),
            (dict(weights="/no/such/file.h5"), "no weights are downloaded"),
            (dict(group_conv="fast"), "group_conv='fast'"),
            (dict(frobnicate=1), "option 'frobnicate' is not valid"),
        ]
        for kwargs, pattern in cases:
            with self.assertRaisesRegex(kerasnets.ModelConfigError, pattern):
                kerasnets.get_model("mobilenet_v2_035", **kwargs)

    def test_group_counts_without_a_table_are_refused(self):
        with self.assertRaisesRegex(kerasnets.ModelConfigError, "groups=5 has no published width table"):
            kerasnets.get_model("shufflenet_v1_g3_x1_0", groups=5)
        with self.assertRaisesRegex(kerasnets.ModelConfigError, "width=0.75 has no published table"):
            kerasnets.ShuffleNetV2(0.75)
