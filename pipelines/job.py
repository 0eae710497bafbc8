"""The end-to-end job: a model name and a dataset in, verified and measured deployment artifacts out.

    data -> float training -> int8 (QAT by default, or PTQ) -> deploy -> Edge TPU partition
    (float head on the CPU) -> float32 / int8 / partitioned TFLite artifacts -> verification and
    accuracy on the test split -> host benchmark -> estimate on every hardware profile ->
    ``summary.json`` and ``report.md`` with plots.

Every step writes its result to ``<out>/steps/<step>.json`` when it finishes, and training
checkpoints every epoch, so running the same job again continues where an interrupted run
stopped: finished steps are read back, not redone.
"""
import dataclasses
import json
import os
import shutil
import sys
import time

import numpy as np

import kerasnets
from kerasnets import forms as kn_forms
from kerasnets.export import cost, hostfit, partition, profiles, report, runtime, tflite
from kerasnets.host import cpu_name
from kerasnets.io import atomic_write, plain
from kerasnets.spec import load_spec
from kerasnets.pipelines import data as data_lib
from kerasnets.pipelines import checks, evaluate, qat, train
from kerasnets.pipelines.errors import CheckpointError, ConfigError

QUANTIZATION = ("qat", "ptq")
STEPS = ("train_float", "quantize", "export", "partition", "verify", "benchmark", "estimate", "report")
# Fields that may change between an interrupted run and its resumption without invalidating it.
_RESUMABLE_FIELDS = ("verbose",)


@dataclasses.dataclass
class JobConfig:
    """Settings of one end-to-end run; stored as ``job.json`` and checked on resume."""
    model: str = "mobilenet_v2_035"
    dataset: str = "fashion_mnist"
    input_size: tuple = (32, 32)
    overrides: dict = dataclasses.field(default_factory=dict)
    weights: str = ""                # a checkpoint to fine-tune from (see pipelines.train.TrainConfig.weights)
    spec: str = ""                   # a spec JSON built instead of the zoo model (see TrainConfig.spec)
    epochs: int = 3
    qat_epochs: int = 1
    quantization: str = "qat"
    batch_size: int = 128
    learning_rate: float = 0.05
    train_subset: int = 0            # 0 = all training images
    val_subset: int = 0              # 0 = the whole test split
    holdout_fraction: float = 0.2    # test share of a user folder without a test/ sub-folder
    calibration_count: int = 200
    partition_profile: str = "edgetpu_usb"
    partition_policy: str = "float_head"
    bench_runs: int = 100
    threads: int = 1
    seed: int = 0
    verbose: int = 2

    def check(self):
        """Check every field's type and range, the model name, the profile (an NPU profile: the job partitions
        for it) and the policy, and read ``weights`` when given; :class:`ConfigError` in one sentence. Returns self."""
        self.spec = checks.text("spec", self.spec or "", empty_ok=True,
                                fix="pass the path of a spec JSON, or '' for the zoo model")
        if self.spec:
            # the file parsed and its fields checked (one sentence each); impossible channel counts are refused
            # when the model is built, before any training (check_model), not here: this runs for every config
            self.model = load_spec(self.spec, check=False)[0].name
        self.model = checks.text("model", self.model, fix="pass a zoo model name (kerasnets-zoo lists them)")
        if not self.spec and self.model not in kerasnets.list_models():
            raise ConfigError(f"model {self.model!r} is not in the zoo; pick one of kerasnets.list_models() "
                              "(kerasnets-zoo lists them).")
        self.dataset = checks.text("dataset", self.dataset,
                                   fix="pass fashion_mnist, a folder of class sub-folders or a TFRecord path")
        self.input_size = train.input_size_pair(self.input_size)
        if min(self.input_size) < 8:
            raise ConfigError(f"input_size={self.input_size} must be (height, width), each at least 8.")
        if not isinstance(self.overrides, dict):
            raise ConfigError(f"overrides={self.overrides!r} is not a dict; pass get_model options as a dict "
                              "(--overrides: a JSON object such as '{\"width\": 0.5}').")
        if self.weights is None:
            self.weights = ""
        self.weights = checks.text("weights", self.weights, empty_ok=True)
        self.quantization = checks.choice("quantization", self.quantization, QUANTIZATION)
        for name in ("epochs", "batch_size", "calibration_count", "bench_runs", "threads"):
            setattr(self, name, checks.integer(name, getattr(self, name), 1))
        self.qat_epochs = checks.integer("qat_epochs", self.qat_epochs, 0)
        if self.quantization == "qat" and self.qat_epochs < 1:
            raise ConfigError(f"qat_epochs={self.qat_epochs} must be at least 1 with QAT; pass quantization='ptq' "
                              "to skip quantization-aware training.")
        self.learning_rate = checks.number("learning_rate", self.learning_rate, above=0,
                                           fix="pass a positive learning rate such as 0.05")
        for name in ("train_subset", "val_subset"):
            setattr(self, name, checks.integer(name, getattr(self, name), 0, fix="pass 0 (all) or a positive count"))
        self.holdout_fraction = checks.number("holdout_fraction", self.holdout_fraction, above=0, below=1,
                                              fix="pass e.g. 0.2")
        self.seed = checks.seed("seed", self.seed)
        self.verbose = checks.integer("verbose", self.verbose, 0, 2)
        self.partition_profile = checks.text("partition_profile", self.partition_profile,
                                             fix="pass a profile name such as edgetpu_usb (--profile)")
        if os.path.isdir(self.partition_profile):
            raise ConfigError(f"profile {self.partition_profile!r} (--profile) is a folder; pass a profile name "
                              f"({', '.join(npu_profiles())}) or a profile JSON file.")
        profile = profiles.load_profile(self.partition_profile)
        if not profile.is_npu:
            raise ConfigError(f"profile {self.partition_profile!r} (--profile) is a CPU profile, and the job "
                              f"partitions the model for an NPU; use one of {', '.join(npu_profiles())} "
                              "(every profile, CPUs included, is estimated anyway).")
        if not isinstance(self.partition_policy, str) or self.partition_policy not in partition.POLICIES:
            raise ConfigError(f"partition policy {self.partition_policy!r} (--policy) is unknown; use one of "
                              f"{', '.join(partition.POLICIES)}.")
        self.train_config()  # its checks; with weights it reads the checkpoint, refused before any training
        return self

    def train_config(self):
        return train.TrainConfig(model=self.model, input_size=self.input_size, overrides=dict(self.overrides),
                                 weights=self.weights, spec=self.spec,
                                 epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate,
                                 seed=self.seed, verbose=self.verbose, tensorboard=True).check()


