"""Top-1 / top-5 accuracy of a Keras model and of a TFLite model run in LiteRT, over a whole split.

TFLite models run through :mod:`kerasnets.export.runtime` (the project's one LiteRT harness):
integer inputs are quantized with the model's own input scale and zero point.
"""
import numpy as np

from kerasnets.export import runtime
from kerasnets.backend import tf
from kerasnets.pipelines import data as data_lib
from kerasnets.pipelines.errors import DataError


def _topk_hits(scores, labels, k):
    k = min(k, scores.shape[-1])
    top = np.argsort(-scores, axis=-1, kind="stable")[:, :k]
    return np.any(top == labels[:, None], axis=1)


def accuracy_from_scores(scores, labels):
    """``{"top1", "top5" (when classes > 5), "count"}`` from (N, classes) scores and int labels."""
    scores, labels = np.asarray(scores, np.float32), np.asarray(labels).astype(np.int64).reshape(-1)
    if scores.ndim != 2 or scores.shape[0] != labels.shape[0]:
        raise DataError(f"scores of shape {scores.shape} do not pair with {labels.shape[0]} labels.")
    result = {"top1": float(np.mean(_topk_hits(scores, labels, 1))), "count": int(labels.shape[0])}
    if scores.shape[-1] > 5:
        result["top5"] = float(np.mean(_topk_hits(scores, labels, 5)))
    return result


def predict_keras(model, dataset):
    """Scores and int labels of a Keras model over a ``tf.data`` dataset of (images, labels)."""
    step = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    scores, labels = [], []
    for x, y in dataset:
        scores.append(step(x).numpy())
        y = y.numpy()
        labels.append(np.argmax(y, -1) if y.ndim == 2 else y)
    if not scores:
        raise DataError("the evaluation dataset is empty; pass a split with at least one image.")
    return np.concatenate(scores), np.concatenate(labels)


def evaluate_keras(model, split, input_size=None, normalization=data_lib.DEFAULT_NORMALIZATION, batch_size=128):
    """Top-1/top-5 of a Keras model over a :class:`~pipelines.data.DataSplit` (or a tf.data dataset)."""
    if isinstance(split, tf.data.Dataset):
        return accuracy_from_scores(*predict_keras(model, split))
    input_size = input_size or tuple(model.input_shape[1:3])
    ds = data_lib.make_dataset(split, input_size, batch_size, normalization=normalization,
                               num_classes=int(model.output_shape[-1]))
    return accuracy_from_scores(*predict_keras(model, ds))


def predict_tflite(artifact, split, normalization=data_lib.DEFAULT_NORMALIZATION, batch_size=256, threads=2):
    """Dequantized scores of a TFLite model (path or bytes) over a split, one image per invoke."""
    interpreter = runtime.load_interpreter(artifact, threads=threads, probe=not isinstance(artifact, bytes))
    detail = interpreter.get_input_details()[0]
    input_size = tuple(int(v) for v in detail["shape"][1:3])
    split = data_lib.validate_split(split)
    images = split.images if split.images.ndim == 4 else split.images[..., None]
    scores = []
    for start in range(0, len(split), batch_size):
        x = data_lib.preprocess(images[start:start + batch_size], input_size, normalization).numpy()
        scores.append(runtime.run_batch(interpreter, x).reshape(x.shape[0], -1))
    return np.concatenate(scores), split.labels


def evaluate_tflite(artifact, split, normalization=data_lib.DEFAULT_NORMALIZATION, threads=2):
    """Top-1/top-5 of a TFLite model (path or bytes) run in LiteRT over a whole split."""
    return accuracy_from_scores(*predict_tflite(artifact, split, normalization, threads=threads))
