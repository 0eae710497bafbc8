"""Float training with Keras ``fit``: optimizers, schedule, label smoothing, EMA, checkpoints, resume,
TensorBoard, and ``tf.distribute`` (default, mirrored, multi_worker).

Resuming is exact in the data: the training stream is one seeded, reshuffled-every-epoch,
repeated ``tf.data`` pipeline, and a resumed run skips the batches the finished epochs
consumed, so it sees the same batches an uninterrupted run would. Model, optimizer state
(including the step that drives the learning-rate schedule) and the EMA weights come from
the last epoch's checkpoint.
"""
import dataclasses
import functools
import hashlib
import json
import math
import numbers
import os
import re
import shutil
import time

import numpy as np

import kerasnets
from kerasnets import forms as kn_forms
from kerasnets import layers as kn_layers
from kerasnets.backend import keras, tf
from kerasnets.checkpoints import is_checkpoint
from kerasnets.errors import path_error
from kerasnets.export import profiles
from kerasnets.io import write_json
from kerasnets.resources import check_fits_memory
from kerasnets.spec import load_spec
from kerasnets.pipelines import checks
from kerasnets.pipelines import data as data_lib
from kerasnets.pipelines.errors import CheckpointError, ConfigError

STRATEGIES = ("default", "mirrored", "multi_worker")
OPTIMIZERS = ("sgd", "adamw")
STATE_FILE = "state.json"