# ------------------------------------------------------------------ state ----

class _Run:
    """The run folder: config, finished steps, and the values later steps share (loaded lazily)."""

    def __init__(self, config, out_dir, log):
        self.config, self.out, self.log = config, out_dir, log
        self.resumed = False
        self.calibrate_host = True   # quick-calibrate a host_cpu profile fitted elsewhere (run_job's calibrate_host)
        self._cache = {}

    def path(self, *parts):
        return os.path.join(self.out, *parts)

    def step_file(self, step):
        return self.path("steps", f"{step}.json")

    def done(self, step):
        if os.path.isfile(self.step_file(step)):
            with open(self.step_file(step)) as f:
                return json.load(f)
        return None

    def finish(self, step, result):
        atomic_write(self.step_file(step), json.dumps(result, indent=1, default=plain) + "\n")
        return result

    def cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # Data -----------------------------------------------------------------
    def splits(self):
        return self.cached("splits", lambda: load_splits(self.config))

    def normalization(self):
        return self.config.train_config().normalization

    def calibration(self):
        tr, _ = self.splits()
        count = min(self.config.calibration_count, len(tr))
        return self.cached("calibration", lambda: data_lib.calibration_images(
            tr, self.config.input_size, count, self.normalization(), seed=self.config.seed))

    def test_images(self):
        """The whole test split, preprocessed like training (N, h, w, 3), and its labels."""
        def make():
            _, va = self.splits()
            images = va.images if va.images.ndim == 4 else va.images[..., None]
            x = np.concatenate([data_lib.preprocess(images[i:i + 1024], self.config.input_size,
                                                    self.normalization()).numpy()
                                for i in range(0, len(va), 1024)])
            return x, va.labels
        return self.cached("test_images", make)

    # Forms ------------------------------------------------------------------
    def forms(self):
        """The group-conv forms (:func:`kerasnets.pipelines.train.choose_forms`): training on this device, export for
        ``partition_profile``. Training itself records the form it used (steps/train_float.json)."""
        def make():
            model = self._cache.pop("checked_model", None)
            if model is None:
                tr, _ = self.splits()
                model = train.check_model(self.config.train_config(), tr.num_classes)
            return train.choose_forms(len(kn_forms.grouped_convs(model)), self.config.overrides,
                                      profile=profiles.load_profile(self.config.partition_profile))
        return self.cached("forms", make)

    def export_form(self):
        """The group-conv form of every exported artifact (None: the model has no grouped convolution)."""
        return self.forms()["export"]["group_conv"]

    def in_export_form(self, model):
        """``model`` (float, any form) carried into the export form, same weights."""
        form = self.export_form()
        return kn_forms.to_form(model, form) if form else model

    def build_model(self):
        """A fresh float model (random, or ``weights``) in the export form."""
        tr, _ = self.splits()
        return self.in_export_form(train.default_model_fn(self.config.train_config(), tr.num_classes)())

    # Models -----------------------------------------------------------------
    def float_model(self):
        """The trained float model, in the export form (the weights file loads into either form)."""
        def make():
            model = self.build_model()
            kn_forms.load_weights(model, self.path("float", "final.weights.h5"))  # saved in the training form
            return model
        return self.cached("float_model", make)

    def qat_model(self):
        def make():
            model = qat.quantize_model(self.float_model())
            model.load_weights(self.path("qat", "final.weights.h5"))
            return model
        return self.cached("qat_model", make)

    def int8_source(self):
        """The Keras model the int8 artifact is converted from (QAT model, or the float model for PTQ)."""
        return self.qat_model() if self.config.quantization == "qat" else self.float_model()

    def partition_source(self):
        """A float model holding the weights the int8 artifact was made from (QAT-tuned under QAT)."""
        def make():
            if self.config.quantization == "ptq":
                return self.float_model()
            return qat.float_weights_from_qat(self.qat_model(), self.build_model())
        return self.cached("partition_source", make)

    def partition_model(self):
        """The deployed (BN-folded) form of :meth:`partition_source`: what the partition plan names."""
        return self.cached("partition_model", lambda: kerasnets.deploy(self.partition_source()))


