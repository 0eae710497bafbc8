"""Training data: ``tf.data`` pipelines, train/test splits and TFRecord writing.

The readers (Fashion-MNIST IDX files, image folders, TFRecords), :class:`DataSplit`, the
checks and the preprocessing live in :mod:`kerasnets.datasets` (export needs them too and
must not import pipelines); they are re-exported here. :func:`make_dataset` turns a split
into a ``tf.data.Dataset`` of normalised float32 NHWC images at the model input size.
"""
import os

import numpy as np

from kerasnets.backend import tf
from kerasnets.datasets import (DEFAULT_NORMALIZATION, FASHION_MNIST_CLASSES, IMAGE_EXTENSIONS, DataSplit,
                                calibration_images, check_normalization, find_fashion_mnist, load_fashion_mnist,
                                load_image_folder, load_split, load_tfrecord, preprocess, read_idx, validate_split)
from kerasnets.errors import DataError

__all__ = ["DEFAULT_NORMALIZATION", "FASHION_MNIST_CLASSES", "IMAGE_EXTENSIONS", "DataSplit", "calibration_images",
           "check_normalization", "find_fashion_mnist", "load_fashion_mnist", "load_image_folder", "load_split",
           "load_tfrecord", "load_train_test", "make_dataset", "preprocess", "read_idx", "validate_split",
           "write_tfrecord"]


def write_tfrecord(path, images, labels):
    """Write (image, label) pairs as TFRecord ``tf.train.Example`` s: PNG ``image`` bytes, int64 ``label``."""
    tmp = path + ".tmp"
    with tf.io.TFRecordWriter(tmp) as writer:
        for image, label in zip(images, labels):
            image = np.asarray(image, np.uint8)
            if image.ndim == 2:
                image = image[..., None]
            feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()])),
                       "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    os.replace(tmp, path)


def load_train_test(source, image_size=None, train_subset=0, test_subset=0, seed=0, holdout_fraction=0.2):
    """(train, test) splits of ``source`` (see :func:`load_split`).

    A folder without a ``test/`` sub-folder gets a seeded ``holdout_fraction`` of its images
    as the test split, so nothing is evaluated on the images it trained on. ``train_subset``
    keeps a seeded random subset of the training images, ``test_subset`` the first test images.
    """
    if os.path.isdir(source) and not os.path.isdir(os.path.join(source, "test")):
        whole = load_split(source, "train", image_size=image_size)
        order = np.random.default_rng(seed).permutation(len(whole))
        n_test = max(1, int(round(len(whole) * holdout_fraction)))
        if len(whole) - n_test < 1:
            raise DataError(f"dataset {source!r} has {len(whole)} images, too few to hold out a test share; "
                            "add images or a test/ sub-folder.")

        def pick(idx):
            idx = np.sort(idx)
            return DataSplit(whole.images[idx], whole.labels[idx], whole.class_names, whole.source)
        tr, va = pick(order[n_test:]), pick(order[:n_test])
    else:
        tr = load_split(source, "train", image_size=image_size)
        va = load_split(source, "test", image_size=image_size, class_names=tr.class_names,
                        num_classes=tr.num_classes)
    if train_subset:
        tr = tr.take(train_subset, seed=seed)
    if test_subset:
        va = va.take(test_subset)
    return tr, va


# ----------------------------------------------------------------------------- tf.data

def _augment(x, seed, pad):
    x = tf.image.random_flip_left_right(x, seed=seed)
    if pad:
        h, w = x.shape[0], x.shape[1]
        x = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
        x = tf.image.random_crop(x, [h, w, x.shape[-1]], seed=seed)
    return x


def make_dataset(split, input_size, batch_size, training=False, seed=0, augment=False,
                 normalization=DEFAULT_NORMALIZATION, num_classes=None, one_hot=False, crop_padding=None,
                 drop_remainder=False, repeat=False):
    """A batched, prefetched ``tf.data.Dataset`` of (float32 NHWC images, labels) from a split.

    Args:
      split: a :class:`DataSplit` (checked against ``num_classes``, the head's width).
      input_size: (height, width) of the model input; images are resized to it.
      training: shuffle (seeded; a new order every epoch) and, with ``augment``, flip and crop.
      augment: random horizontal flip and random crop after reflect padding by
        ``crop_padding`` pixels (default input_size / 8).
      normalization: ``{"mean", "std"}`` applied to [0, 255] pixels.
      one_hot: labels as one-hot float vectors (for label smoothing) instead of int32.
    """
    num_classes = num_classes or split.num_classes
    split = validate_split(split, num_classes)
    input_size = tuple(int(v) for v in input_size)
    if batch_size < 1:
        raise DataError(f"batch_size={batch_size} must be at least 1.")
    norm = check_normalization(normalization)
    images = split.images if split.images.ndim == 4 else split.images[..., None]
    ds = tf.data.Dataset.from_tensor_slices((images, split.labels.astype(np.int32)))
    if training:
        ds = ds.shuffle(min(len(split), 20000), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    pad = (max(1, input_size[0] // 8) if crop_padding is None else int(crop_padding)) if augment else 0

    def transform(x, y):
        x = preprocess(x[None], input_size, norm)[0]
        if training and augment:
            x = _augment(x, seed, pad)
        if one_hot:
            y = tf.one_hot(y, num_classes)
        return x, y
    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