@dataclasses.dataclass
class TrainConfig:
    """Everything a float training run needs (and what its checkpoint is checked against)."""
    model: str = "mobilenet_v2_035"
    input_size: object = 32          # S (square) or (height, width)
    overrides: dict = dataclasses.field(default_factory=dict)  # get_model(**overrides), e.g. width
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    warmup_epochs: float = 1.0
    min_learning_rate: float = 0.0
    label_smoothing: float = 0.1
    ema_decay: float = 0.0          # 0 = off; e.g. 0.999
    augment: bool = True
    seed: int = 0
    strategy: str = "default"
    tensorboard: bool = True
    verbose: int = 1
    normalization: dict = dataclasses.field(default_factory=lambda: dict(data_lib.DEFAULT_NORMALIZATION))
    # A checkpoint to start from (any kerasnets.load_weights source: timm / torchvision .safetensors
    # or .pth, a Hugging Face snapshot folder, a Keras Applications .h5, hf://timm/<name>); "" = random.
    # With it, the default normalization becomes the checkpoint's (kerasnets.preprocessing_for).
    weights: str = ""
    # A spec JSON (kerasnets.spec.save_spec: kerasnets-retarget --out, kerasnets-search) built instead of the
    # zoo model ``model``; "" = the zoo model. With it, ``model`` becomes the spec's model name.
    spec: str = ""

    def check(self):
        """Check every field's type and range (:class:`ConfigError`, one sentence naming it) and return self.

        With ``weights`` this reads the checkpoint, so a bad one is refused here, before any training.
        """
        self.spec = checks.text("spec", self.spec or "", empty_ok=True,
                                fix="pass the path of a spec JSON, or '' for the zoo model")
        if self.spec:
            # the file parsed and its fields checked (one sentence each); impossible channel counts are refused
            # when the model is built, before any training (check_model), not here: this runs for every config
            self.model = load_spec(self.spec, check=False)[0].name
        self.model = checks.text("model", self.model, fix="pass a zoo model name (kerasnets-zoo lists them)")
        hw = input_size_pair(self.input_size)
        if not isinstance(self.input_size, (int, np.integer)):
            self.input_size = hw
        if not isinstance(self.overrides, dict):
            raise ConfigError(f"overrides={self.overrides!r} is not a dict; pass get_model options as a dict "
                              "(--overrides: a JSON object such as '{\"width\": 0.5}').")
        self.optimizer = checks.choice("optimizer", self.optimizer, OPTIMIZERS)
        self.strategy = checks.choice("strategy", self.strategy, STRATEGIES)
        self.epochs = checks.integer("epochs", self.epochs, 1, fix="pass 1 or more epochs")
        self.batch_size = checks.integer("batch_size", self.batch_size, 1, fix="pass a batch size of 1 or more")
        self.learning_rate = checks.number("learning_rate", self.learning_rate, above=0,
                                           fix="pass a positive learning rate such as 0.05")
        self.momentum = checks.number("momentum", self.momentum, 0, below=1, fix="pass a momentum in [0, 1)")
        self.weight_decay = checks.number("weight_decay", self.weight_decay, 0, fix="pass 0 or a small positive "
                                          "decay such as 4e-5")
        self.warmup_epochs = checks.number("warmup_epochs", self.warmup_epochs, 0, fix="pass 0 or more")
        self.min_learning_rate = checks.number("min_learning_rate", self.min_learning_rate, 0,
                                               fix="pass 0 or a floor below learning_rate")
        if self.min_learning_rate > self.learning_rate:
            raise ConfigError(f"min_learning_rate={self.min_learning_rate:g} is above learning_rate="
                              f"{self.learning_rate:g}; pass a floor below the peak.")
        self.label_smoothing = checks.number("label_smoothing", self.label_smoothing, 0, below=1,
                                             fix="pass a value in [0, 1)")
        self.ema_decay = checks.number("ema_decay", self.ema_decay, 0, below=1,
                                       fix="pass a decay in [0, 1) (0 turns EMA off)")
        self.augment = checks.boolean("augment", self.augment)
        self.tensorboard = checks.boolean("tensorboard", self.tensorboard)
        self.seed = checks.seed("seed", self.seed)
        self.verbose = checks.integer("verbose", self.verbose, 0, 2)
        if self.weights is None:
            self.weights = ""
        self.weights = checks.text("weights", self.weights, empty_ok=True,
                                   fix="pass a checkpoint path or hf:// id, or '' for random initialisation")
        if self.weights:
            if self.spec and is_checkpoint(self.weights):
                raise ConfigError(f"weights={self.weights!r} is a checkpoint to import, which needs a zoo model, "
                                  f"not spec={self.spec!r}; pass Keras weights saved from the spec's model, or "
                                  "the zoo model name.")
            if self.normalization == data_lib.DEFAULT_NORMALIZATION:
                self.normalization = checkpoint_normalization(self.model, self.weights, self.overrides)
        data_lib.check_normalization(self.normalization)
        return self

    def model_source(self):
        """``get_model`` arguments naming the model: ``{"name": model}``, or ``{"spec": path}`` with a spec file."""
        return {"spec": self.spec} if self.spec else {"name": self.model}

    @property
    def input_hw(self):
        """(height, width) of the model input."""
        s = self.input_size
        return (int(s), int(s)) if isinstance(s, (int, np.integer)) else tuple(int(v) for v in s)


def input_size_pair(value, name="input_size"):
    """``value`` (S, or (height, width)) as a (height, width) pair of positive ints; :class:`ConfigError` otherwise."""
    fix = "pass S or (height, width) of positive integers, e.g. (32, 32) (--input_size=32x32)"
    if isinstance(value, (numbers.Integral, numbers.Real)) and not isinstance(value, (bool, np.bool_)):
        size = checks.integer(name, value, 1, fix=fix)
        return size, size
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigError(f"{name}={value!r} is not S or (height, width); {fix}.")
    return tuple(checks.integer(name, v, 1, fix=fix) for v in value)


# ----------------------------------------------------------------------------- schedule

