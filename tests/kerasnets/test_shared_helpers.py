"""kerasnets.io (atomic writes, JSON), kerasnets.heads (the float-head cut) and kerasnets.cli (shared flags)."""
import os

import numpy as np
from absl import flags

from kerasnets import cli, heads, io
from kerasnets.backend import keras, tf

L = keras.layers


class AtomicWriteTest(tf.test.TestCase):

    def test_text_bytes_json_and_no_temporary_left(self):
        folder = os.path.join(self.get_temp_dir(), "new", "sub")
        path = os.path.join(folder, "a.json")
        io.write_json(path, {"b": np.float32(0.5), "a": [1, 2]}, default=io.plain)
        with open(path) as f:
            self.assertEqual(f.read(), '{\n "a": [\n  1,\n  2\n ],\n "b": 0.5\n}\n')
        io.atomic_write(path, b"\x00\x01")
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"\x00\x01")
        with self.assertRaises(TypeError):
            io.atomic_write(path, 3)  # neither text nor bytes: the write fails, the old file stays
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"\x00\x01")
        self.assertEqual(os.listdir(folder), ["a.json"])


class FloatHeadTest(tf.test.TestCase):

    def test_the_head_follows_the_global_pool(self):
        x = keras.Input((8, 8, 3))
        y = L.Conv2D(4, 3, name="conv")(x)
        y = L.GlobalAveragePooling2D(name="pool")(y)
        y = L.Dropout(0.2, name="dropout")(y)
        y = L.Dense(10, activation="softmax", name="predictions")(y)
        self.assertEqual(heads.float_head_layer_names(keras.Model(x, y)), ["dropout", "predictions"])

    def test_pooled_conv_head_and_no_head(self):
        x = keras.Input((8, 8, 3))
        y = L.GlobalAveragePooling2D(keepdims=True, name="pool")(L.Conv2D(4, 3, name="conv")(x))
        y = L.Conv2D(16, 1, name="head_conv")(y)
        y = L.Flatten(name="flatten")(L.ReLU(name="head_relu")(y))
        self.assertEqual(heads.float_head_layer_names(keras.Model(x, y)), ["head_conv", "head_relu", "flatten"])
        self.assertEqual(heads.float_head_layer_names(keras.Model(x, L.Dense(3)(x))), [])  # reaches the input


class SharedFlagsTest(tf.test.TestCase):

    def test_define_flags_is_idempotent_with_aliases(self):
        cli.define_flags("calibration_count", "out")
        cli.define_flags("calibration_count", "out")  # a second script in the same process
        self.assertEqual(flags.FLAGS["calibration_count"].default, cli.SHARED_FLAGS["calibration_count"][1])
        self.assertIn("output_dir", flags.FLAGS)

    def test_parse_size(self):
        self.assertEqual(cli.parse_size("64x96"), (64, 96))
        self.assertEqual(cli.parse_size("32"), (32, 32))
        with self.assertRaisesRegex(ValueError, "--input_size='big' is not a size"):
            cli.parse_size("big")


if __name__ == "__main__":
    tf.test.main()
