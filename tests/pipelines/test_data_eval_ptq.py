"""kerasnets.pipelines.data, pipelines.evaluate, pipelines.ptq and pipelines.quantizers on small inputs."""
import gzip
import os
import tempfile

import numpy as np

import kerasnets
from kerasnets import datasets
from kerasnets.backend import keras, tf
from kerasnets.pipelines import data, evaluate, ptq, quantizers
from kerasnets.pipelines.errors import DataError


def _tiny_split(n=40, size=28, channels=None, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, size, size) if channels is None else (n, size, size, channels)
    return data.DataSplit(rng.integers(0, 256, shape, dtype=np.uint8), rng.integers(0, classes, n),
                          tuple(str(i) for i in range(classes)), "synthetic")


def _write_idx(path, array):
    codes = {np.dtype(np.uint8): 0x08}
    header = bytes([0, 0, codes[array.dtype], array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


class FashionMnistTest(tf.test.TestCase):

    def test_reads_debian_files(self):
        folder = data.find_fashion_mnist()  # the Debian package or the Keras cache
        split = data.load_fashion_mnist("test", folder)
        self.assertEqual(split.images.shape, (10000, 28, 28))
        self.assertEqual(split.images.dtype, np.uint8)
        self.assertEqual(split.num_classes, 10)
        self.assertAllEqual(np.bincount(split.labels), [1000] * 10)

    def test_idx_round_trip_and_truncation(self):
        folder = self.get_temp_dir()
        arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
        _write_idx(os.path.join(folder, "a.gz"), arr)
        self.assertAllEqual(data.read_idx(os.path.join(folder, "a.gz")), arr)
        with gzip.open(os.path.join(folder, "b.gz"), "wb") as f:
            f.write(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 3)
        with self.assertRaisesRegex(DataError, "truncated"):
            data.read_idx(os.path.join(folder, "b.gz"))

    def test_missing_names_both_places(self):
        with self.assertRaisesRegex(DataError, "not in /nonexistent"):
            data.find_fashion_mnist("/nonexistent")
        old = datasets.DEBIAN_FASHION_MNIST, datasets.KERAS_FASHION_MNIST
        try:
            datasets.DEBIAN_FASHION_MNIST, datasets.KERAS_FASHION_MNIST = "/nope/a", "/nope/b"
            with self.assertRaisesRegex(DataError, "neither /nope/a nor /nope/b"):
                data.find_fashion_mnist()
        finally:
            datasets.DEBIAN_FASHION_MNIST, datasets.KERAS_FASHION_MNIST = old


class OwnImagesTest(tf.test.TestCase):

    def test_image_folder_and_tfrecord(self):
        root = self.get_temp_dir()
        split = _tiny_split(n=12, size=20, channels=3, classes=3)
        for i, (image, label) in enumerate(zip(split.images, split.labels)):
            os.makedirs(os.path.join(root, "imgs", f"class_{label}"), exist_ok=True)
            with open(os.path.join(root, "imgs", f"class_{label}", f"{i}.png"), "wb") as f:
                f.write(tf.io.encode_png(image).numpy())
        folder = data.load_image_folder(os.path.join(root, "imgs"))
        self.assertEqual(folder.class_names, tuple(f"class_{k}" for k in sorted(set(split.labels))))
        self.assertEqual(folder.images.shape, (12, 20, 20, 3))
        resized = data.load_split(os.path.join(root, "imgs"), image_size=(16, 16))
        self.assertEqual(resized.images.shape[1:3], (16, 16))
        path = os.path.join(root, "train.tfrecord")
        data.write_tfrecord(path, split.images, split.labels)
        rec = data.load_split(os.path.join(root, "{split}.tfrecord"), "train", num_classes=3)
        self.assertAllEqual(rec.images, split.images)
        self.assertAllEqual(rec.labels, split.labels)
        with self.assertRaisesRegex(DataError, "no images"):
            os.makedirs(os.path.join(root, "empty", "a"))
            data.load_image_folder(os.path.join(root, "empty"))


class ValidationTest(tf.test.TestCase):

    def test_bad_inputs_raise_one_sentence(self):
        good = _tiny_split()
        cases = [
            (data.DataSplit(good.images[:0], good.labels[:0], good.class_names), "empty"),
            (data.DataSplit(good.images[..., None].repeat(2, -1), good.labels, good.class_names), "shape"),
            (data.DataSplit(good.images.astype(np.int32), good.labels, good.class_names), "dtype"),
            (data.DataSplit(good.images, good.labels + 10, good.class_names), "labels span"),
            (data.DataSplit(good.images, good.labels.astype(np.float32), good.class_names), "integer"),
        ]
        bad = good.images.astype(np.float32)
        bad[3, 1, 1] = np.nan
        cases.append((data.DataSplit(bad, good.labels, good.class_names), "NaN or Inf"))
        for split, msg in cases:
            with self.assertRaisesRegex(DataError, msg):
                data.make_dataset(split, (32, 32), 8)
        with self.assertRaisesRegex(DataError, "head has 2 classes"):
            data.make_dataset(good, (32, 32), 8, num_classes=2)

    def test_pipeline_resize_channels_normalisation_seed(self):
        split = _tiny_split(n=20)
        ds = data.make_dataset(split, (32, 32), 8, training=True, seed=3, augment=True,
                               normalization={"mean": 0.0, "std": 255.0})
        x, y = next(iter(ds))
        self.assertEqual(x.shape, (8, 32, 32, 3))
        self.assertAllEqual(x[..., 0], x[..., 2])  # grey replicated
        self.assertGreaterEqual(float(tf.reduce_min(x)), 0.0)
        self.assertLessEqual(float(tf.reduce_max(x)), 1.0)
        order = lambda s: np.concatenate([b[1].numpy() for b in data.make_dataset(split, (32, 32), 8, training=True, seed=s)])
        self.assertAllEqual(order(1), order(1))
        self.assertNotAllEqual(order(1), order(2))
        plain = next(iter(data.make_dataset(split, (28, 28), 20)))[0].numpy()
        expected = (split.images.astype(np.float32) - 127.5) / 127.5
        self.assertAllClose(plain[..., 0], expected, atol=1e-6)


def _small_model(classes=4, seed=0):
    keras.utils.set_random_seed(seed)
    return kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), classes=classes)


