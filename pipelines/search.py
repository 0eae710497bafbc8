"""Hardware-aware architecture search around a base family, under a latency budget on a profile.

    kerasnets-search --base=axspine --profile=m55h --input_size=576x320 --fps=186 --out=runs/search

Two phases, one persistent Optuna study:

1. **The estimator loop.** NSGA-II (Optuna's ``NSGAIISampler``) samples candidates from the base
   family's search space (:data:`BASES`: width, per-stage depth, expansion, group width, kernel
   size per stage, activation and stage layout, the layout's depths being a conditional part of
   the space). Each candidate is a spec (the family's spec function, then spec-to-spec
   transforms), costed on the profile at the deployment size by :class:`kerasnets.export.speccost.SpecCoster`
   from cached per-block ops (a few ms; no Keras model is built for a spec whose blocks were
   seen). Two objectives: estimated latency (minimised) and MACs (maximised: model capacity, the
   zero-cost baseline that Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021,
   find hard to beat), with the budget as a constraint (``latency - budget <= 0``), so the
   front is the largest models that fit.
2. **The accuracy proxy.** The ``top_k`` feasible candidates of the estimator front (largest
   first) are ranked by the proxy on the user's dataset: ``train`` (default) trains each for a
   few epochs at a small input (``train_size``) with :func:`kerasnets.pipelines.train.fit` and scores its
   test-split top-1; ``zero_cost`` scores SNIP (Lee et al., ICLR 2019: the sum of
   ``|w * dL/dw|`` over all weights, on one training batch at initialisation). SNIP rather than
   synflow, the best of the zero-cost proxies in Abdelfattah et al.: synflow feeds an all-ones
   input through ``|w|`` and relies on the network being positively homogeneous, which the
   searched activations are not (ReLU6 clips at 6 under that input, so its gradients vanish;
   hard-swish is not homogeneous near 0). SNIP and grad-norm work with any activation and rank
   NAS-Bench-201 alike there; SNIP, a per-weight saliency on real images and labels, is kept.
   The chosen candidate is the best by the proxy; the front is latency vs proxy.

Why Optuna rather than pymoo: its ask-and-tell interface with a persistent study (a
``JournalStorage`` file, appended line by line) gives resume after an interruption for free
(the sampler rebuilds its population from the stored trials), the proxy results live in the
same journal, and define-by-run sampling expresses conditional search spaces (depths that
exist only for one stage layout) directly, which pymoo's fixed-length problem vectors do not.

Outputs in ``out_dir``: ``study.journal`` (the study, for ``resume``), ``front.json`` and
``front.png`` (both fronts, every scored candidate, timings), ``chosen_spec.json``
(:func:`kerasnets.spec.save_spec`, with the build options the profile takes) and, for the
training proxy, ``candidates/t<N>/`` (each candidate's training run). Every file is written
atomically; an interrupted search continues with ``resume=True``.
"""
import dataclasses
import io
import json
import math
import os
import time

import numpy as np

import kerasnets
from kerasnets.export import profiles as hw_profiles
from kerasnets.export.placement import POLICIES
from kerasnets.export.speccost import SpecCoster
from kerasnets import families
from kerasnets.backend import keras, tf
from kerasnets.builder import BuildOptions
from kerasnets.errors import ModelConfigError
from kerasnets.io import atomic_write, write_json
from kerasnets.spec import ModelSpec, align_up, save_spec
from kerasnets.pipelines import checks, train
from kerasnets.pipelines import data as data_lib
from kerasnets.pipelines.errors import CheckpointError, ConfigError

PROXIES = ("train", "zero_cost")
JOURNAL = "study.journal"
STUDY = "search"
FRONT_JSON, FRONT_PNG, CHOSEN_SPEC = "front.json", "front.png", "chosen_spec.json"
# Fields that may change between an interrupted search and its resumption: more trials or more scored
# candidates extend it (finished trials and proxy scores are kept).
_RESUMABLE_FIELDS = ("trials", "top_k", "verbose")
# Search-space activations (all three are in the builder and in m55h's and the Edge TPU's support lists).
ACTIVATIONS = ("relu6", "relu", "hard_swish")
# Optuna is imported lazily (about 1 s): the bad-input checks do not need it.


# ------------------------------------------------------------------ spec transforms ----

def with_kernels(spec, kernels):
    """``spec`` with the spatial kernel of its ``ds`` / ``ir`` / ``er`` / ``varg`` blocks set per stage (``{stage: k}``,
    stage = log2 of the block's output stride)."""
    blocks = [dataclasses.replace(b, kernel=kernels[s]) if b.kind in ("ds", "ir", "er", "varg") and s in kernels else b
              for b, s in zip(spec.blocks, spec.block_stages())]
    return dataclasses.replace(spec, blocks=tuple(blocks))


