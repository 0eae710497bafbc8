"""Image datasets as numpy arrays: the readers and checks that training and export share.

Fashion-MNIST (IDX files), folders of class sub-folders and TFRecords load into a
:class:`DataSplit` of in-memory arrays (images uint8 or float, labels int), checked by
:func:`validate_split`; :func:`calibration_images` draws preprocessed images for int8
calibration. Training pipelines (``tf.data``, augmentation, hold-out splits) live in
``kerasnets.pipelines.data``; this module is here, in the base package, because export (calibration
images of ``kerasnets-export``) must not import pipelines.

The normalisation is a plain dict, ``{"mean": [..3..], "std": [..3..]}``, applied to pixel
values in [0, 255] as ``(x - mean) / std``. It is saved beside checkpoints and written
into every exported artifact's manifest, so a deployed model knows its input scale.
"""
import dataclasses
import gzip
import os
import re

import numpy as np

from kerasnets.backend import tf
from kerasnets.errors import DataError
from kerasnets.resources import physical_memory_bytes

#: Where Debian's ``dataset-fashion-mnist`` puts the gzipped IDX files.
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
#: The Keras download cache (``keras.datasets.fashion_mnist.load_data``).
KERAS_FASHION_MNIST = os.path.join(os.path.expanduser("~"), ".keras", "datasets", "fashion-mnist")
FASHION_MNIST_CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                         "sneaker", "bag", "ankle boot")
_FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                  "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}

#: Pixels [0, 255] -> [-1, 1], the zoo's convention.
DEFAULT_NORMALIZATION = {"mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]}
CHANNEL_ORDERS = ("RGB", "BGR")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def check_count(name, value, minimum=0):
    """``value`` as an int of at least ``minimum``; :class:`DataError` naming ``name`` otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if not (isinstance(value, (float, np.floating)) and np.isfinite(value) and float(value).is_integer()):
            raise DataError(f"{name}={value!r} is not a whole number; pass an integer of at least {minimum}.")
    if int(value) < minimum:
        raise DataError(f"{name}={value!r} must be at least {minimum}; pass {minimum} or more.")
    return int(value)


def check_image_size(image_size, name="image_size"):
    """None, or ``image_size`` as a (height, width) pair of positive ints; :class:`DataError` otherwise."""
    if image_size is None:
        return None
    try:
        size = tuple(image_size)
    except TypeError:
        size = ()
    if len(size) != 2 or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1
                             for v in size):
        raise DataError(f"{name}={image_size!r} is not (height, width) of positive integers; pass e.g. (32, 32).")
    return int(size[0]), int(size[1])


def check_source(source, name="data source"):
    """``source`` (text or ``os.PathLike``) as text; :class:`DataError` for anything else or empty text."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source:
        raise DataError(f"{name} {source!r} is not a path or name; pass fashion_mnist, a folder of class "
                        "sub-folders or a TFRecord path.")
    return source


@dataclasses.dataclass
class DataSplit:
    """One split in memory: ``images`` (N, H, W) or (N, H, W, C), ``labels`` (N,), class names."""
    images: np.ndarray
    labels: np.ndarray
    class_names: tuple
    source: str = ""

    @property
    def num_classes(self):
        return len(self.class_names)

    def __len__(self):
        return int(self.labels.shape[0])

    def take(self, count, seed=None):
        """The first ``count`` examples (a seeded random subset when ``seed`` is given)."""
        count = min(check_count("count", count), len(self))
        if seed is None:
            idx = np.arange(count)
        else:
            idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:count])
        return DataSplit(self.images[idx], self.labels[idx], self.class_names, self.source)


# ----------------------------------------------------------------------------- readers

