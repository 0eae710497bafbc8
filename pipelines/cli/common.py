"""Flags of the training scripts (kerasnets-train and kerasnets-quantize) and their translation into library calls.

The flags several scripts share (``--model``, ``--input_size``, ``--dataset``, ``--out``,
``--epochs``...) are defined once in :mod:`kerasnets.cli`; the training-only ones below
are defined here, once, for both scripts.
"""
import json
import os

from absl import flags

from kerasnets.cli import TRAINING_INPUT_SIZE, define_flags, model_flags, parse_size, verbosity
from kerasnets.pipelines import checks, train
from kerasnets.pipelines import data as data_lib
from kerasnets.pipelines.errors import ConfigError

FLAGS = flags.FLAGS
# The flags define_common makes belong to the script that calls it (its --help lists them).
flags.disclaim_key_flags()

SHARED = ("model", "spec", "input_size", "overrides", "dataset", "train_subset", "val_subset", "out", "epochs",
          "batch_size", "learning_rate", "seed", "json", "verbose")
TRAINING = ("optimizer", "weight_decay", "warmup_epochs", "label_smoothing", "ema_decay", "augment", "strategy",
            "resume")


def define_common():
    """Define the training scripts' flags (idempotent: a second call, from another script, only makes them
    that script's key flags)."""
    define_flags(*SHARED)
    if "optimizer" in FLAGS:
        for name in TRAINING:
            flags.declare_key_flag(name)
        return
    flags.DEFINE_enum("optimizer", "sgd", list(train.OPTIMIZERS), "Optimizer.")
    flags.DEFINE_float("weight_decay", 4e-5, "Weight decay.")
    flags.DEFINE_float("warmup_epochs", 1.0, "Warm-up epochs.")
    flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing.")
    flags.DEFINE_float("ema_decay", 0.0, "Weight EMA decay (0 = off).")
    flags.DEFINE_bool("augment", True, "Random flip and crop.")
    flags.DEFINE_enum("strategy", "default", list(train.STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_bool("resume", False, "Continue from the last checkpoint in --out.")


def overrides():
    """``--overrides`` as a dict; :class:`ConfigError` when it is not a JSON object."""
    try:
        value = json.loads(FLAGS.overrides)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ConfigError(f"--overrides={FLAGS.overrides!r} is not a JSON object; write e.g. '{{\"width\": 0.5}}'.")
    return value


def train_config():
    """The :class:`kerasnets.pipelines.train.TrainConfig` the flags describe, checked (a bad --weights is read and refused)."""
    config_overrides = overrides()
    name, spec = model_flags()
    return train.TrainConfig(model=name, spec=spec or "", input_size=input_hw(), overrides=config_overrides,
                             epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, optimizer=FLAGS.optimizer,
                             learning_rate=FLAGS.learning_rate, weight_decay=FLAGS.weight_decay,
                             warmup_epochs=FLAGS.warmup_epochs, label_smoothing=FLAGS.label_smoothing,
                             ema_decay=FLAGS.ema_decay, augment=FLAGS.augment, seed=FLAGS.seed,
                             strategy=FLAGS.strategy, verbose=verbosity(),
                             weights=getattr(FLAGS, "weights", None) or "").check()  # --weights: kerasnets-train


def output_dir():
    """``--out``: required, and a folder that can be written (nothing is created here)."""
    if not FLAGS.out:
        raise ConfigError("--out (alias --output_dir) is required; pass the folder for checkpoints and artifacts.")
    return checks.check_output_folder(FLAGS.out, "--out")


def checkpoints_under(folder, depth=2):
    """Paths of the training checkpoints (``state.json``) in ``folder`` and its sub-folders, ``depth`` levels."""
    found = []
    if not os.path.isdir(folder):
        return found
    if os.path.isfile(os.path.join(folder, train.STATE_FILE)):
        found.append(os.path.join(folder, train.STATE_FILE))
    if depth > 0:
        for name in sorted(os.listdir(folder)):
            sub = os.path.join(folder, name)
            if os.path.isdir(sub) and not name.startswith("."):
                found.extend(checkpoints_under(sub, depth - 1))
    return found


def check_resume(out, depth=0):
    """``--resume`` needs a checkpoint in ``out`` (or ``depth`` levels below); without it, one there is refused."""
    found = checkpoints_under(out, depth)
    if FLAGS.resume and not found:
        raise ConfigError(f"--resume was given but {out!r} holds no checkpoint ({train.STATE_FILE}) to resume; "
                          "drop --resume to start a new run, or pass the --out of the run to continue.")
    if not FLAGS.resume and found:
        raise ConfigError(f"--out={out!r} already holds a training run ({found[0]}); pass --resume to continue "
                          "it, or use a fresh --out.")


def input_hw():
    """--input_size as (height, width); unset: :data:`kerasnets.cli.TRAINING_INPUT_SIZE`."""
    if not FLAGS.input_size:
        return TRAINING_INPUT_SIZE
    try:
        return parse_size(FLAGS.input_size)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def load_splits():
    """(train, test) splits the flags name (a folder without test/ gets a seeded 20% hold-out); the training
    split holds at least two classes."""
    return data_lib.load_train_test(FLAGS.dataset, input_hw(), FLAGS.train_subset, FLAGS.val_subset, FLAGS.seed)


def check_model(config, num_classes):
    """Build the model the flags describe once, before any training: bad --overrides and an --input_size or
    --batch_size beyond this machine's memory are refused up front. Returns it (random weights)."""
    return train.check_model(config, num_classes)