def npu_profiles():
    """Names of the NPU profiles (the ones a job can partition for)."""
    names = []
    for name in profiles.list_profiles():
        try:
            if profiles.load_profile(name).is_npu:
                names.append(name)
        except profiles.ProfileError:
            continue
    return names


def load_splits(config):
    """(train, test) splits of ``config.dataset``; a folder without ``test/`` gets a seeded hold-out."""
    return data_lib.load_train_test(config.dataset, tuple(config.input_size), config.train_subset,
                                    config.val_subset, config.seed, config.holdout_fraction)


def _read_job(out_dir):
    """The ``config`` stored in ``out_dir/job.json`` (None when there is none)."""
    path = os.path.join(out_dir, "job.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            theirs = json.load(f)["config"]
        if not isinstance(theirs, dict):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"{path} is unreadable or not a kerasnets-run job file; pass --restart to discard "
                              "the run folder, or use another --out.") from None
    return theirs


def _check_resume(config, out_dir, restart):
    """Refuse a run folder that holds something else (read-only); True when it holds this job to resume."""
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, "job.json")):
        raise ConfigError(f"{out_dir} is not empty and holds no kerasnets-run job; pass an empty or new --out folder.")
    if restart:
        return False
    theirs = _read_job(out_dir)
    if theirs is None:
        return False
    mine_cmp = json.loads(json.dumps(dataclasses.asdict(config)))
    # A field the stored job predates held its default then.
    defaults = json.loads(json.dumps(dataclasses.asdict(JobConfig())))
    theirs = {**{k: v for k, v in defaults.items() if k not in theirs}, **theirs}
    k = checks.changed_setting(mine_cmp, theirs, _RESUMABLE_FIELDS)
    if k is not None:
        raise ConfigError(f"{out_dir} holds a run with {k}={theirs.get(k)!r}, not {mine_cmp[k]!r}; "
                          "use another --out (or --name), or --restart to discard it.")
    return True