def with_group_width(spec, group_width):
    """``spec`` with every depthwise ``ir`` block turned into a group conv of ``group_width`` channels per group
    (AXSpine's change 1), its inner width rounded up to a multiple of it; 0 leaves the spec as it is."""
    if not group_width:
        return spec
    blocks = [dataclasses.replace(b, mid=align_up(b.mid, group_width), group_width=group_width)
              if b.kind == "ir" and b.group_width == 0 else b for b in spec.blocks]
    return dataclasses.replace(spec, blocks=tuple(blocks))


def with_activation(spec, act):
    """``spec`` with every block activation (those that have one) set to ``act``."""
    blocks = [dataclasses.replace(b, act=act) if b.act is not None else b for b in spec.blocks]
    return dataclasses.replace(spec, blocks=tuple(blocks))


# --------------------------------------------------------------------- search spaces ----

@dataclasses.dataclass(frozen=True)
class Knob:
    """One dimension of a search space.

    ``choices`` are listed cheapest first when ``ordered`` (width, depth, expansion, kernel); for
    the others (group width, activation, layout) which is cheapest depends on the profile. ``when``
    = (knob, value) makes the knob exist only where that knob took that value (a conditional space).
    """
    name: str
    choices: tuple
    ordered: bool = True
    when: tuple = ()


_KERNELS = tuple(Knob(f"kernel_stage{s}", (3, 5)) for s in (2, 3, 4, 5))  # /4, /8, /16, /32
_FOUR_STAGE_DEPTHS = ((1, 2, 3, 4), (1, 2, 3, 4), tuple(range(1, 11)), (1, 2, 3, 4))  # /4, /8, /16, /32


def _kernels(p):
    return {s: p[f"kernel_stage{s}"] for s in (2, 3, 4, 5)}


# MobileNetV2 (expand t, channels c, stride s) rows; "five_stage" is Sandler et al.'s table (stride-1 rows
# included), "four_stage" keeps the rows that enter /4, /8, /16, /32 (AXSpine's change 5 applied to MobileNetV2).
_MNV2_ROWS = {"five_stage": ((24, 2, (1, 2, 3)), (32, 2, (1, 2, 3, 4)), (64, 2, (1, 2, 3, 4, 5)),
                             (96, 1, (1, 2, 3, 4)), (160, 2, (1, 2, 3, 4))),
              "four_stage": tuple((c, 2, d) for c, d in zip((24, 32, 64, 160), _FOUR_STAGE_DEPTHS))}


def _mobilenet_v2_spec(p):
    t, layout = p["expand"], p["layout"]
    stages = [(1, 16, 1, 1)] + [(t, c, p[f"depth_{layout}_{i}"], s) for i, (c, s, _) in enumerate(_MNV2_ROWS[layout])]
    if layout == "five_stage":
        stages.append((t, 320, 1, 1))
    spec = families.mobilenet_v2_spec(p["width"], stages=tuple(stages))
    return with_activation(with_group_width(with_kernels(spec, _kernels(p)), p["group_width"]), p["activation"])


def _mobilenet_v2_knobs():
    knobs = [Knob("width", (0.35, 0.5, 0.75, 1.0, 1.25, 1.4)), Knob("layout", ("five_stage", "four_stage"), False)]
    for layout, rows in _MNV2_ROWS.items():
        knobs += [Knob(f"depth_{layout}_{i}", depths, when=("layout", layout)) for i, (_, _, depths) in enumerate(rows)]
    return tuple(knobs) + (Knob("expand", (2, 3, 4, 6)), Knob("group_width", (0, 8, 16), False)) + _KERNELS + (
        Knob("activation", ACTIVATIONS, False),)


_AXSPINE_CONVNEXT = (1, 1, 3, 1)  # ConvNeXt's 3:3:9:3 proportion, times depth_scale


def _axspine_spec(p):
    if p["layout"] == "convnext":
        depths = tuple(d * p["depth_scale"] for d in _AXSPINE_CONVNEXT)
    else:
        depths = tuple(p[f"depth_free_{i}"] for i in range(4))
    spec = families.axspine_spec("middle", channels_per_group=p["group_width"], expand=p["expand"],
                                 second_expand=p["second_expand"], depths=depths, width=p["width"])
    return with_activation(with_kernels(spec, _kernels(p)), p["activation"])


def _axspine_knobs():
    return (Knob("width", (0.35, 0.5, 0.75, 1.0, 1.25, 1.4)), Knob("layout", ("convnext", "free"), False),
            Knob("depth_scale", (1, 2, 3, 4), when=("layout", "convnext"))) + tuple(
        Knob(f"depth_free_{i}", d, when=("layout", "free")) for i, d in enumerate(_FOUR_STAGE_DEPTHS)) + (
        Knob("expand", (2, 3, 4, 6)), Knob("second_expand", (1, 2, 4)), Knob("group_width", (8, 16, 32), False)) \
        + _KERNELS + (Knob("activation", ACTIVATIONS, False),)


# VargNetV2 / TinyVargNetV2 blocks per stage (/4, /8, /16, /32), cheapest first.
_VARG_DEPTHS = {"vargnetv2": ((1, 2), (1, 2, 3, 4), tuple(range(2, 9)), (1, 2, 3, 4, 5)),
                "tiny": ((1,), (1, 2, 3), (1, 2, 3, 4), (1, 2))}