class EvaluateAndPtqTest(tf.test.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.split = _tiny_split(n=48, classes=10)
        cls.model = _small_model(classes=10)
        # Non-trivial BN statistics so int8 outputs are not constant.
        rng = np.random.default_rng(0)
        for layer in cls.model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                g, b, m, v = layer.get_weights()
                layer.set_weights([rng.uniform(0.8, 1.5, g.shape), rng.normal(0, 0.5, b.shape),
                                   rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.0, v.shape)])
        cls.tflite = ptq.quantize_post_training(cls.model, cls.split, count=16)

    def test_topk_from_scores(self):
        scores = np.eye(10)[[1, 2, 3, 4]]
        scores[3] = np.arange(10)  # label 4 is 6th best: not in top 5
        acc = evaluate.accuracy_from_scores(scores, [1, 2, 0, 4])
        self.assertAllClose([acc["top1"], acc["top5"]], [0.5, 0.75])
        self.assertNotIn("top5", evaluate.accuracy_from_scores(np.eye(3), [0, 1, 2]))

    def test_keras_and_tflite_agree(self):
        keras_acc = evaluate.evaluate_keras(self.model, self.split)
        lite_acc = evaluate.evaluate_tflite(self.tflite, self.split)
        self.assertEqual(keras_acc["count"], 48)
        self.assertEqual(lite_acc["count"], 48)
        keras_scores, _ = evaluate.predict_keras(self.model, data.make_dataset(self.split, (32, 32), 16))
        lite_scores, _ = evaluate.predict_tflite(self.tflite, self.split)
        agree = np.mean(np.argmax(keras_scores, -1) == np.argmax(lite_scores, -1))
        self.assertGreater(agree, 0.8)

    def test_ptq_options_and_errors(self):
        from ai_edge_litert.interpreter import Interpreter
        it = Interpreter(model_content=self.tflite)
        self.assertEqual(it.get_input_details()[0]["dtype"], np.int8)
        per_tensor = ptq.quantize_post_training(self.model, self.split, count=8, per_channel=False, io_type="uint8")
        it = Interpreter(model_content=per_tensor)
        self.assertEqual(it.get_input_details()[0]["dtype"], np.uint8)
        conv_scales = [len(d["quantization_parameters"]["scales"]) for d in it.get_tensor_details()
                       if d["dtype"] == np.int8 and len(d["shape"]) == 4 and "Conv2D" in d["name"]]
        self.assertTrue(conv_scales and max(conv_scales) == 1)
        with self.assertRaisesRegex(DataError, "only 48"):
            ptq.quantize_post_training(self.model, self.split, count=100)
        bad = data.calibration_images(self.split, (32, 32), 4)
        bad[0, 0, 0, 0] = np.inf
        with self.assertRaisesRegex(DataError, "NaN or Inf"):
            ptq.quantize_post_training(self.model, bad, count=4)
        path = os.path.join(self.get_temp_dir(), "m.tflite")
        manifest = ptq.save_tflite(path, self.tflite, "mobilenet_v2_035", labels=self.split.class_names)
        self.assertEqual(manifest["normalization"]["mean"], [127.5] * 3)
        self.assertTrue(os.path.exists(path + ".manifest.json"))

    def test_debugger_report(self):
        rows = ptq.debug_report(self.model, self.split, count=4)
        self.assertGreater(len(rows), 10)
        self.assertTrue(all({"op", "tensor", "rmse", "scale", "rmse_over_scale"} <= set(r) for r in rows))
        finite = [r["rmse_over_scale"] for r in rows if np.isfinite(r["rmse_over_scale"])]
        self.assertEqual(finite, sorted(finite, reverse=True))
        self.assertIn("QuantizationDebugger", ptq.format_debug_report(rows))