def read_idx(path):
    """Read an IDX file (gzipped or not) into a numpy array, checking its header."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"cannot read IDX file {path}: {e}; re-install the dataset.") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number); re-install the dataset.")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise DataError(f"{path} holds {len(data)} bytes but its header announces {expected}; "
                        "the file is truncated, re-install the dataset.")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_fashion_mnist(data_dir=None):
    """The folder holding the four Fashion-MNIST IDX files, or a :class:`DataError`."""
    candidates = [data_dir] if data_dir else [DEBIAN_FASHION_MNIST, KERAS_FASHION_MNIST]
    for folder in candidates:
        if folder and all(os.path.exists(os.path.join(folder, f)) for pair in _FASHION_FILES.values()
                          for f in pair):
            return folder
    if data_dir:
        raise DataError(f"Fashion-MNIST files are not in {data_dir}; pass a folder holding "
                        f"{', '.join(_FASHION_FILES['train'] + _FASHION_FILES['test'])}.")
    raise DataError(f"Fashion-MNIST is in neither {DEBIAN_FASHION_MNIST} nor {KERAS_FASHION_MNIST}; install it "
                    "with 'apt-get install dataset-fashion-mnist' or run keras.datasets.fashion_mnist.load_data() "
                    "once (nothing is downloaded at run time).")


def load_fashion_mnist(split="train", data_dir=None):
    """Fashion-MNIST ``train`` (60000) or ``test`` (10000) as a :class:`DataSplit` of 28x28 uint8."""
    if split not in _FASHION_FILES:
        raise DataError(f"Fashion-MNIST split {split!r} is unknown; use 'train' or 'test'.")
    folder = find_fashion_mnist(data_dir)
    image_file, label_file = _FASHION_FILES[split]
    images = read_idx(os.path.join(folder, image_file))
    labels = read_idx(os.path.join(folder, label_file)).astype(np.int64)
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"Fashion-MNIST {split} in {folder} has images {images.shape} and labels {labels.shape}, "
                        "which do not pair up; re-install the dataset.")
    return validate_split(DataSplit(images, labels, FASHION_MNIST_CLASSES, f"fashion_mnist:{split}:{folder}"))


def _decode(content, label, image_size):
    try:
        image = tf.io.decode_image(content, channels=0, dtype=tf.uint8, expand_animations=False).numpy()
    except (tf.errors.OpError, ValueError) as e:
        raise DataError(f"{label} is not a decodable image ({_op_message(e)}); remove or re-save it.") from None
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1 or image.shape[-1] not in (1, 2, 3, 4):
        raise DataError(f"{label} decodes to an array of shape {image.shape}, not an image; remove or re-save it.")
    if image.shape[-1] == 2:  # grey + alpha
        image = image[..., :1]
    elif image.shape[-1] == 4:  # RGBA
        image = image[..., :3]
    if image_size is not None and tuple(image.shape[:2]) != tuple(image_size):
        _check_decoded_size(1, image_size, label, bytes_per_value=4 * 2)  # the float resize, in and out
        image = tf.cast(tf.round(tf.clip_by_value(tf.image.resize(image, image_size), 0, 255)), tf.uint8).numpy()
    return image


def _op_message(error):
    """A TensorFlow error's own words, without its op and device decorations."""
    text = (getattr(error, "message", None) or str(error)).strip().splitlines()[0]
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text)
    text = re.sub(r"\s*\[Op:[^\]]*\].*$", "", text)
    return text.strip().rstrip(".") or type(error).__name__


def _check_decoded_size(count, image_size, where, bytes_per_value=1):
    """Refuse resizing ``count`` images to ``image_size`` when the result alone exceeds physical memory."""
    if image_size is None:
        return
    memory = physical_memory_bytes()
    need = count * image_size[0] * image_size[1] * 3 * bytes_per_value
    if memory and need > memory:
        raise DataError(f"{where}: {count} images at {image_size[0]}x{image_size[1]} need {need / 2**30:.1f} GiB, "
                        f"more than this machine's {memory / 2**30:.1f} GiB of memory; use a smaller input size.")