def _vargnetv2_spec(p):
    layout = p["layout"]
    repeats = tuple(p[f"depth_{layout}_{i}"] for i in range(4))
    gb = p["group_width"]
    spec = families.vargnetv2_spec(alpha=p["width"], group_base=gb, factor=p["expand"], head_factor=1 if gb == 8 else 2,
                                   repeats=repeats, tiny=layout == "tiny")
    return with_activation(with_kernels(spec, _kernels(p)), p["activation"])


def _vargnetv2_knobs():
    knobs = [Knob("width", (0.25, 0.5, 0.75, 1.0, 1.25, 1.5)), Knob("layout", ("vargnetv2", "tiny"), False)]
    for layout, depths in _VARG_DEPTHS.items():
        knobs += [Knob(f"depth_{layout}_{i}", d, when=("layout", layout)) for i, d in enumerate(depths)]
    return tuple(knobs) + (Knob("expand", (1, 1.5, 2)), Knob("group_width", (8, 16), False)) + _KERNELS + (
        Knob("activation", ("relu", "relu6", "hard_swish"), False),)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """A base family's search space: its knobs, the spec a parameter set makes, and the base model's own
    parameters (``reference``: the registry model the space is centred on, enqueued as the first trial)."""
    name: str
    knobs: tuple
    make: object
    reference: str
    reference_params: dict
    default_size: tuple = (224, 224)

    def active(self, params):
        """The knobs that exist for ``params`` (conditional ones only where their condition holds)."""
        return [k for k in self.knobs if not k.when or params.get(k.when[0]) == k.when[1]]

    def resolve(self, params):
        """``params`` reduced to the active knobs, a missing one at its first (cheapest) choice."""
        out = {}
        for k in self.knobs:
            if not k.when or out.get(k.when[0]) == k.when[1]:
                out[k.name] = params.get(k.name, k.choices[0])
        return out

    def sample(self, trial):
        """Parameters drawn by an Optuna ``trial`` (define-by-run: conditional knobs only when active)."""
        params = {}
        for k in self.knobs:
            if not k.when or params.get(k.when[0]) == k.when[1]:
                params[k.name] = trial.suggest_categorical(k.name, k.choices)
        return params

    def spec(self, params, name):
        """The :class:`ModelSpec` of ``params``, named ``name``."""
        return dataclasses.replace(self.make(self.resolve(params)), name=name)

    def fastest(self, latency):
        """(params, latency) of the fastest candidate: every ordered knob at its cheapest choice, then each
        unordered one (layout, group width, activation) set in turn to its fastest choice under
        ``latency(params)`` (coordinate descent: these knobs act on different ops, so one pass finds it)."""
        def cost(p):
            try:
                return latency(p)
            except ModelConfigError:  # a combination the family refuses (e.g. widths that do not split into groups)
                return math.inf
        params = self.resolve({})
        best = cost(params)
        for k in self.knobs:
            if k.ordered or k.name not in params:
                continue
            for choice in k.choices:
                trial = self.resolve({**params, k.name: choice})
                ms = cost(trial)
                if ms < best:
                    params, best = trial, ms
        return params, best


def _describe(params):
    return ", ".join(f"{k}={v}" for k, v in params.items())


BASES = {
    "mobilenet_v2": SearchSpace(
        "mobilenet_v2", _mobilenet_v2_knobs(), _mobilenet_v2_spec, "mobilenet_v2_100",
        {"width": 1.0, "layout": "five_stage", "depth_five_stage_0": 2, "depth_five_stage_1": 3,
         "depth_five_stage_2": 4, "depth_five_stage_3": 3, "depth_five_stage_4": 3, "expand": 6, "group_width": 0,
         "kernel_stage2": 3, "kernel_stage3": 3, "kernel_stage4": 3, "kernel_stage5": 3, "activation": "relu6"}),
    "axspine": SearchSpace(
        "axspine", _axspine_knobs(), _axspine_spec, "axspine_middle",
        {"width": 1.0, "layout": "convnext", "depth_scale": 3, "expand": 4, "second_expand": 2, "group_width": 8,
         "kernel_stage2": 3, "kernel_stage3": 3, "kernel_stage4": 3, "kernel_stage5": 3, "activation": "relu6"}),
    "vargnetv2": SearchSpace(
        "vargnetv2", _vargnetv2_knobs(), _vargnetv2_spec, "vargnetv2_100",
        {"width": 1.0, "layout": "vargnetv2", "depth_vargnetv2_0": 1, "depth_vargnetv2_1": 3, "depth_vargnetv2_2": 7,
         "depth_vargnetv2_3": 4, "expand": 2, "group_width": 8, "kernel_stage2": 3, "kernel_stage3": 3,
         "kernel_stage4": 3, "kernel_stage5": 3, "activation": "relu"}),
}
# A new base is a SearchSpace entry here: its knobs and a function from their values to a spec.