def _start(config, out_dir, restart):
    """The first write of a job, after every check: discard the folder (``restart``), then write job.json."""
    if restart and os.path.isdir(out_dir):
        shutil.rmtree(out_dir)
    atomic_write(os.path.join(out_dir, "job.json"),
                 json.dumps({"config": dataclasses.asdict(config), "command": " ".join(sys.argv)}, indent=1) + "\n")


def prepare(config, out_dir, restart=False, log=print, calibration_exact=False):
    """Check everything a job needs, without writing anything, and return its run state.

    In order: the config (:meth:`JobConfig.check`), the run folder (writable; empty, or holding
    this same job unless ``restart``), the data (readable, at least two classes), the
    calibration count (refused when larger than the training split if ``calibration_exact``,
    else capped) and the model itself (built with the overrides, and its activations at
    ``batch_size`` checked against this machine's memory). A command refused here leaves no
    trace, so its corrected form is never refused because of it.
    """
    if not isinstance(config, JobConfig):
        raise ConfigError(f"config is a {type(config).__name__}, not a JobConfig; pass pipelines.job.JobConfig(...).")
    config.check()
    out_dir = checks.check_output_folder(out_dir, "run folder (--out)")
    restart = checks.boolean("restart", restart)
    if not callable(log):
        raise ConfigError(f"log={log!r} is not callable; pass a function of one string, e.g. print.")
    resumed = _check_resume(config, out_dir, restart)
    run = _Run(config, out_dir, log)
    tr, _ = run.splits()
    if calibration_exact and config.calibration_count > len(tr):
        raise ConfigError(f"calibration_count={config.calibration_count} (--calibration_count) is more than the "
                          f"{len(tr)} training images; pass at most {len(tr)}, or more training images.")
    run._cache["checked_model"] = train.check_model(config.train_config(), tr.num_classes)  # bad overrides, memory
    run.forms()
    run.resumed = resumed
    return run


# ------------------------------------------------------------------ steps ----

def _train_float(run):
    tr, va = run.splits()
    # fit trains in the form that is fast here (train.choose_forms); the float model is carried to the export form.
    result = train.fit(run.config.train_config(), tr, va, run.path("float"), resume=True)
    run._cache["float_model"] = run.in_export_form(result.model)
    return {"metrics": result.metrics, "weights": "float/final.weights.h5", "train_images": len(tr),
            "test_images": len(va), "classes": list(tr.class_names), "forms": result.forms["training"]}


def _quantize(run):
    c = run.config
    if c.quantization == "ptq":
        return {"method": "ptq", "calibration_images": len(run.calibration()), "forms": _quantize_form(run)}
    tr, va = run.splits()
    stage = dataclasses.replace(c.train_config(), epochs=c.qat_epochs, learning_rate=c.learning_rate / 10,
                                warmup_epochs=0.0)
    float_model = run.float_model()  # in the export form: QAT tunes the model that is exported
    form = _quantize_form(run)
    if form["group_conv"]:
        run.log(f"  QAT in the {form['group_conv']} group-conv form: {form['reason']}")
    result = train.fit(stage, tr, va, run.path("qat"), resume=True,
                       model_fn=lambda: qat.quantize_model(float_model, calibration=run.calibration()))
    run._cache["qat_model"] = result.model
    return {"method": "qat", "metrics": result.metrics, "weights": "qat/final.weights.h5",
            "learning_rate": stage.learning_rate, "forms": form}


