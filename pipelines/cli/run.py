"""kerasnets-run: the end-to-end job, from a model name and a dataset to a report.

    kerasnets-run                                     (defaults: mobilenet_v2_035 on Fashion-MNIST, ~10 min)
    kerasnets-run --model=axspine_small --dataset=/data/flowers --input_size=64x64 --epochs=5 --out=runs/flowers
    kerasnets-run --quantization=ptq --json

``--out`` (alias ``--output_dir``) is the run folder; ``--policy`` defaults to ``float_head`` here.

Trains in float, quantizes (QAT by default, PTQ with --quantization=ptq), partitions for the
Edge TPU with the float head on the CPU, exports float32 / int8 / partitioned TFLite, verifies
and benchmarks them, estimates every hardware profile and writes runs/<name>/summary.json and
report.md. Running the same command again resumes an interrupted run.
"""
import json
import os
import sys

from absl import flags

from export.runtime import VerificationError
from kerasnets.cli import define_flags, run_main, verbosity
from pipelines import job
from pipelines.cli import common, fail, user_errors

define_flags("model", "dataset", "input_size", "overrides", "weights", "epochs", "qat_epochs", "batch_size",
             "learning_rate", "train_subset", "val_subset", "calibration_count", "profile", "policy", "runs",
             "threads", "seed", "out", "json", "verbose")
flags.DEFINE_enum("quantization", "qat", ["qat", "ptq"], "How the int8 model is made.")
flags.DEFINE_string("name", None, "Run name: the folder runs/<name> (default: <model>_<dataset>).")
flags.DEFINE_bool("restart", False, "Discard what the run folder holds and start over.")

FLAGS = flags.FLAGS


def job_config():
    """The :class:`pipelines.job.JobConfig` the flags describe."""
    return job.JobConfig(model=FLAGS.model, dataset=FLAGS.dataset, input_size=common.input_hw(),
                         overrides=common.overrides(), weights=FLAGS.weights or "", epochs=FLAGS.epochs,
                         qat_epochs=FLAGS.qat_epochs, quantization=FLAGS.quantization, batch_size=FLAGS.batch_size,
                         learning_rate=FLAGS.learning_rate, train_subset=FLAGS.train_subset,
                         val_subset=FLAGS.val_subset, calibration_count=FLAGS.calibration_count,
                         partition_profile=FLAGS.profile, partition_policy=FLAGS.policy or "float_head",
                         bench_runs=FLAGS.runs, threads=FLAGS.threads, seed=FLAGS.seed, verbose=verbosity())


def run_dir(config):
    if FLAGS.out:
        return FLAGS.out
    name = FLAGS.name or f"{config.model}_{os.path.basename(os.path.normpath(config.dataset.split(':')[0]))}"
    return os.path.join("runs", name)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected argument {argv[1]!r}; every option is a --flag.")
    try:
        config = job_config()
        out = run_dir(config)
        summary = job.run_job(config, out, restart=FLAGS.restart,
                              log=(lambda m: print(m, flush=True)) if not FLAGS.json else
                              (lambda m: print(m, file=sys.stderr, flush=True)))
    except VerificationError as e:
        fail(f"verification failed: {e}")
    except user_errors() as e:
        fail(str(e))
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