# ------------------------------------------------------------------------- config ----

@dataclasses.dataclass
class SearchConfig:
    """Settings of one search; stored in the study and checked on resume.

    The budget is ``latency_ms`` or ``fps`` (exactly one). ``input_size`` is the deployment size
    the latency is estimated at (None: the base's default, 224x224); ``train_size`` the small size
    candidates are trained or scored at.
    """
    base: str = "axspine"
    profile: str = "m55h"
    input_size: tuple = None
    latency_ms: float = None
    fps: float = None
    proxy: str = "train"
    trials: int = 200
    top_k: int = 3
    policy: str = "max_npu"
    dataset: str = "fashion_mnist"
    train_size: tuple = (32, 32)
    train_subset: int = 0
    val_subset: int = 0
    epochs: int = 3
    batch_size: int = 128
    learning_rate: float = 0.05
    # BatchNorm momentum of the proxy trainings. They are short: at Keras's 0.99 the moving averages keep 0.99**94
    # = 39% of their initial values after 94 steps (3000 images, 2 epochs, batch 64) and the test top-1 is chance
    # (measured here: mobilenet_v2_100 0.097 at 0.99, 0.685 at 0.9). Not saved with the chosen spec.
    bn_momentum: float = 0.9
    seed: int = 0
    verbose: int = 0

    def check(self):
        """Check every field (:class:`ConfigError`, one sentence naming it; ``ProfileError`` for a profile) and
        return self. The budget against the fastest candidate is checked by :func:`prepare`, which costs it."""
        self.base = checks.choice("base", self.base, tuple(BASES))
        self.proxy = checks.choice("proxy", self.proxy, PROXIES)
        self.policy = checks.choice("policy", self.policy, POLICIES)
        self.profile = checks.text("profile", self.profile, fix="pass a profile name such as m55h")
        hw_profiles.load_profile(self.profile)  # ProfileError names an unknown or malformed one
        if (self.latency_ms is None) == (self.fps is None):
            raise ConfigError(f"give exactly one budget, latency_ms or fps (got latency_ms={self.latency_ms!r}, "
                              f"fps={self.fps!r}); pass e.g. --latency_ms=5 or --fps=186.")
        if self.latency_ms is not None:
            self.latency_ms = checks.number("latency_ms", self.latency_ms, above=0, fix="pass a positive latency "
                                            "budget in ms, e.g. 5")
        else:
            self.fps = checks.number("fps", self.fps, above=0, fix="pass a positive frame rate, e.g. 186")
        space = BASES[self.base]
        stride = space.spec(space.reference_params, "probe").total_stride
        for name in ("input_size", "train_size"):
            value = getattr(self, name)
            if value is None and name == "input_size":
                value = space.default_size
            value = train.input_size_pair(value, name)
            if min(value) < stride:
                raise ConfigError(f"{name}={value[0]}x{value[1]} is smaller than the total stride {stride} of the "
                                  f"{self.base} family; pass at least {stride}x{stride}.")
            setattr(self, name, value)
        self.trials = checks.integer("trials", self.trials, 1, fix="pass 1 or more estimator trials")
        self.top_k = checks.integer("top_k", self.top_k, 1, fix="pass 1 or more candidates to score")
        self.dataset = checks.text("dataset", self.dataset,
                                   fix="pass fashion_mnist, a folder of class sub-folders or a TFRecord path")
        for name in ("train_subset", "val_subset"):
            setattr(self, name, checks.integer(name, getattr(self, name), 0, fix="pass 0 (all) or a positive count"))
        self.epochs = checks.integer("epochs", self.epochs, 1, fix="pass 1 or more epochs")
        self.batch_size = checks.integer("batch_size", self.batch_size, 1, fix="pass a batch size of 1 or more")
        self.learning_rate = checks.number("learning_rate", self.learning_rate, above=0,
                                           fix="pass a positive learning rate such as 0.05")
        self.bn_momentum = checks.number("bn_momentum", self.bn_momentum, above=0, below=1,
                                         fix="pass a momentum in (0, 1) such as 0.9")
        self.seed = checks.seed("seed", self.seed)
        self.verbose = checks.integer("verbose", self.verbose, 0, 2)
        return self

    @property
    def budget_ms(self):
        return self.latency_ms if self.latency_ms is not None else 1e3 / self.fps

    def budget_text(self):
        if self.latency_ms is not None:
            return f"latency_ms={self.latency_ms:g} (--latency_ms)"
        return f"fps={self.fps:g} (--fps, {self.budget_ms:.3f} ms)"

    def as_dict(self):
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def train_config(self, name):
        """The :class:`kerasnets.pipelines.train.TrainConfig` of a candidate's proxy training."""
        return train.TrainConfig(model=name, input_size=tuple(self.train_size), epochs=self.epochs,
                                 batch_size=self.batch_size, learning_rate=self.learning_rate, seed=self.seed,
                                 augment=False, warmup_epochs=min(1.0, 0.3 * self.epochs), tensorboard=False,
                                 verbose=self.verbose).check()