def _quantize_form(run):
    """The group-conv form the int8 model is made in (the export form), and why."""
    export = run.forms()["export"]
    if export["group_conv"] is None:
        return dict(export)
    if run.config.quantization == "ptq":
        return {"group_conv": export["group_conv"], "reason": "PTQ converts the trained float model carried "
                "into the export form"}
    reason = ("QAT fine-tunes the model that is exported, and its fake-quant points depend on the form, so it "
              "runs in the export form")
    if export["group_conv"] == "native" and not train.gpu_visible():
        reason += f" (on this CPU the native form trains {train.NATIVE_CPU_SLOWDOWN} slower than split)"
    return {"group_conv": export["group_conv"], "reason": reason}


def _export(run):
    c = run.config
    tr, _ = run.splits()
    images = run.calibration()
    out = {}
    for mode, model in (("float32", run.float_model()), ("int8", run.int8_source())):
        content = tflite.convert(model, mode, representative_data=images if mode == "int8" else None,
                                 calibration_count=len(images))
        name = f"artifacts/{c.model}_{mode}.tflite"
        manifest = tflite.write_artifact(run.path(name), content, c.model, mode, normalization=run.normalization(),
                                         labels=list(tr.class_names),
                                         extra={"quantization": c.quantization if mode == "int8" else None,
                                                "calibration_images": len(images) if mode == "int8" else 0})
        out[mode] = {"file": name, "size_bytes": manifest["size_bytes"], "sha256": manifest["sha256"]}
    return out


def _partition(run):
    c = run.config
    model = run.partition_model()
    plan = partition.partition_for_profile(model, c.partition_profile, policy=c.partition_policy)
    files = partition.export_partition(model, plan, run.path("partitioned"), run.calibration(),
                                       calibration_count=len(run.calibration()))
    totals = plan.estimate["totals"]
    return {"profile": plan.profile, "policy": plan.policy, "precision": plan.precision, "cut": plan.cut,
            "npu_layers": len(plan.npu_layers), "cpu_layers": len(plan.cpu_layers),
            "npu_ops": totals.get("npu_ops"), "cpu_ops": totals.get("cpu_ops"),
            "estimate": {k: totals.get(k) for k in ("latency_ms", "fps", "npu_ms", "cpu_ms", "transfer_ms",
                                                     "param_cache_used_bytes", "param_streamed_bytes")},
            "files": [{"file": f"partitioned/{f['file']}", "device": f["device"], "mode": f["mode"],
                       "size_bytes": os.path.getsize(run.path("partitioned", f["file"]))} for f in files],
            "plan": "partitioned/plan.json", "log": "partitioned/partition.log",
            "weights": "qat-tuned float weights, NPU part calibrated post-training"
            if c.quantization == "qat" else "float weights, NPU part calibrated post-training"}


def _verify(run):
    c = run.config
    x, labels = run.test_images()
    sample = x[:64]
    exported = run.done("export")
    result = {"samples": int(len(sample)), "checks": {}, "accuracy": {}}
    for mode, model in (("float32", run.float_model()), ("int8", run.int8_source())):
        path = run.path(exported[mode]["file"])
        run.log(f"  verifying {mode} against Keras on {len(sample)} test images")
        result["checks"][mode] = runtime.verify(model, path, sample, mode)
        run.log(f"  {mode}: top-1 over {len(x)} test images")
        result["accuracy"][mode] = _top1(runtime.run_batch(runtime.load_interpreter(path, threads=c.threads), x),
                                         labels)
    runner = partition.ChainedRunner(run.path("partitioned"), threads=c.threads)
    parts = partition.split_model(run.partition_model(), _plan_parts(run))
    expected = partition.run_parts_keras(parts, sample)
    label = "partitioned (int8 NPU part + float32 CPU part)"
    check = dict(runtime.check_outputs(expected, runner(sample), "int8", what=f"the {label} pair"), mode=label)
    result["checks"]["partitioned"] = check
    run.log(f"  partitioned: top-1 over {len(x)} test images")
    result["accuracy"]["partitioned"] = _top1(runner(x), labels)
    result["accuracy"]["keras_float"] = evaluate.accuracy_from_scores(
        run.float_model().predict(x, batch_size=256, verbose=0), labels)["top1"]
    result["test_images"] = int(len(x))
    return result