def _stack(images, origin, names=None):
    channels = {im.shape[-1] for im in images}
    if len(channels) > 1:  # mixed grey and colour: make everything RGB
        images = [np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im[..., :3] for im in images]
    shapes = {im.shape[:2] for im in images}
    if len(shapes) > 1:
        first = images[0].shape[:2]
        other = next(i for i, im in enumerate(images) if im.shape[:2] != first)
        where = (f"{names[0]} is {first[0]}x{first[1]} but {names[other]} is "
                 f"{images[other].shape[0]}x{images[other].shape[1]}") if names else \
            f"sizes {sorted(shapes)[:3]}"
        raise DataError(f"images in {origin} have different sizes ({where}); pass image_size=(height, width) "
                        "to resize them on load (the scripts resize to --input_size).")
    return np.stack(images)


def load_image_folder(directory, image_size=None, class_names=None):
    """Images in class sub-folders (the Keras convention): ``directory/<class>/<image>``.

    Classes are the sorted sub-folder names (hidden ones skipped; each must hold an image), or
    ``class_names``, to keep a training split's label order for its validation split.
    ``image_size=(h, w)`` resizes on load. An image that cannot be read or decoded is named.
    """
    directory = check_source(directory, "image folder")
    image_size = check_image_size(image_size)
    if not os.path.exists(directory):
        raise DataError(f"image folder {directory!r} does not exist; pass a folder of class sub-folders.")
    if not os.path.isdir(directory):
        raise DataError(f"image folder {directory!r} is a file, not a folder; pass a folder of class sub-folders.")
    try:
        found = sorted(d for d in os.listdir(directory)
                       if not d.startswith(".") and os.path.isdir(os.path.join(directory, d)))
    except OSError as e:
        raise DataError(f"cannot list image folder {directory!r} ({e.strerror}); check its permissions.") from None
    if class_names is not None and (isinstance(class_names, str) or
                                    not all(isinstance(c, str) for c in class_names)):
        raise DataError(f"class_names={class_names!r} is not a list of class names; pass e.g. ('cat', 'dog').")
    classes = tuple(class_names) if class_names else tuple(found)
    listing = []
    for index, name in enumerate(classes):
        folder = os.path.join(directory, name)
        if not os.path.isdir(folder):
            continue
        try:
            files = sorted(os.listdir(folder))
        except OSError as e:
            raise DataError(f"cannot list class folder {folder!r} ({e.strerror}); check its permissions.") from None
        listing.extend((index, os.path.join(folder, f)) for f in files
                       if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    _check_decoded_size(len(listing), image_size, f"image folder {directory!r}")
    images, labels, names = [], [], []
    for index, path in listing:
        try:
            with open(path, "rb") as f:
                content = f.read()
        except OSError as e:
            raise DataError(f"image {path!r} cannot be read ({e.strerror}); fix its permissions or remove it.") \
                from None
        images.append(_decode(content, f"image {path!r}", image_size))
        labels.append(index)
        names.append(path)
    if not images:
        raise DataError(f"image folder {directory!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}) in class "
                        "sub-folders; put each class's images in directory/<class name>/.")
    present = set(labels)
    empty = [name for index, name in enumerate(classes) if not class_names and index not in present]
    if empty:
        raise DataError(f"class folder {os.path.join(directory, empty[0])!r} holds no images "
                        f"({', '.join(IMAGE_EXTENSIONS)}); add images to it or remove it.")
    return validate_split(DataSplit(_stack(images, directory, names), np.asarray(labels, np.int64), classes,
                                    directory))


def load_tfrecord(paths, class_names=None, num_classes=None, image_size=None, image_key="image", label_key="label"):
    """TFRecord files of ``tf.train.Example`` with an encoded image (``image_key``) and an int64 label."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    paths = [check_source(p, "TFRecord path") for p in paths]
    image_size = check_image_size(image_size)
    if num_classes is not None:
        num_classes = check_count("num_classes", num_classes, 1)
    expanded = []
    for p in paths:
        try:
            matches = tf.io.gfile.glob(p)
        except tf.errors.OpError as e:
            raise DataError(f"TFRecord path {p!r} cannot be searched ({_op_message(e)}); check it.") \
                from None
        matches = [m for m in matches if not os.path.isdir(m)]
        if not matches:
            raise DataError(f"TFRecord path {p!r} matches no file; pass existing .tfrecord files.")
        expanded.extend(sorted(matches))
    spec = {image_key: tf.io.FixedLenFeature([], tf.string), label_key: tf.io.FixedLenFeature([], tf.int64)}
    images, labels = [], []
    try:
        for i, record in enumerate(tf.data.TFRecordDataset(expanded)):
            example = tf.io.parse_single_example(record, spec)
            _check_decoded_size(i + 1, image_size, f"TFRecords {expanded[0]!r}...")
            images.append(_decode(example[image_key], f"record {i} of {expanded[0]}...", image_size))
            labels.append(int(example[label_key]))
    except tf.errors.OpError as e:
        raise DataError(f"cannot read TFRecords {expanded}: {_op_message(e)}; pass files of "
                        f"tf.train.Example with '{image_key}' (encoded image) and '{label_key}' (int64).") from None
    if not images:
        raise DataError(f"TFRecord files {expanded} hold no examples; pass non-empty files.")
    labels = np.asarray(labels, np.int64)
    if labels.min() < 0:
        raise DataError(f"TFRecords {expanded[0]!r}... hold label {labels.min()}; labels must be class indices "
                        "0, 1, ...: rewrite the records.")
    if class_names is None:
        n = num_classes or int(labels.max()) + 1
        class_names = tuple(str(i) for i in range(n))
    if labels.max() >= len(class_names):
        raise DataError(f"TFRecords {expanded[0]!r}... hold label {labels.max()} but there are {len(class_names)} "
                        f"classes (labels 0..{len(class_names) - 1}); pass the matching class count or rewrite "
                        "the records.")
    return validate_split(DataSplit(_stack(images, expanded[0]), labels, tuple(class_names), ",".join(expanded)))


def load_split(source, split="train", image_size=None, class_names=None, num_classes=None):
    """One loader for the three sources.

    ``source`` is ``fashion_mnist`` (optionally ``fashion_mnist:/folder``), a folder of class
    sub-folders (with ``split`` sub-folders ``train``/``test`` if present), or a TFRecord
    path or glob (``{split}`` in it is replaced by the split name).
    """
    source = check_source(source)
    image_size = check_image_size(image_size)
    if source == "fashion_mnist" or source.startswith("fashion_mnist:"):
        return load_fashion_mnist(split, source.split(":", 1)[1] if ":" in source else None)
    if "{split}" in source:
        source = source.replace("{split}", split)
    if os.path.isdir(source):
        sub = os.path.join(source, split)
        return load_image_folder(sub if os.path.isdir(sub) else source, image_size, class_names)
    if is_tfrecord_source(source):
        return load_tfrecord(source, class_names, num_classes, image_size)
    if not os.path.exists(source):
        raise DataError(f"data source {source!r} does not exist; pass fashion_mnist, a folder of class sub-folders "
                        "or a .tfrecord path (with {split} for train/test files).")
    raise DataError(f"data source {source!r} is a file but not a .tfrecord; pass fashion_mnist, a folder of class "
                    "sub-folders or a .tfrecord path.")


def is_tfrecord_source(source):
    """Whether ``source`` names TFRecord files (by extension, or a glob pattern)."""
    return source.endswith((".tfrecord", ".tfrecords", ".tfrec")) or "*" in source or "?" in source


# ----------------------------------------------------------------------------- checks

def validate_split(split, num_classes=None, what="dataset"):
    """Check a split and return it: not empty, images 3-D/4-D with 1 or 3 channels, uint8 or
    float, labels integers in [0, num_classes), no NaN or Inf. Raises :class:`DataError`."""
    if not all(hasattr(split, a) for a in ("images", "labels", "class_names")):
        raise DataError(f"the {what} is a {type(split).__name__}, not a DataSplit; pass "
                        "kerasnets.datasets.DataSplit(images, labels, class_names).")
    images, labels = np.asarray(split.images), np.asarray(split.labels)
    num_classes = check_count("num_classes", num_classes, 1) if num_classes is not None else split.num_classes
    if images.shape[:1] == (0,) or labels.size == 0:
        raise DataError(f"the {what} is empty ({split.source or 'no source'}); pass a split with at least one image.")
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise DataError(f"{what} images have shape {images.shape}; expected (N, H, W) grey or (N, H, W, 1|3).")
    if not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
        raise DataError(f"{what} images have dtype {images.dtype}; expected uint8 or float pixel values in [0, 255].")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{what} has {images.shape[0]} images but labels of shape {labels.shape}; "
                        "pass one integer label per image.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{what} labels have dtype {labels.dtype}; expected integer class indices.")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise DataError(f"{what} labels span [{labels.min()}, {labels.max()}] but the head has {num_classes} "
                        f"classes; use labels in [0, {num_classes - 1}] or a head with more classes.")
    if np.issubdtype(images.dtype, np.floating) and not np.all(np.isfinite(images)):
        bad = int(np.sum(~np.all(np.isfinite(images.reshape(images.shape[0], -1)), axis=1)))
        raise DataError(f"{what} contains NaN or Inf in {bad} image(s); clean or drop them before training.")
    return DataSplit(images, labels.astype(np.int64), tuple(split.class_names), split.source)


def check_normalization(normalization):
    """Return the normalisation dict with 3-element float lists; :class:`DataError` if malformed.

    ``{"mean": [..], "std": [..]}`` in [0, 255] pixel units, and optionally
    ``"channel_order": "BGR"`` for weights trained on BGR pixels (Megvii's ShuffleNet V1,
    Keras' VGG16); RGB is the default and is not written out.
    """
    try:
        mean = [float(v) for v in np.broadcast_to(np.asarray(normalization["mean"], float), (3,))]
        std = [float(v) for v in np.broadcast_to(np.asarray(normalization["std"], float), (3,))]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"normalization {normalization!r} is not {{'mean': [..], 'std': [..]}}; pass that form.") \
            from e
    if min(std) <= 0 or not np.all(np.isfinite(mean + std)):
        raise DataError(f"normalization std {std} must be positive and finite.")
    order = normalization.get("channel_order", "RGB")
    if order not in CHANNEL_ORDERS:
        raise DataError(f"normalization channel_order={order!r} is unknown; use one of {CHANNEL_ORDERS}.")
    return {"mean": mean, "std": std, **({"channel_order": order} if order != "RGB" else {})}


# ----------------------------------------------------------------------------- preprocessing

def preprocess(images, input_size, normalization=DEFAULT_NORMALIZATION):
    """Tensor ops: to float, resize to ``input_size`` (h, w), grey -> 3 channels, RGB -> BGR if asked, normalise."""
    norm = check_normalization(normalization)
    x = tf.cast(images, tf.float32)
    if x.shape.rank == 3:
        x = x[..., None]
    if tuple(x.shape[1:3]) != tuple(input_size):
        x = tf.image.resize(x, input_size, method="bilinear")
    if x.shape[-1] == 1:
        x = tf.tile(x, [1, 1, 1, 3])
    if norm.get("channel_order") == "BGR":
        x = x[..., ::-1]
    return (x - tf.constant(norm["mean"], tf.float32)) / tf.constant(norm["std"], tf.float32)



def calibration_images(split, input_size, count, normalization=DEFAULT_NORMALIZATION, seed=0):
    """``count`` preprocessed images (N, h, w, 3) float32 drawn at random from a real split.

    Raises :class:`DataError` when the split has fewer images than asked, or NaN/Inf.
    """
    split = validate_split(split, what="calibration data")
    count = check_count("calibration count", count, 1)
    if count > len(split):
        raise DataError(f"calibration asks for {count} images but the data has only {len(split)}; "
                        "lower the calibration count or pass more images.")
    subset = split.take(count, seed=seed)
    images = subset.images if subset.images.ndim == 4 else subset.images[..., None]
    return preprocess(images, input_size, normalization).numpy()