# ------------------------------------------------------------------------- proxies ----

def grouped_conv_count(graph):
    """How many grouped (not depthwise) convolutions an analyzed graph has."""
    return sum(1 for op in graph.ops if op.kind == "group_conv")


def training_form(spec, coster):
    """The group-conv form ``spec`` trains in here (:func:`kerasnets.pipelines.train.choose_forms`: split on a CPU)."""
    graph, _ = coster.graph(spec)
    return train.choose_forms(grouped_conv_count(graph))["training"]["group_conv"] or "native"


def train_proxy(spec, config, train_split, val_split, work_dir, form="native"):
    """Train ``spec`` as :meth:`SearchConfig.train_config` says and return ``{"score": test top-1, ...}``.

    Resumes the candidate's own training in ``work_dir`` where an interrupted search left it.
    """
    size = tuple(config.train_size)
    classes = train_split.num_classes

    def model_fn():
        return kerasnets.get_model(spec=spec, input_shape=size + (3,), classes=classes, group_conv=form,
                                   bn_momentum=config.bn_momentum)
    started = time.perf_counter()
    resume = os.path.isfile(os.path.join(work_dir, train.STATE_FILE))
    result = train.fit(config.train_config(spec.name), train_split, val_split, work_dir, model_fn=model_fn,
                       resume=resume)
    return {"score": float(result.metrics["val_accuracy"]), "seconds": round(time.perf_counter() - started, 2),
            "method": f"test-split top-1 after {config.epochs} epoch(s) at {size[0]}x{size[1]} on "
                      f"{len(train_split)} images (pipelines.train.fit, BN momentum {config.bn_momentum:g}, seed "
                      f"{config.seed})",
            "group_conv_form": form}


def first_batch(config, train_split):
    """The one training batch the zero-cost proxy scores every candidate on (seeded, the same for all)."""
    ds = data_lib.make_dataset(train_split, tuple(config.train_size), config.batch_size, training=True,
                               seed=config.seed)
    return next(iter(ds))


def snip_score(model, images, labels):
    """SNIP (Lee et al. 2019): sum over all trainable weights of ``|w * dL/dw|`` for cross-entropy ``L`` on one
    batch, in training mode (BatchNorm on batch statistics)."""
    weights = model.trainable_weights
    with tf.GradientTape() as tape:
        out = model(images, training=True)
        from_logits = not train.outputs_probabilities(model)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, out, from_logits=from_logits))
    grads = tape.gradient(loss, weights)
    return float(sum(tf.reduce_sum(tf.abs(w * g)).numpy() for w, g in zip(weights, grads) if g is not None))


def zero_cost_proxy(spec, config, batch, classes, form="native"):
    """The SNIP score of ``spec`` at initialisation (seeded) on ``batch``: ``{"score": ..., ...}``."""
    started = time.perf_counter()
    tf.random.set_seed(config.seed)
    size = tuple(config.train_size)
    model = kerasnets.get_model(spec=spec, input_shape=size + (3,), classes=classes, group_conv=form)
    images, labels = batch
    score = snip_score(model, images, labels)
    return {"score": score, "seconds": round(time.perf_counter() - started, 2),
            "method": f"SNIP sum|w*dL/dw| on one batch of {int(images.shape[0])} training images at "
                      f"{size[0]}x{size[1]}, seeded initialisation (seed {config.seed})",
            "group_conv_form": form}


# ---------------------------------------------------------------------- fronts ----

def pareto_front(points, maximize_second=True):
    """Indices of the non-dominated ``(latency, value)`` points: lower latency and higher value (or lower, when
    not ``maximize_second``) are better; sorted by latency."""
    sign = 1 if maximize_second else -1
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -sign * points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if sign * points[i][1] > best:
            front.append(i)
            best = sign * points[i][1]
    return front


def select_top(candidates, k):
    """The ``k`` candidates to score: the estimator front's (latency vs MACs) largest first, then the next
    fronts' (non-dominated sorting), each spec once."""
    remaining, chosen = list(candidates), []
    while remaining and len(chosen) < k:
        front = pareto_front([(c["latency_ms"], c["macs"]) for c in remaining])
        layer = sorted((remaining[i] for i in front), key=lambda c: -c["macs"])
        chosen.extend(layer[:k - len(chosen)])
        taken = {id(c) for c in layer}
        remaining = [c for c in remaining if id(c) not in taken]
    return chosen


# ------------------------------------------------------------------------- state ----

def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("the search needs Optuna, which is not installed; install it with pip install -e "
                          "'.[search]' (or pip install optuna==5.0.0).") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _storage(path):
    optuna = _optuna()
    from optuna.storages.journal import JournalFileBackend
    return optuna.storages.JournalStorage(JournalFileBackend(path))


def repair_journal(path):
    """Drop a partial last line (a process killed while appending) so later appends start on a line of their
    own; the journal's complete lines are the study. Returns the bytes dropped."""
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return 0
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return len(data) - keep