def _plan_parts(run):
    with open(run.path("partitioned", "plan.json")) as f:
        return json.load(f)["parts"]


def _top1(scores, labels):
    return evaluate.accuracy_from_scores(scores.reshape(len(labels), -1), labels)["top1"]


def _benchmark(run):
    c = run.config
    exported = run.done("export")
    paths = {mode: run.path(exported[mode]["file"]) for mode in ("float32", "int8")}
    run.log(f"  interleaved float32 / int8, {c.bench_runs} runs each, {c.threads} thread(s)")
    timed = runtime.compare(paths, runs=c.bench_runs, warmup=5, threads=c.threads)
    runner = partition.ChainedRunner(run.path("partitioned"), threads=c.threads)
    image = run.test_images()[0][:1]
    chained = runtime.time_function(lambda: runner(image), runs=c.bench_runs, warmup=5)
    out = {mode: {k: timed[mode][k] for k in ("median_ms", "p90_ms", "mean_ms", "runs", "size_bytes", "ops", "kernels")}
           for mode in paths}
    out["partitioned"] = dict(chained, note="both parts run on the host CPU in LiteRT, with the host's "
                                            "quantize/dequantize at the boundary")
    out["int8_speedup"] = timed["float32"]["median_ms"] / timed["int8"]["median_ms"]
    out["threads"] = c.threads
    out["cpu"] = cpu_name()
    return out


def _estimate(run):
    deployed = kerasnets.deploy(run.float_model())
    by_form = {}
    out = {}
    # The host CPU is estimated with a profile for this machine: host_cpu as found when it was fitted on this CPU
    # with these threads and this LiteRT, else a full fit shipped for this CPU, else a quick calibration (cached per
    # machine; export.hostfit).
    host = hostfit.host_profile(threads=run.config.threads, allow_calibration=run.calibrate_host,
                                log=lambda m: run.log(f"  host_cpu: {m}"))
    for name in profiles.list_profiles():
        profile = host.profile if name == "host_cpu" else profiles.load_profile(name)
        # Each profile is estimated with its grouped convs in the form it takes (the one its export would use).
        form = train.choose_forms(run.forms()["grouped_convs"], profile=profile)["export"]["group_conv"]
        if form not in by_form:
            by_form[form] = kn_forms.to_form(deployed, form) if form else deployed
        model = by_form[form]
        precisions = ("int8", "float32") if not profile.is_npu else (profile.default_precision(),)
        for precision in precisions:
            res = cost.estimate(model, profile, precision=precision)
            t = res["totals"]
            key = name if len(precisions) == 1 else f"{name}_{precision}"
            out[key] = {"profile": name, "precision": precision, "latency_ms": t["latency_ms"], "fps": t["fps"],
                        "mac_utilization": t["mac_utilization"], "macs": t["macs"],
                        "npu_ops": t.get("npu_ops"), "cpu_ops": t.get("cpu_ops"), "group_conv": form}
            if not profile.is_npu:
                out[key]["fitted_on"] = (profile.measured_on or {}).get("processor")
            if name == "host_cpu":
                out[key]["host_profile"] = {"source": host.source, "path": host.path, "notes": host.messages,
                                            "measured_on": profile.measured_on}
            if name == run.config.partition_profile:
                out[key]["top_layers"] = [
                    {k: getattr(r, k) for k in ("name", "kind", "placement", "latency_ms", "bound", "reason")}
                    for r in sorted(res["layers"], key=lambda r: -r.latency_ms)[:12]]
    return {"profiles": out}


def _report(run):
    summary = build_summary(run)
    report.write_report(summary, run.out)
    return {"summary": "summary.json", "report": "report.md", "plots": summary["plots"]}


