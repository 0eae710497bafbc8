"""Training data: ``tf.data`` pipelines, train/test splits and TFRecord writing.

The readers (Fashion-MNIST IDX files, image folders, TFRecords), :class:`DataSplit`, the
checks and the preprocessing live in :mod:`kerasnets.datasets` (export needs them too and
must not import pipelines); they are re-exported here. :func:`make_dataset` turns a split
into a ``tf.data.Dataset`` of normalised float32 NHWC images at the model input size.
"""
import os

import numpy as np

from kerasnets import datasets
from kerasnets.backend import tf
from kerasnets.datasets import (DEFAULT_NORMALIZATION, FASHION_MNIST_CLASSES, IMAGE_EXTENSIONS, DataSplit,
                                calibration_images, check_normalization, find_fashion_mnist, load_fashion_mnist,
                                load_image_folder, load_split, load_tfrecord, preprocess, read_idx, validate_split)
from kerasnets.errors import DataError

__all__ = ["DEFAULT_NORMALIZATION", "FASHION_MNIST_CLASSES", "IMAGE_EXTENSIONS", "DataSplit", "calibration_images",
           "check_normalization", "check_training_split", "find_fashion_mnist", "load_fashion_mnist", "load_image_folder", "load_split",
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

    A folder without a ``test/`` sub-folder, or a TFRecord path without ``{split}``, gets a
    seeded ``holdout_fraction`` of its images as the test split, so nothing is evaluated on
    the images it trained on. ``train_subset`` keeps a seeded random subset of the training
    images, ``test_subset`` the first test images (0: all). The training split must hold
    images of at least two classes (:func:`check_training_split`).
    """
    source = datasets.check_source(source)
    train_subset = datasets.check_count("train_subset", train_subset)
    test_subset = datasets.check_count("test_subset", test_subset)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise DataError(f"seed={seed!r} is not an integer in [0, 2**32 - 1]; pass e.g. 0.")
    if isinstance(holdout_fraction, bool) or not isinstance(holdout_fraction, (int, float, np.floating)) or \
            not 0 < holdout_fraction < 1:
        raise DataError(f"holdout_fraction={holdout_fraction!r} must be a number in (0, 1); pass e.g. 0.2.")
    single_folder = os.path.isdir(source) and not os.path.isdir(os.path.join(source, "test"))
    single_records = ("{split}" not in source and not source.startswith("fashion_mnist")
                      and not os.path.isdir(source) and datasets.is_tfrecord_source(source))
    if single_folder or single_records:
        whole = load_split(source, "train", image_size=image_size)
        order = np.random.default_rng(seed).permutation(len(whole))
        n_test = max(1, int(round(len(whole) * holdout_fraction)))
        if len(whole) - n_test < 2:
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
    return check_training_split(tr, f"training data of {source!r}"), va


def check_training_split(split, what="training data"):
    """:func:`validate_split`, and images of at least two classes: a one-class classifier learns nothing
    (its "accuracy" is 100%). Returns the split."""
    split = validate_split(split, what=what)
    if split.num_classes < 2:
        names = ", ".join(repr(c) for c in split.class_names) or "none"
        raise DataError(f"the {what} has {split.num_classes} class ({names}); a classifier needs at least two: "
                        "add a second class (another sub-folder of images, or other labels).")
    present = np.unique(split.labels)
    if present.size < 2:
        raise DataError(f"the {what} holds images of class {split.class_names[int(present[0])]!r} only (of "
                        f"{split.num_classes} classes); pass images of at least two classes (e.g. a larger "
                        "training subset).")
    return split


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
    num_classes = num_classes or getattr(split, "num_classes", None)
    split = validate_split(split, num_classes)
    input_size = datasets.check_image_size(input_size, "input_size")
    if input_size is None:
        raise DataError("input_size is None; pass the model input (height, width), e.g. (32, 32).")
    batch_size = datasets.check_count("batch_size", batch_size, 1)
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