@keras.saving.register_keras_serializable(package="pipelines")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to ``peak`` over ``warmup_steps``, then cosine decay to ``floor``."""

    def __init__(self, peak, total_steps, warmup_steps=0, floor=0.0):
        self.peak, self.total_steps = float(peak), int(total_steps)
        self.warmup_steps, self.floor = int(warmup_steps), float(floor)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1.0) / max(1.0, float(self.warmup_steps))
        progress = (step - self.warmup_steps) / max(1.0, float(self.total_steps - self.warmup_steps))
        progress = tf.clip_by_value(progress, 0.0, 1.0)
        cosine = self.floor + 0.5 * (self.peak - self.floor) * (1.0 + tf.cos(math.pi * progress))
        return tf.where(step < self.warmup_steps, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "floor": self.floor}


def make_optimizer(config, steps_per_epoch):
    total = max(1, int(config.epochs * steps_per_epoch))
    schedule = WarmupCosine(config.learning_rate, total, int(config.warmup_epochs * steps_per_epoch),
                            config.min_learning_rate)
    if config.optimizer == "sgd":
        opt = keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=True,
                                   weight_decay=config.weight_decay or None)
    else:
        opt = keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    if config.weight_decay:  # no decay of BN parameters and biases
        opt.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return opt


# ----------------------------------------------------------------------------- distribution

def make_strategy(name="default"):
    """``default`` (one device), ``mirrored`` (all local GPUs, else all logical CPUs) or
    ``multi_worker`` (MultiWorkerMirroredStrategy from ``TF_CONFIG``)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("strategy multi_worker needs TF_CONFIG (cluster and task) in the environment; "
                              "set it on every worker or use strategy mirrored.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ConfigError(f"strategy {name!r} is unknown; use one of {STRATEGIES}.")


def _worker():
    """(is_chief, task index) from TF_CONFIG (chief when there is no cluster)."""
    cfg = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = cfg.get("task") or {}
    kind, index = task.get("type", "chief"), int(task.get("index", 0))
    has_chief = "chief" in (cfg.get("cluster") or {})
    return (kind == "chief") or (kind == "worker" and index == 0 and not has_chief), index


# ----------------------------------------------------------------------------- checkpoints

def model_signature(model):
    """What identifies a model's weights: the ordered variable shapes (and, for messages, name and size)."""
    # Shapes in order (not names: Keras uniquifies auto-generated names such as quantize_layer_1).
    layout = [tuple(int(d) for d in w.shape) for w in model.weights]
    digest = hashlib.sha256(json.dumps(layout).encode()).hexdigest()[:16]
    return {"name": model.name, "weights": len(layout), "params": int(model.count_params()), "digest": digest}


def read_state(output_dir):
    path = os.path.join(output_dir, STATE_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is unreadable ({e}); delete it or use a fresh output_dir.") from e


def check_signature(state, model, where):
    theirs, ours = state.get("signature") or {}, model_signature(model)
    if theirs.get("digest") != ours["digest"]:
        raise CheckpointError(
            f"the checkpoint in {where} belongs to model {theirs.get('name')!r} ({theirs.get('params')} params), "
            f"not to {ours['name']!r} ({ours['params']} params); use a fresh output_dir or the matching model options.")


class WeightEMA:
    """Exponential moving average of every model weight (BN statistics included).

    Decay warms up as ``min(decay, (1 + n) / (10 + n))`` so short runs are not dominated
    by the initial weights. The shadow weights are checkpointed with the model.
    """

    def __init__(self, model, decay):
        self.model, self.decay = model, float(decay)
        self.shadow = [tf.Variable(w, trainable=False, name=f"ema_{i}") for i, w in enumerate(model.weights)]
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")

    @tf.function
    def update(self):
        n = tf.cast(self.updates, tf.float32)
        d = tf.minimum(self.decay, (1.0 + n) / (10.0 + n))
        for s, w in zip(self.shadow, self.model.weights):
            s.assign(d * s + (1.0 - d) * tf.cast(w, s.dtype))
        self.updates.assign_add(1)

    def swap_in(self):
        """Copy the averaged weights into the model."""
        for s, w in zip(self.shadow, self.model.weights):
            w.assign(s)


class _EMACallback(keras.callbacks.Callback):
    def __init__(self, ema):
        super().__init__()
        self.ema = ema

    def on_train_batch_end(self, batch, logs=None):
        self.ema.update()


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: a TF checkpoint (model, optimizer, EMA) and ``state.json`` (epoch,
    model signature, history), both written so a kill at any moment leaves a usable pair."""

    def __init__(self, checkpoint, output_dir, write_dir, signature, history, extra):
        super().__init__()
        self.checkpoint, self.output_dir, self.write_dir = checkpoint, output_dir, write_dir
        self.signature, self.history, self.extra = signature, history, extra
        self.manager = tf.train.CheckpointManager(checkpoint, os.path.join(write_dir, "ckpt"), max_to_keep=2)

    def on_epoch_end(self, epoch, logs=None):
        path = self.manager.save(checkpoint_number=epoch + 1)
        self.history.append({"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        if self.write_dir == self.output_dir:
            write_json(os.path.join(self.output_dir, STATE_FILE),
                       {"epoch": epoch + 1, "checkpoint": os.path.relpath(path, self.output_dir),
                        "signature": self.signature, "history": self.history, **self.extra}, default=float)


def _tensorboard_available():
    try:
        import tensorboard  # noqa: F401  (tf.summary needs it; tensorflow does not depend on it)
        return True
    except ImportError:
        print("TensorBoard logs skipped: the tensorboard package is not installed (pip install tensorboard).")
        return False


@dataclasses.dataclass
class TrainResult:
    model: object
    history: list
    metrics: dict
    output_dir: str
    resumed_from: int = 0
    forms: dict = None     # the group-conv form trained in, and why (see choose_forms); None with a custom model_fn


def outputs_probabilities(model):
    """Whether the model's last layer ends in softmax (QAT wrappers looked through)."""
    layer = model.layers[-1]
    layer = getattr(layer, "layer", layer)
    act = getattr(layer, "activation", None)
    act = getattr(act, "activation", act)  # tfmot QuantizeAwareActivation
    return getattr(act, "__name__", "") == "softmax"


# Measured here (AXSpine-Small, 32x32): native-form training steps on the CPU, against split: 7.3x at batch 32,
# ~28x at batch 128.
NATIVE_CPU_SLOWDOWN = "several times (up to ~28x)"


def gpu_visible():
    """Whether TensorFlow sees a GPU (the training device then runs the native grouped Conv2D fast)."""
    return bool(tf.config.list_physical_devices("GPU"))


def _profile_name_and_entry(profile):
    """(name, support.ops.group_conv entry or None, whether the profile lists supported ops) of a profile
    (a :class:`kerasnets.export.profiles.Profile`, or its dict, validated here)."""
    if isinstance(profile, dict):
        profile = profiles.parse_profile(profile, repr(profile.get("name", "<dict>")))
    if not isinstance(profile, profiles.Profile):
        raise ConfigError(f"profile={profile!r} is neither a hardware profile nor its dict; pass "
                          "kerasnets.export.profiles.load_profile(name).")
    if not profile.is_npu:
        return profile.name, None, False
    return profile.name, profile.support.ops.get("group_conv"), True


def choose_forms(grouped_convs, overrides=None, gpu=None, profile=None):
    """The group-conv forms a run uses, and why: train in the form that is fast on the training device, export
    in the form the target profile takes (the two hold the same weights: :mod:`kerasnets.forms`).

    Args:
      grouped_convs: how many grouped (not depthwise) convolutions the model has (0: forms do not matter).
      overrides: the get_model overrides; a ``group_conv`` there wins for training (reported as the user's).
      gpu: whether training runs on a GPU (None: ask TensorFlow).
      profile: the export target (an ``kerasnets.export.profiles`` profile or its dict); None: no export form.

    Returns ``{"grouped_convs": n, "training": {"group_conv", "reason", "override"}, "export": {"group_conv",
    "reason"} or None}``; ``group_conv`` is None when the model has no grouped convolution.
    """
    n = checks.integer("grouped_convs", grouped_convs, 0)
    overrides = overrides or {}
    gpu = gpu_visible() if gpu is None else checks.boolean("gpu", gpu)
    asked = overrides.get("group_conv")
    if n == 0:
        none = "the model has no grouped convolution, so the group-conv form does not matter"
        training = {"group_conv": None, "reason": none, "override": asked is not None}
        export = None if profile is None else {"group_conv": None, "reason": none}
        return {"grouped_convs": 0, "training": training, "export": export}
    if asked is not None:
        reason = f"user override (overrides group_conv={asked!r})"
        if asked == "native" and not gpu:
            reason += f"; on this CPU the native form trains {NATIVE_CPU_SLOWDOWN} slower than split"
        training = {"group_conv": asked, "reason": reason, "override": True}
    elif gpu:
        training = {"group_conv": "native", "reason": "a GPU is visible, where one grouped Conv2D trains fast",
                    "override": False}
    else:
        training = {"group_conv": "split", "reason": f"no GPU: on the CPU the native grouped Conv2D trains "
                    f"{NATIVE_CPU_SLOWDOWN} slower than the split form (same weights)", "override": False}
    export = None
    if profile is not None:
        name, entry, lists_ops = _profile_name_and_entry(profile)
        forms = list((entry.forms if entry else None) or [])
        if not lists_ops:
            export = {"group_conv": "native", "reason": f"{name} is a CPU target, where the native grouped "
                      "CONV_2D is one op"}
        elif entry is None:
            export = {"group_conv": "native", "reason": f"{name} runs no grouped convolution, so they stay on the "
                      "host CPU, where the native form is one CONV_2D"}
        elif not forms or "native" in forms:
            export = {"group_conv": "native", "reason": f"{name} takes the native grouped CONV_2D"
                      + (f" (forms {forms})" if forms else "")}
        else:
            export = {"group_conv": forms[0], "reason": f"{name} takes only the {forms[0]} form ({forms})"}
    return {"grouped_convs": n, "training": training, "export": export}


def _warn_slow_grouped_conv(model):
    """TensorFlow's CPU gradient of Conv2D(groups>1) is very slow (AXSpine-Small, 32x32, batch 128:
    14 s a step against 0.5 s for the split form, measured here); say so once, with the fix."""
    native = [l.name for l in model.layers if isinstance(getattr(l, "layer", l), keras.layers.Conv2D)
              and not isinstance(getattr(l, "layer", l), kn_layers.GroupConv2D)
              and getattr(getattr(l, "layer", l), "groups", 1) > 1]
    if native and not gpu_visible():
        print(f"note: {len(native)} grouped Conv2D layers (e.g. {native[0]}) are in the native form, which trains "
              f"{NATIVE_CPU_SLOWDOWN} slower on the CPU than the split form (group_conv='split': same weights; "
              "kerasnets-train and kerasnets-run pick it on a CPU unless overrides set group_conv).", flush=True)


def checkpoint_normalization(model, weights, overrides=None):
    """The ``normalization`` (mean / std in pixel units, channel order) that checkpoint ``weights``
    expects, read by importing it into a small backbone of ``model`` (cached per process).

    Raises the checkpoint's own error (one sentence) when ``weights`` cannot be read or does not
    fit ``model``, so a bad ``--weights`` is refused before any training.
    """
    return dict(_checkpoint_normalization(model, str(weights), json.dumps(overrides or {}, sort_keys=True)))


@functools.lru_cache(maxsize=8)
def _checkpoint_normalization(model, weights, overrides_json):
    if not (weights.startswith("hf://") or os.path.exists(weights)):
        raise ConfigError(f"weights={weights!r} is neither a file, a folder nor an hf:// id; pass the checkpoint "
                          "to start from (a .safetensors / .pth / .h5 file, a snapshot folder or hf://timm/NAME).")
    backbone = kerasnets.get_model(model, input_shape=(64, 64, 3), include_top=False, weights=weights,
                                   **json.loads(overrides_json))
    pre = kerasnets.preprocessing_for(backbone)
    norm = {"mean": list(pre["mean"]), "std": list(pre["std"])}
    if pre.get("channel_order", "RGB") != "RGB":
        norm["channel_order"] = pre["channel_order"]
    return tuple(norm.items())


def copy_weights(source, model, name="weights"):
    """Copy the weights of Keras model ``source`` into ``model``; :class:`CheckpointError` when they do not fit."""
    ours, theirs = model.get_weights(), source.get_weights()
    if len(ours) != len(theirs) or any(a.shape != b.shape for a, b in zip(ours, theirs)):
        raise CheckpointError(f"{name} ({source.name}, {len(theirs)} weight arrays) does not fit {model.name} "
                              f"({len(ours)} weight arrays, or other shapes); pass a model of the same architecture.")
    model.set_weights(theirs)


_SHAPE_MISMATCH = re.compile(r"variable '\s*([^']+?)(?::\d+)?'.*?variable shape (\([^)]*\)).*?assigned value shape "
                             r"(\([^)]*\))", re.S)


def check_weights_file(path, name="float_weights"):
    """Refuse (:class:`CheckpointError`, naming ``name`` and the path) a weights path that is missing, a folder,
    or not HDF5. Returns the path."""
    import h5py  # tf_keras's own dependency

    fix = "pass final.weights.h5 of a kerasnets-train run"
    path = checks.text(name, path, fix=fix)
    if not os.path.exists(path):
        raise CheckpointError(f"{name}={path!r} does not exist; {fix}.")
    if os.path.isdir(path):
        inside = os.path.join(path, "final.weights.h5")
        hint = f"pass {inside!r}" if os.path.isfile(inside) else fix
        raise CheckpointError(f"{name}={path!r} is a folder, not a weights file; {hint}.")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as e:
        raise path_error(path, e, "read") from None
    if not is_hdf5:
        raise CheckpointError(f"{name}={path!r} is not a Keras weights file (HDF5); {fix}.")
    return path


def load_weights_file(model, path, name="float_weights"):
    """Load Keras weights file ``path`` (``final.weights.h5`` of a training run) into ``model``.

    Refuses in one sentence naming ``name`` and the file, before anything else runs: a missing
    path, a folder, a file that is not HDF5, and weights of another model (another family,
    width or class count; the first mismatching variable is named). A file saved from the other
    group-conv form (native / split) loads too (:func:`kerasnets.forms.load_weights`). Returns ``model``.
    """
    path = check_weights_file(path, name)
    try:
        kn_forms.load_weights(model, path)  # a file of either group-conv form (train split, load native)
    except (ValueError, OSError, KeyError, TypeError, IndexError, AttributeError, tf.errors.OpError) as e:
        found = _SHAPE_MISMATCH.search(str(e))
        if found:
            variable, ours, theirs = found.groups()
            detail = f"its {variable.strip()} has shape {theirs}, {model.name} here needs {ours}"
        else:
            detail = f"its weights do not match the layers of {model.name}"
        raise CheckpointError(f"{name}={path!r} holds weights of another model ({detail}); pass final.weights.h5 "
                              "of a kerasnets-train run with the same --model, --overrides and dataset classes.") \
            from None
    return model


def check_model(config, num_classes):
    """Build ``config.model`` once, without weights, to refuse bad ``overrides`` (get_model's own checks) and an
    input size or batch whose activations exceed this machine's memory (:func:`kerasnets.resources.check_fits_memory`)
    before any training. Returns the model (random weights, ``num_classes`` outputs)."""
    model = kerasnets.get_model(**config.model_source(), input_shape=config.input_hw + (3,), classes=num_classes,
                                **config.overrides)
    check_fits_memory(model, config.batch_size)
    return model


def default_model_fn(config, num_classes):
    """Builds ``config.model`` for ``num_classes`` (from ``config.weights`` where given)."""
    def build():
        return kerasnets.get_model(**config.model_source(), input_shape=config.input_hw + (3,),
                                   classes=num_classes, weights=config.weights or None, **config.overrides)
    return build


def fit(config, train_split, val_split, output_dir, model_fn=None, resume=False, initial_weights_from=None,
        callbacks=(), compile_metrics=True, run_info=None):
    """Train a model with Keras ``fit`` and return a :class:`TrainResult`.

    Args:
      config: a :class:`TrainConfig`.
      train_split, val_split: :class:`~pipelines.data.DataSplit` s (val may be None).
      output_dir: checkpoints (``ckpt/``), ``state.json``, TensorBoard logs (``logs/``),
        ``normalization.json`` and the final weights (``final.weights.h5``) go here.
      model_fn: builds the (uncompiled) model; called inside the strategy scope. Default:
        ``kerasnets.get_model(config.model, ...)``.
      resume: continue from the last epoch checkpoint in ``output_dir`` (checked to belong
        to this model); without it an existing checkpoint is an error.
      initial_weights_from: a Keras model whose weights are copied in before training.

    With the default ``model_fn``, a model with grouped convolutions trains in the form that is fast on the
    training device (:func:`choose_forms`: split on a CPU, native on a GPU, ``overrides["group_conv"]`` when
    given); the weights are the same in both forms (``final.weights.h5`` loads into either). The choice is in
    ``TrainResult.forms`` and ``metrics["group_conv_form"]`` / ``metrics["group_conv_reason"]``.
    """
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"config is a {type(config).__name__}, not a TrainConfig; "
                          "pass pipelines.train.TrainConfig(...).")
    config.check()
    # Everything is checked, and the model built, before the first write: a refused run leaves nothing behind.
    output_dir = checks.check_output_folder(output_dir, "output_dir")
    resume = checks.boolean("resume", resume)
    if model_fn is not None and not callable(model_fn):
        raise ConfigError(f"model_fn={model_fn!r} is not callable; pass a function that builds the model, or None.")
    if initial_weights_from is not None and not isinstance(initial_weights_from, keras.Model):
        raise ConfigError(f"initial_weights_from is a {type(initial_weights_from).__name__}, not a Keras model; "
                          "pass a model of the same architecture, or None.")
    train_split = data_lib.check_training_split(train_split, "training data")
    num_classes = train_split.num_classes
    if val_split is not None:
        val_split = data_lib.validate_split(val_split, num_classes, "validation data")
    strategy = make_strategy(config.strategy)
    is_chief, index = _worker() if config.strategy == "multi_worker" else (True, 0)
    state = read_state(output_dir)
    if state is not None and not resume:
        raise CheckpointError(f"{output_dir} already holds a run at epoch {state.get('epoch')}; pass resume=True "
                              "(--resume) to continue it, or use a fresh output_dir.")
    choose_form = model_fn is None
    model_fn = model_fn or default_model_fn(config, num_classes)
    steps_per_epoch = int(math.ceil(len(train_split) / config.batch_size))
    tf.random.set_seed(config.seed)
    np.random.seed(config.seed)

    form_choice = None
    with strategy.scope():
        model = model_fn()
        if choose_form:
            form_choice = choose_forms(len(kn_forms.grouped_convs(model)), config.overrides)
            if form_choice["training"]["group_conv"] is not None:
                model = kn_forms.to_form(model, form_choice["training"]["group_conv"])
        if int(model.output_shape[-1]) != num_classes:
            raise ConfigError(f"the model head has {model.output_shape[-1]} classes but the data has {num_classes}; "
                              "build the model with classes equal to the number of classes in the data.")
        check_fits_memory(model, config.batch_size)
        if form_choice is None or form_choice["training"]["override"]:
            _warn_slow_grouped_conv(model)
        if initial_weights_from is not None:
            copy_weights(initial_weights_from, model, "initial_weights_from")
        optimizer = make_optimizer(config, steps_per_epoch)
        from_logits = not outputs_probabilities(model)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        if num_classes > 5:
            metrics.append(keras.metrics.TopKCategoricalAccuracy(5, name="top5"))
        model.compile(optimizer=optimizer,
                      loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits,
                                                                label_smoothing=config.label_smoothing),
                      metrics=metrics if compile_metrics else None)
        optimizer.build(model.trainable_variables)
        ema = WeightEMA(model, config.ema_decay) if config.ema_decay else None
        tracked = {"model": model, "optimizer": optimizer}
        if ema is not None:
            tracked.update(ema_shadow=ema.shadow, ema_updates=ema.updates)
        checkpoint = tf.train.Checkpoint(**tracked)

    initial_epoch, history = 0, []
    if state is not None:
        check_signature(state, model, output_dir)
        if "checkpoint" not in state or "epoch" not in state:
            raise CheckpointError(f"{os.path.join(output_dir, STATE_FILE)} names no checkpoint; delete it or use "
                                  "a fresh output_dir.")
    os.makedirs(output_dir, exist_ok=True)
    write_dir = output_dir if is_chief else os.path.join(output_dir, f".worker-{index}")
    os.makedirs(write_dir, exist_ok=True)
    if state is not None:
        checkpoint.restore(os.path.join(output_dir, state["checkpoint"])).expect_partial()
        initial_epoch, history = int(state["epoch"]), list(state.get("history", []))
    resumed_from = initial_epoch

    norm = data_lib.check_normalization(config.normalization)
    if is_chief:
        write_json(os.path.join(output_dir, "normalization.json"), norm, default=float)
        write_json(os.path.join(output_dir, "config.json"), dataclasses.asdict(config), default=float)
    input_size = tuple(model.input_shape[1:3])
    train_ds = data_lib.make_dataset(train_split, input_size, config.batch_size, training=True, seed=config.seed,
                                     augment=config.augment, normalization=norm, one_hot=True, repeat=True)
    train_ds = train_ds.skip(initial_epoch * steps_per_epoch)
    val_ds = None
    if val_split is not None:
        val_ds = data_lib.make_dataset(val_split, input_size, config.batch_size, normalization=norm, one_hot=True)
    if config.strategy == "multi_worker":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        train_ds = train_ds.with_options(options)
        val_ds = val_ds.with_options(options) if val_ds is not None else None

    cbs = [EpochCheckpoint(checkpoint, output_dir, write_dir, model_signature(model), history,
                           {"config": dataclasses.asdict(config), **(run_info or {})})]
    if ema is not None:
        cbs.insert(0, _EMACallback(ema))
    if config.tensorboard and is_chief and _tensorboard_available():
        cbs.append(keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"), write_graph=False,
                                               profile_batch=0))
    cbs.extend(callbacks)
    started = time.time()
    if initial_epoch < config.epochs:
        model.fit(train_ds, epochs=config.epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
                  validation_data=val_ds, callbacks=cbs, verbose=config.verbose)
    if ema is not None:
        ema.swap_in()
    metrics = {"epochs": config.epochs, "train_seconds": round(time.time() - started, 2),
               "resumed_from_epoch": resumed_from}
    if form_choice is not None and form_choice["grouped_convs"]:
        metrics.update(group_conv_form=form_choice["training"]["group_conv"],
                       group_conv_reason=form_choice["training"]["reason"])
    if val_ds is not None:
        results = model.evaluate(val_ds, verbose=0, return_dict=True)
        metrics.update({f"val_{k}": float(v) for k, v in results.items()})
    # Every worker saves (MultiWorkerMirroredStrategy needs all to take part); only the chief's copy stays.
    tmp = os.path.join(write_dir, f".tmp-{os.getpid()}.weights.h5")
    model.save_weights(tmp)
    if is_chief:
        os.replace(tmp, os.path.join(output_dir, "final.weights.h5"))
        write_json(os.path.join(output_dir, "metrics.json"), metrics, default=float)
    else:
        shutil.rmtree(write_dir, ignore_errors=True)
    return TrainResult(model, history, metrics, output_dir, resumed_from, form_choice)
