"""kerasnets-run: the end-to-end job, from a model name and a dataset to a report.

    kerasnets-run                                     (defaults: mobilenet_v2_035 on Fashion-MNIST, ~10 min)
    kerasnets-run --model=axspine_small --dataset=/data/flowers --input_size=64x64 --epochs=5 --out=runs/flowers
    kerasnets-run --quantization=ptq --json

``--out`` (alias ``--output_dir``) is the run folder; ``--policy`` defaults to ``float_head`` here.

Trains in float, quantizes (QAT by default, PTQ with --quantization=ptq), partitions for the
Edge TPU with the float head on the CPU, exports float32 / int8 / partitioned TFLite, verifies
and benchmarks them, estimates every hardware profile and writes runs/<name>/summary.json and
report.md. Running the same command again resumes an interrupted run. When the host_cpu profile was
fitted on another CPU (or thread count, or LiteRT version), the estimate step first quick-calibrates it
on this machine (export.hostfit, about a minute, once: cached in $XDG_CACHE_HOME/kerasnets or
~/.cache/kerasnets), so the report's host estimate is for this machine; --no_calibrate skips that.
"""
import json
import os
import sys

from absl import flags

from kerasnets.export.runtime import VerificationError
from kerasnets.cli import define_flags, model_flags, run_main, verbosity
from kerasnets.errors import UsageError
from kerasnets.pipelines import job
from kerasnets.pipelines.cli import common

define_flags("model", "spec", "dataset", "input_size", "overrides", "weights", "epochs", "qat_epochs", "batch_size",
             "learning_rate", "train_subset", "val_subset", "calibration_count", "profile", "policy", "runs",
             "threads", "seed", "out", "json", "verbose")
flags.DEFINE_enum("quantization", "qat", ["qat", "ptq"], "How the int8 model is made.")
flags.DEFINE_string("name", None, "Run name: the folder runs/<name> (default: <model>_<dataset>).")
flags.DEFINE_bool("restart", False, "Discard what the run folder holds and start over.")
flags.DEFINE_bool("no_calibrate", False, "Estimate the host CPU with the host_cpu profile as found, even when it was "
                  "fitted on another CPU (by default such a profile is quick-calibrated here once, about a minute, "
                  "and cached in ~/.cache/kerasnets).")

FLAGS = flags.FLAGS


def job_config():
    """The :class:`kerasnets.pipelines.job.JobConfig` the flags describe."""
    name, spec = model_flags()
    return job.JobConfig(model=name, spec=spec or "", dataset=FLAGS.dataset, input_size=common.input_hw(),
                         overrides=common.overrides(), weights=FLAGS.weights or "", epochs=FLAGS.epochs,
                         qat_epochs=FLAGS.qat_epochs, quantization=FLAGS.quantization, batch_size=FLAGS.batch_size,
                         learning_rate=FLAGS.learning_rate, train_subset=FLAGS.train_subset,
                         val_subset=FLAGS.val_subset, calibration_count=FLAGS.calibration_count,
                         partition_profile=FLAGS.profile, partition_policy=FLAGS.policy or "float_head",
                         bench_runs=FLAGS.runs, threads=FLAGS.threads, seed=FLAGS.seed, verbose=verbosity())


def run_dir(config):
    """``--out``, or runs/<--name> (default name: <model>_<dataset>); a --name must be one plain folder name."""
    if FLAGS.out:
        return FLAGS.out
    if FLAGS.name is not None:
        name = FLAGS.name
        if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
            raise UsageError(f"--name={name!r} is not a plain folder name; pass a name without '/' (the run goes "
                             "to runs/<name>), or --out for another place.")
    else:
        name = f"{config.model}_{os.path.basename(os.path.normpath(config.dataset.split(':')[0]))}"
    return os.path.join("runs", name)


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected argument {argv[1]!r}; every option is a --flag.")
    if FLAGS.quantization == "ptq" and FLAGS["qat_epochs"].present:
        raise UsageError(f"--qat_epochs={FLAGS.qat_epochs} applies to --quantization=qat only; drop it with "
                         "--quantization=ptq.")
    config = job_config()
    out = run_dir(config)
    log = (lambda m: print(m, flush=True)) if not FLAGS.json else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        # run_job checks everything (flags, folder, data, model, profile) before job.json or any other write.
        summary = job.run_job(config, out, restart=FLAGS.restart, log=log,
                              calibration_exact=FLAGS["calibration_count"].present,
                              calibrate_host=not FLAGS.no_calibrate)
    except VerificationError as e:
        raise VerificationError(f"verification failed: {e}") from None
    if FLAGS.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        acc, lat = summary["accuracy"], summary["host_latency_ms"]
        print(f"top-1: float32 {acc['float32']:.4f}, int8 {acc['int8']:.4f}, partitioned {acc['partitioned']:.4f}; "
              f"host median ms: float32 {lat['float32']:.3f}, int8 {lat['int8']:.3f}, partitioned "
              f"{lat['partitioned']:.3f}")
        print(f"report: {os.path.join(out, 'report.md')}")


def run():
    run_main(main)


if __name__ == "__main__":
    run()