def _stored_config(journal):
    """The config a journal's study was started with; CheckpointError when it holds no search study."""
    optuna = _optuna()
    try:
        study = optuna.load_study(study_name=STUDY, storage=_storage(journal))
        theirs = study.user_attrs["config"]
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{journal} holds no kerasnets-search study ({type(e).__name__}); use a fresh "
                              "--out, or remove the file.") from None
    return theirs


def _check_resume(config, out_dir, resume):
    journal = os.path.join(out_dir, JOURNAL)
    exists = os.path.isfile(journal)
    if not resume:
        if exists:
            raise CheckpointError(f"{out_dir} already holds a search ({JOURNAL}); pass --resume to continue it, or "
                                  "use a fresh --out.")
        if os.path.isdir(out_dir) and os.listdir(out_dir):
            raise ConfigError(f"{out_dir} is not empty and holds no search; pass an empty or new --out folder.")
        return False
    if not exists:
        raise CheckpointError(f"--resume was given but {out_dir!r} holds no search ({JOURNAL}) to continue; drop "
                              "--resume to start one, or pass the --out of the search to continue.")
    theirs = _stored_config(journal)
    mine = config.as_dict()
    k = checks.changed_setting(mine, theirs, _RESUMABLE_FIELDS)
    if k is not None:
        raise CheckpointError(f"{out_dir} holds a search with {k}={theirs.get(k)!r}, not {mine[k]!r}; pass the "
                              "same settings to resume it, or use a fresh --out.")
    return True


@dataclasses.dataclass
class Search:
    """A checked search, ready to run: what :func:`prepare` returns."""
    config: SearchConfig
    out_dir: str
    space: SearchSpace
    profile: object
    coster: SpecCoster
    train_split: object
    val_split: object
    fastest: dict
    resume: bool
    log: object

    def path(self, *parts):
        return os.path.join(self.out_dir, *parts)

    def cost(self, spec):
        """Estimated totals of ``spec`` on the profile at the deployment size (spec-level costing)."""
        return self.coster.estimate(spec, self.profile, policy=self.config.policy)["totals"]


def prepare(config, out_dir, resume=False, log=print):
    """Check everything a search needs, without writing anything, and return a :class:`Search`.

    In order: the config (:meth:`SearchConfig.check`: flags, base, proxy, profile, sizes), the
    output folder (writable; empty, or holding this same search with ``resume``), Optuna, the
    data (readable, at least two classes) and the budget, which must be at least the latency
    of the space's fastest candidate (costed here; its blocks stay cached for the search).
    """
    if not isinstance(config, SearchConfig):
        raise ConfigError(f"config is a {type(config).__name__}, not a SearchConfig; pass "
                          "kerasnets.pipelines.search.SearchConfig(...).")
    config.check()
    out_dir = checks.check_output_folder(out_dir, "output folder (--out)")
    resume = checks.boolean("resume", resume)
    if not callable(log):
        raise ConfigError(f"log={log!r} is not callable; pass a function of one string, e.g. print.")
    _optuna()
    resumed = _check_resume(config, out_dir, resume)
    tr, va = data_lib.load_train_test(config.dataset, tuple(config.train_size), config.train_subset,
                                      config.val_subset, config.seed)
    space = BASES[config.base]
    profile = hw_profiles.load_profile(config.profile)
    export_form = train.choose_forms(1, profile=profile)["export"]["group_conv"]
    coster = SpecCoster(tuple(config.input_size) + (3,), classes=tr.num_classes,
                        options=BuildOptions(group_conv=export_form))
    search = Search(config, out_dir, space, profile, coster, tr, va, {}, resumed, log)
    params, ms = space.fastest(lambda p: search.cost(space.spec(p, f"{space.name}_search_fastest"))["latency_ms"])
    search.fastest = {"params": params, "latency_ms": ms, "name": f"{space.name}_search_fastest"}
    if ms > config.budget_ms:
        h, w = config.input_size
        raise ConfigError(f"budget {config.budget_text()} is below the fastest candidate of the {config.base} space "
                          f"on {profile.name} at {h}x{w}, {search.fastest['name']} ({_describe(params)}) at "
                          f"{ms:.3f} ms ({1e3 / ms:.1f} fps); raise the budget to at least {ms:.3f} ms, or pick a "
                          "smaller --input_size or a faster profile.")
    return search


# ---------------------------------------------------------------------- phases ----

def _trial_name(space, number):
    return f"{space.name}_search_t{number}"