class ReferenceQuantizersTest(tf.test.TestCase):

    def test_symmetric(self):
        x = np.array([-1.0, -0.5, 0.0, 0.25, 1.0])
        q = quantizers.quantize_symmetric(x, bits=8)
        self.assertAllEqual(q.q, [-127, -64, 0, 32, 127])  # round half to even at -63.5
        self.assertAllClose(q.scale.ravel(), [1 / 127])
        self.assertAllClose(q.dequantize(), x, atol=0.5 / 127)
        per_channel = quantizers.quantize_symmetric(np.array([[1.0, 10.0], [-0.5, 5.0]]), axis=-1)
        self.assertAllClose(per_channel.scale.ravel(), [1 / 127, 10 / 127])
        self.assertAllEqual(quantizers.quantize_symmetric(x, bits=1).q, [-1, -1, 1, 1, 1])

    def test_asymmetric_zero_exact_and_one_sided(self):
        x = np.linspace(0.1, 6.0, 101)  # post-ReLU: one-sided
        q = quantizers.quantize_asymmetric(x, bits=8)
        at_zero = quantizers.Quantized(q.zero_point.astype(np.int32), q.scale, q.zero_point)
        self.assertEqual(float(at_zero.dequantize().ravel()[0]), 0.0)  # the zero point is exactly real 0
        self.assertEqual(int(q.zero_point.ravel()[0]), -128)
        self.assertGreater(quantizers.sqnr_db(x, q.dequantize()),
                           quantizers.sqnr_db(x, quantizers.fake_quantize(x, "symmetric")) + 5)
        y = np.array([-0.3, 0.0, 0.7])
        qy = quantizers.quantize_asymmetric(y)
        self.assertEqual(qy.dequantize()[1], 0.0)
        self.assertTrue(np.all(qy.q >= -128) and np.all(qy.q <= 127))

    def test_per_layer_comparison(self):
        model = _small_model()
        images = data.calibration_images(_tiny_split(n=8), (32, 32), 8)
        rows = quantizers.compare_quantizers(model, images)
        kinds = {r["kind"] for r in rows}
        self.assertEqual(kinds, {"weights", "activations"})
        relu_rows = [r for r in rows if r["kind"] == "activations" and r["min"] >= 0 and r["winner"] != "tie"]
        self.assertTrue(relu_rows)
        self.assertTrue(all(r["winner"] == "asymmetric" for r in relu_rows))
        self.assertIn("asymmetric wins", quantizers.format_comparison(rows))