def build_summary(run):
    """``summary.json``: what the job made and measured, in one object."""
    c = run.config
    steps = {s: run.done(s) for s in STEPS[:-1]}
    ver, bench, est, part = steps["verify"], steps["benchmark"], steps["estimate"], steps["partition"]
    sizes = {m: steps["export"][m]["size_bytes"] for m in ("float32", "int8")}
    sizes["partitioned"] = sum(f["size_bytes"] for f in part["files"])
    return {
        "name": os.path.basename(os.path.normpath(run.out)), "model": c.model, "dataset": c.dataset,
        "input_size": list(c.input_size), "quantization": c.quantization, "config": dataclasses.asdict(c),
        "train_images": steps["train_float"]["train_images"], "test_images": ver["test_images"],
        "accuracy": {k: ver["accuracy"][k] for k in ("float32", "int8", "partitioned")},
        "accuracy_keras_float": ver["accuracy"]["keras_float"],
        "verification": ver["checks"],
        "host_latency_ms": {k: bench[k]["median_ms"] for k in ("float32", "int8", "partitioned")},
        "host_benchmark": bench,
        "estimate": est["profiles"],
        "partition": part,
        "sizes_bytes": sizes,
        "artifacts": {"float32": steps["export"]["float32"]["file"], "int8": steps["export"]["int8"]["file"],
                      "partitioned": [f["file"] for f in part["files"]]},
        "training": {"float": steps["train_float"]["metrics"], "quantize": steps["quantize"]},
        "forms": _forms_summary(run, steps),
        "plots": {"accuracy_latency": "plots/accuracy_latency.png", "layer_cost": "plots/layer_cost.png"},
        "seconds": {s: steps[s].get("_seconds") for s in STEPS[:-1]},
    }


def _forms_summary(run, steps):
    """Which group-conv form each stage used, and why (training as recorded by the training step)."""
    forms = run.forms()
    training = steps["train_float"].get("forms") or dict(forms["training"], note="not recorded by the training "
                                                                                 "step (an older run)")
    quantize = steps["quantize"].get("forms") or _quantize_form(run)
    return {"grouped_convs": forms["grouped_convs"], "training": training, "quantization": quantize,
            "export": dict(forms["export"], profile=run.config.partition_profile),
            "weights": "the same weights in every form (kerasnets.forms.to_form carries them)"}


_FUNCTIONS = {"train_float": _train_float, "quantize": _quantize, "export": _export, "partition": _partition,
              "verify": _verify, "benchmark": _benchmark, "estimate": _estimate, "report": _report}


def run_job(config, out_dir, restart=False, log=print, calibration_exact=False, calibrate_host=True):
    """Run (or resume) the end-to-end job into ``out_dir``; returns the summary dict.

    Args:
      config: a :class:`JobConfig`.
      out_dir: the run folder (``runs/<name>``); an existing one with the same settings is
        resumed, one with other settings is refused.
      restart: discard whatever ``out_dir`` holds first (after every check passed).
      log: where progress lines go.
      calibration_exact: refuse a ``calibration_count`` larger than the training split (the
        script does when --calibration_count is given) instead of calibrating on the whole split.
      calibrate_host: when the host_cpu profile was fitted on another CPU (or with other threads or
        another LiteRT), the estimate step quick-calibrates it here once and caches it
        (:func:`kerasnets.export.hostfit.host_profile`); False estimates with the profile as found.

    Everything is checked first (:func:`prepare`); nothing is written before that passes.
    """
    run = prepare(config, out_dir, restart, log, calibration_exact)
    run.calibrate_host = bool(calibrate_host)
    resumed = run.resumed
    _start(config, out_dir, restart)
    log(f"kerasnets-run: {config.model} on {config.dataset} at {config.input_size[0]}x{config.input_size[1]}, "
        f"{config.quantization.upper()}, into {out_dir}" + (" (resuming)" if resumed else ""))
    for i, step in enumerate(STEPS, 1):
        if step != "report" and run.done(step) is not None:
            log(f"[{i}/{len(STEPS)}] {step}: done earlier, read back")
            continue
        log(f"[{i}/{len(STEPS)}] {step} ...")
        started = time.time()
        result = _FUNCTIONS[step](run)
        result["_seconds"] = round(time.time() - started, 1)
        run.finish(step, result)
        log(f"[{i}/{len(STEPS)}] {step}: {result['_seconds']} s")
    with open(run.path("summary.json")) as f:
        return json.load(f)
