"""kerasnets-run: the end-to-end job, from a model name and a dataset to a report.

    kerasnets-run                                     (defaults: mobilenet_v2_035 on Fashion-MNIST, ~10 min)
    kerasnets-run --model=axspine_small --dataset=/data/flowers --input_size=64x64 --epochs=5 --out=runs/flowers
    kerasnets-run --quantization=ptq --json

Trains in float, quantizes (QAT by default, PTQ with --quantization=ptq), partitions for the
Edge TPU with the float head on the CPU, exports float32 / int8 / partitioned TFLite, verifies
and benchmarks them, estimates every hardware profile and writes runs/<name>/summary.json and
report.md. Running the same command again resumes an interrupted run.
"""
import json
import os
import sys

from absl import flags

from pipelines.cli import fail, user_errors

flags.DEFINE_string("model", "mobilenet_v2_035", "Zoo model name (kerasnets-zoo lists them).")
flags.DEFINE_string("dataset", "fashion_mnist", "fashion_mnist[:folder], a folder of class sub-folders (with "
                    "train/ and test/, or a held-out share is used), or a TFRecord path with {split}.")
flags.DEFINE_alias("data", "dataset")
flags.DEFINE_string("input_size", "32x32", "Input size HEIGHTxWIDTH the images are resized to.")
flags.DEFINE_string("overrides", "{}", "JSON dict of get_model overrides, e.g. '{\"width\": 0.5}'.")
flags.DEFINE_integer("epochs", 3, "Float training epochs.")
flags.DEFINE_integer("qat_epochs", 1, "Quantization-aware training epochs (with --quantization=qat).")
flags.DEFINE_enum("quantization", "qat", ["qat", "ptq"], "How the int8 model is made.")
flags.DEFINE_integer("batch_size", 128, "Global batch size.")
flags.DEFINE_float("learning_rate", 0.05, "Peak float learning rate (QAT uses a tenth).")
flags.DEFINE_integer("train_subset", 0, "Use only this many training images (0 = all).")
flags.DEFINE_integer("val_subset", 0, "Use only this many test images (0 = all).")
flags.DEFINE_integer("calibration_count", 200, "Real training images for int8 calibration.")
flags.DEFINE_string("profile", "edgetpu_usb", "NPU profile the model is partitioned for.")
flags.DEFINE_enum("policy", "float_head", ["max_npu", "float_head", "min_latency"], "Partition policy.")
flags.DEFINE_integer("runs", 500, "Timed runs per artifact on the host (as in kerasnets-bench).")
flags.DEFINE_integer("threads", 1, "LiteRT threads for accuracy and timing.")
flags.DEFINE_integer("seed", 0, "Seed of shuffling, augmentation, initialisation and calibration.")
flags.DEFINE_string("name", None, "Run name: the folder runs/<name> (default: <model>_<dataset>).")
flags.DEFINE_string("out", None, "Run folder (overrides --name).")
flags.DEFINE_alias("output_dir", "out")
flags.DEFINE_bool("restart", False, "Discard what the run folder holds and start over.")
flags.DEFINE_bool("json", False, "Print summary.json on stdout at the end.")
flags.DEFINE_integer("verbose", None, "Keras fit verbosity (0 silent, 1 progress bar, 2 one line per epoch; "
                     "default 1 on a terminal, 2 in a log, 0 with --json).")

FLAGS = flags.FLAGS


def job_config():
    """The :class:`pipelines.job.JobConfig` the flags describe."""
    from kerasnets.cli import parse_size
    from pipelines.errors import ConfigError
    from pipelines.job import JobConfig
    try:
        size = parse_size(FLAGS.input_size)
        overrides = json.loads(FLAGS.overrides)
    except ValueError as e:
        raise ConfigError(str(e) if "input_size" in str(e) else
                          f"--overrides={FLAGS.overrides!r} is not JSON; write e.g. '{{\"width\": 0.5}}'.") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"--overrides={FLAGS.overrides!r} is not a JSON object; write e.g. '{{\"width\": 0.5}}'.")
    return JobConfig(model=FLAGS.model, dataset=FLAGS.dataset, input_size=size, overrides=overrides,
                     epochs=FLAGS.epochs, qat_epochs=FLAGS.qat_epochs, quantization=FLAGS.quantization,
                     batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate, train_subset=FLAGS.train_subset,
                     val_subset=FLAGS.val_subset, calibration_count=FLAGS.calibration_count,
                     partition_profile=FLAGS.profile, partition_policy=FLAGS.policy, bench_runs=FLAGS.runs,
                     threads=FLAGS.threads, seed=FLAGS.seed,
                     verbose=FLAGS.verbose if FLAGS.verbose is not None else _default_verbosity())


def _default_verbosity():
    """Keras progress bar on a terminal, a line per epoch in a log; none with --json (stdout is the JSON)."""
    if FLAGS.json:
        return 0
    return 1 if sys.stdout.isatty() else 2


def run_dir(config):
    if FLAGS.out:
        return FLAGS.out
    name = FLAGS.name or f"{config.model}_{os.path.basename(os.path.normpath(config.dataset.split(':')[0]))}"
    return os.path.join("runs", name)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected argument {argv[1]!r}; every option is a --flag.")
    from export.partition import PartitionError
    from export.profiles import ProfileError
    from export.runtime import VerificationError
    from pipelines import job
    try:
        config = job_config()
        out = run_dir(config)
        summary = job.run_job(config, out, restart=FLAGS.restart,
                              log=(lambda m: print(m, flush=True)) if not FLAGS.json else
                              (lambda m: print(m, file=sys.stderr, flush=True)))
    except user_errors() + (ProfileError, PartitionError) as e:
        fail(str(e))
    except VerificationError as e:
        fail(f"verification failed: {e}")
    if FLAGS.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        acc, lat = summary["accuracy"], summary["host_latency_ms"]
        print(f"top-1: float32 {acc['float32']:.4f}, int8 {acc['int8']:.4f}, partitioned {acc['partitioned']:.4f}; "
              f"host median ms: float32 {lat['float32']:.3f}, int8 {lat['int8']:.3f}, partitioned "
              f"{lat['partitioned']:.3f}")
        print(f"report: {os.path.join(out, 'report.md')}")


def run():
    from kerasnets.cli import run_main
    run_main(main)


if __name__ == "__main__":
    run()
