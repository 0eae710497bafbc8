"""`kerasnets-export --model=NAME --input_size=HxW --mode=float32|float16|dynamic|int8 --out=DIR|FILE.tflite
[--calibration=fashion_mnist|DIR|random] [--weights=FILE] [--classes=N] [--io_type=int8|uint8|float32] [--json]`

Exports one TFLite artifact (after the deploy transforms, batch 1) with its manifest beside it,
and verifies it against the Keras model in LiteRT before reporting success. ``--out`` (alias
``--output_dir``) is the output folder, where the artifact is ``<model>_<mode>.tflite``; a
path ending in ``.tflite`` names the artifact itself.
"""
import os

import numpy as np
from absl import flags

from export import runtime, tflite
from export.cli.zoo_model import build_model
from kerasnets import datasets
from kerasnets.cli import define_flags, print_json, run_main
from kerasnets.errors import UsageError

FLAGS = flags.FLAGS
define_flags("model", "input_size", "classes", "weights", "out", "calibration_count", "io_type", "seed", "json")
flags.DEFINE_enum("mode", "int8", ["float32", "float16", "dynamic", "int8"], "Conversion mode.")
flags.DEFINE_string("calibration", "fashion_mnist",
                    "Calibration images for int8: fashion_mnist, a folder of class sub-folders, or random.")


def calibration(source, size, count, seed):
    """(images, normalization) for int8 calibration: real images read by :mod:`kerasnets.datasets` and
    preprocessed like training, or with 'random' uniform noise in [-1, 1] (no normalization)."""
    if source == "random":
        return np.random.default_rng(seed).uniform(-1, 1, (count,) + size + (3,)).astype("float32"), None
    split = datasets.load_split(source, "train", image_size=size)
    return datasets.calibration_images(split, size, count, seed=seed), datasets.DEFAULT_NORMALIZATION


def artifact_path(out, model, mode):
    """``out`` when it names a .tflite file, else ``out/<model>_<mode>.tflite``."""
    if not out:
        raise UsageError("--out is required; pass the output folder (or a FILE.tflite), e.g. --out=exported.")
    if out.endswith(".tflite"):
        return out
    if os.path.splitext(out.rstrip("/"))[1] and not os.path.isdir(out):
        raise UsageError(f"--out={out!r} looks like a file that is not .tflite; it must name a .tflite file or a "
                         "folder, e.g. --out=model.tflite or --out=exported/.")
    return os.path.join(out, f"{model}_{mode}.tflite")


def main(argv):
    path = artifact_path(FLAGS.out, FLAGS.model, FLAGS.mode)
    model, size = build_model(FLAGS.model, FLAGS.input_size, FLAGS.classes, {})
    if FLAGS.weights:
        model.load_weights(FLAGS.weights)
    images, normalization = calibration(FLAGS.calibration, tuple(size), FLAGS.calibration_count, FLAGS.seed)
    content = tflite.convert(model, FLAGS.mode, representative_data=images,
                             calibration_count=FLAGS.calibration_count, io_type=FLAGS.io_type)
    report = runtime.verify(model, content, images[:32], FLAGS.mode)
    manifest = tflite.write_artifact(path, content, FLAGS.model, FLAGS.mode, normalization=normalization,
                                     extra={"verification": report, "calibration": FLAGS.calibration})
    if FLAGS.json:
        print_json({"out": path, "manifest": manifest})
    else:
        print(f"wrote {path} ({manifest['size_bytes']} bytes, sha256 {manifest['sha256'][:12]}); "
              f"verified on {report['samples']} images: max abs error {report['max_abs_error']:.3g} "
              f"({report['within_error_share']:.0%} of images within {report['tolerance']['max_abs_error']:g}), "
              f"top-1 agreement {report['top1_agreement']:.3f}")
    return 0


def run():
    run_main(main)


if __name__ == "__main__":
    run()