def estimator_loop(search):
    """Phase 1: NSGA-II trials until ``config.trials`` are complete; returns the study and the timings."""
    optuna = _optuna()
    from optuna.trial import TrialState
    config, space = search.config, search.space
    journal = search.path(JOURNAL)
    if search.resume:
        dropped = repair_journal(journal)
        if dropped:
            search.log(f"dropped a partial last line ({dropped} bytes) of {journal}")
    storage = _storage(journal)
    existing = 0
    if search.resume:
        existing = len(optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False))
    population = max(4, min(50, config.trials // 4))
    sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=config.seed + existing)
    study = optuna.create_study(study_name=STUDY, storage=storage, directions=["minimize", "maximize"],
                                sampler=sampler, load_if_exists=search.resume)
    if not search.resume:
        study.set_user_attr("config", config.as_dict())
        study.set_user_attr("budget_ms", config.budget_ms)
        study.set_user_attr("fastest", search.fastest)
        # The base model itself and the fastest candidate start the search (the latter is feasible by the check).
        study.enqueue_trial(space.reference_params, user_attrs={"seed_trial": space.reference})
        study.enqueue_trial(search.fastest["params"], user_attrs={"seed_trial": "fastest"})
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(t.number, state=TrialState.FAIL)  # left running by an interrupted process
    done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    timing = {"trials_run": 0, "loop_s": 0.0, "estimate_s_cached": [], "estimate_s_uncached": []}
    started = time.perf_counter()
    asks = 0
    while done < config.trials and asks < 10 * config.trials:  # the bound: a space of mostly refused candidates
        asks += 1
        trial = study.ask()
        params = space.sample(trial)
        misses = search.coster.stats["misses"]
        t0 = time.perf_counter()
        try:
            totals = search.cost(space.spec(params, _trial_name(space, trial.number)))
        except ModelConfigError as e:  # a candidate the family or the builder refuses (no valid channel split)
            trial.set_user_attr("error", str(e))
            study.tell(trial, state=TrialState.FAIL)
            continue
        dt = time.perf_counter() - t0
        timing["estimate_s_uncached" if search.coster.stats["misses"] > misses else "estimate_s_cached"].append(dt)
        latency = float(totals["latency_ms"])
        for key in ("latency_ms", "fps", "macs", "params"):
            trial.set_user_attr(key, float(totals[key]))
        trial.set_constraint("latency_budget", latency - config.budget_ms)
        study.tell(trial, [latency, float(totals["macs"])])
        done += 1
        timing["trials_run"] += 1
        if config.verbose and done % max(1, config.trials // 10) == 0:
            search.log(f"estimator trial {done}/{config.trials}")
    timing["loop_s"] = time.perf_counter() - started
    return study, timing


def _complete_candidates(search, study):
    from optuna.trial import TrialState
    out, seen = [], set()
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        params = search.space.resolve(t.params)
        key = json.dumps(params, sort_keys=True)
        row = {"trial": t.number, "name": _trial_name(search.space, t.number), "params": params,
               "latency_ms": t.user_attrs["latency_ms"], "fps": t.user_attrs["fps"], "macs": t.user_attrs["macs"],
               "params_count": t.user_attrs["params"],
               "feasible": t.user_attrs["latency_ms"] <= search.config.budget_ms,
               "duplicate": key in seen, "seed_trial": t.user_attrs.get("seed_trial", "")}
        seen.add(key)
        out.append(row)
    return out


def score_candidates(search, study, candidates):
    """Phase 2: the proxy score of each candidate, read back from the study where an earlier run scored it."""
    config = search.config
    batch = first_batch(config, search.train_split) if config.proxy == "zero_cost" else None
    for c in candidates:
        key = f"proxy_t{c['trial']}"
        stored = study.user_attrs.get(key)
        if stored is None:
            spec = search.space.spec(c["params"], c["name"])
            form = training_form(spec, search.coster)
            search.log(f"scoring {c['name']} ({config.proxy}): {c['latency_ms']:.3f} ms, {c['macs'] / 1e6:.1f} MMACs")
            if config.proxy == "train":
                stored = train_proxy(spec, config, search.train_split, search.val_split,
                                     search.path("candidates", f"t{c['trial']}"), form)
            else:
                stored = zero_cost_proxy(spec, config, batch, search.train_split.num_classes, form)
            study.set_user_attr(key, stored)
        c["proxy"] = stored
        c["score"] = stored["score"]
    return candidates


# ----------------------------------------------------------------------- results ----

@dataclasses.dataclass
class SearchResult:
    """What :func:`run_search` returns (``summary`` is ``front.json``)."""
    summary: dict
    chosen_spec: ModelSpec
    files: dict


def _plot(summary, path):
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    rows = summary["trials"]
    for feasible, colour, label in ((False, "0.7", "over budget"), (True, "tab:blue", "within budget")):
        pts = [(r["latency_ms"], r["macs"] / 1e6) for r in rows if r["feasible"] == feasible]
        if pts:
            left.scatter(*zip(*pts), s=10, color=colour, label=label)
    front = [(r["latency_ms"], r["macs"] / 1e6) for r in summary["estimator_front"]]
    if front:
        left.plot(*zip(*front), "-o", color="tab:orange", ms=4, label="estimator front")
    left.axvline(summary["budget_ms"], color="tab:red", ls="--", label=f"budget {summary['budget_ms']:.3f} ms")
    left.set_xlabel(f"estimated latency on {summary['profile']}, ms")
    left.set_ylabel("MMACs")
    left.set_title("estimator loop (NSGA-II)", fontsize=9)
    left.legend(fontsize=7)
    scored = summary["candidates"]
    proxy = summary["config"]["proxy"]
    ylabel = "test top-1" if proxy == "train" else "SNIP score"
    right.scatter([c["latency_ms"] for c in scored], [c["score"] for c in scored], color="tab:blue", label="scored")
    pf = summary["front"]
    right.plot([c["latency_ms"] for c in pf], [c["score"] for c in pf], "-o", color="tab:orange", label="front")
    ch = summary["chosen"]
    right.scatter([ch["latency_ms"]], [ch["score"]], marker="*", s=160, color="tab:red", label=f"chosen {ch['name']}")
    right.set_xlabel(f"estimated latency on {summary['profile']}, ms")
    right.set_ylabel(ylabel)
    if proxy == "zero_cost":
        right.set_yscale("log")
    right.set_title(f"{summary['config']['base']} candidates ranked by the {proxy} proxy", fontsize=9)
    right.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def _rate(values):
    return round(1e3 * float(np.mean(values)), 3) if values else None


def run_search(config, out_dir, resume=False, log=print):
    """Run (or, with ``resume``, continue) a search and write its outputs; returns a :class:`SearchResult`."""
    search = prepare(config, out_dir, resume, log)
    os.makedirs(out_dir, exist_ok=True)
    study, timing = estimator_loop(search)
    trials = _complete_candidates(search, study)
    feasible = [c for c in trials if c["feasible"] and not c["duplicate"]]
    est_front = [feasible[i] for i in pareto_front([(c["latency_ms"], c["macs"]) for c in feasible])]
    candidates = score_candidates(search, study, select_top(feasible, config.top_k))
    front = [candidates[i] for i in pareto_front([(c["latency_ms"], c["score"]) for c in candidates])]
    chosen = max(candidates, key=lambda c: (c["score"], -c["latency_ms"]))
    spec = search.space.spec(chosen["params"], chosen["name"])
    stats = search.coster.stats
    summary = {
        "config": config.as_dict(), "profile": search.profile.name, "budget_ms": config.budget_ms,
        "budget_fps": 1e3 / config.budget_ms, "input_size": list(config.input_size),
        "fastest": search.fastest, "trials": trials, "feasible_trials": sum(c["feasible"] for c in trials),
        "estimator_front": est_front, "candidates": candidates, "front": front, "chosen": chosen,
        "proxy_method": chosen["proxy"]["method"],
        "timing": {"trials_run_now": timing["trials_run"], "loop_s": round(timing["loop_s"], 3),
                   "candidates_per_s": round(timing["trials_run"] / timing["loop_s"], 1) if timing["loop_s"] else None,
                   "estimate_ms_cached": _rate(timing["estimate_s_cached"]),
                   "estimate_ms_uncached": _rate(timing["estimate_s_uncached"]),
                   "block_builds": stats["misses"], "block_hits": stats["hits"],
                   "ms_per_block_build": (round(1e3 * stats["build_s"] / stats["misses"], 1) if stats["misses"]
                                          else None),
                   "full_builds": stats["full_builds"]},
        "files": {"journal": JOURNAL, "front_json": FRONT_JSON, "front_png": FRONT_PNG, "chosen_spec": CHOSEN_SPEC},
    }
    export_form = search.coster.options.group_conv
    save_spec(spec, search.path(CHOSEN_SPEC), {"group_conv": export_form})
    _plot(summary, search.path(FRONT_PNG))
    write_json(search.path(FRONT_JSON), summary, default=float)
    return SearchResult(summary, spec, {k: search.path(v) for k, v in summary["files"].items()})


def format_summary(summary):
    """A few lines for the terminal: budget, timings, the scored candidates and the chosen one."""
    t = summary["timing"]
    lines = [f"search {summary['config']['base']} on {summary['profile']} at {summary['input_size'][0]}x"
             f"{summary['input_size'][1]}: budget {summary['budget_ms']:.3f} ms ({summary['budget_fps']:.1f} fps); "
             f"{len(summary['trials'])} trials, {summary['feasible_trials']} within budget",
             f"estimator loop: {t['trials_run_now']} trials in {t['loop_s']:.2f} s ({t['candidates_per_s']} "
             f"candidates/s); estimate {t['estimate_ms_cached']} ms cached, {t['estimate_ms_uncached']} ms with new "
             f"blocks ({t['block_builds']} blocks built, {t['ms_per_block_build']} ms each)",
             f"proxy: {summary['proxy_method']}",
             f"{'candidate':28s} {'ms':>8s} {'fps':>7s} {'MMACs':>8s} {'score':>10s}"]
    for c in summary["candidates"]:
        mark = " *" if c["name"] == summary["chosen"]["name"] else ""
        lines.append(f"{c['name']:28s} {c['latency_ms']:8.3f} {c['fps']:7.1f} {c['macs'] / 1e6:8.1f} "
                     f"{c['score']:10.4g}{mark}")
    return "\n".join(lines)
