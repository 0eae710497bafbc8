"""Flags shared by the scripts, and their translation into library calls."""
import json

from absl import flags

from pipelines import data as data_lib
from pipelines import train
from pipelines.errors import CheckpointError, ConfigError

FLAGS = flags.FLAGS


def define_common():
    flags.DEFINE_string("model", "mobilenet_v2_035", "Zoo model name (kerasnets.list_models()).")
    flags.DEFINE_string("input_size", "32x32", "Input size HEIGHTxWIDTH (or S for square) images are resized to.")
    flags.DEFINE_string("overrides", "{}", "JSON dict of get_model overrides, e.g. '{\"width\": 0.5}'.")
    flags.DEFINE_string("dataset", "fashion_mnist", "fashion_mnist[:folder], a folder of class sub-folders "
                        "(with train/ and test/), or a TFRecord path with {split}.")
    flags.DEFINE_alias("data", "dataset")
    flags.DEFINE_integer("train_subset", 0, "Use only this many training images (0 = all).")
    flags.DEFINE_integer("val_subset", 0, "Use only this many validation images (0 = all).")
    flags.DEFINE_string("output_dir", None, "Folder for checkpoints, logs and artifacts.")
    flags.DEFINE_alias("out", "output_dir")
    flags.DEFINE_integer("epochs", 10, "Float training epochs.")
    flags.DEFINE_integer("batch_size", 128, "Global batch size.")
    flags.DEFINE_enum("optimizer", "sgd", list(train.OPTIMIZERS), "Optimizer.")
    flags.DEFINE_float("learning_rate", 0.05, "Peak learning rate (cosine with warm-up).")
    flags.DEFINE_float("weight_decay", 4e-5, "Weight decay.")
    flags.DEFINE_float("warmup_epochs", 1.0, "Warm-up epochs.")
    flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing.")
    flags.DEFINE_float("ema_decay", 0.0, "Weight EMA decay (0 = off).")
    flags.DEFINE_bool("augment", True, "Random flip and crop.")
    flags.DEFINE_integer("seed", 0, "Seed of shuffling, augmentation and initialisation.")
    flags.DEFINE_enum("strategy", "default", list(train.STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_bool("resume", False, "Continue from the last checkpoint in --output_dir.")
    flags.DEFINE_bool("json", False, "Print a machine-readable JSON summary on stdout.")
    flags.DEFINE_integer("verbose", 1, "Keras fit verbosity (0 silent, 1 progress bar, 2 one line per epoch).")


def train_config():
    try:
        overrides = json.loads(FLAGS.overrides)
    except ValueError:
        raise ConfigError(f"--overrides={FLAGS.overrides!r} is not a JSON object; write e.g. '{{\"width\": 0.5}}'.")
    if not isinstance(overrides, dict):
        raise ConfigError(f"--overrides={FLAGS.overrides!r} is not a JSON object; write e.g. '{{\"width\": 0.5}}'.")
    if not FLAGS.output_dir:
        raise ConfigError("--output_dir is required; pass the folder for checkpoints and artifacts.")
    return train.TrainConfig(model=FLAGS.model, input_size=input_hw(), overrides=overrides,
                             epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, optimizer=FLAGS.optimizer,
                             learning_rate=FLAGS.learning_rate, weight_decay=FLAGS.weight_decay,
                             warmup_epochs=FLAGS.warmup_epochs, label_smoothing=FLAGS.label_smoothing,
                             ema_decay=FLAGS.ema_decay, augment=FLAGS.augment, seed=FLAGS.seed,
                             strategy=FLAGS.strategy, verbose=FLAGS.verbose).check()


def input_hw():
    """--input_size as (height, width)."""
    from kerasnets.cli import parse_size
    try:
        return parse_size(FLAGS.input_size)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def load_splits():
    """(train, test) splits the flags name (a folder without test/ gets a seeded 20% hold-out)."""
    return data_lib.load_train_test(FLAGS.dataset, input_hw(), FLAGS.train_subset, FLAGS.val_subset, FLAGS.seed)


def CheckpointError_(path, model, error):  # noqa: N802  (an error factory)
    return CheckpointError(f"--float_weights={path!r} does not fit model {model!r} ({str(error).splitlines()[0][:120]}); "
                           "pass the weights of a run of the same model and options.")
