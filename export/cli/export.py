"""`kerasnets-export --model=NAME --input_size=HxW --mode=float32|float16|dynamic|int8 --out=DIR|FILE.tflite
[--calibration=fashion_mnist|DIR|random] [--weights=FILE] [--classes=N] [--io_type=int8|uint8|float32] [--json]`

Exports one TFLite artifact (after the deploy transforms, batch 1) with its manifest beside it,
and verifies it against the Keras model in LiteRT before reporting success. ``--out`` (alias
``--output_dir``) is the output folder, where the artifact is ``<model>_<mode>.tflite``; a
path ending in ``.tflite`` names the artifact itself.

Every input is checked before any work: the flags, the model at its size (memory), the
weights, the output path (writable, free space for the artifact) and the calibration source.
"""
import contextlib
import glob
import os

import numpy as np
from absl import flags

from kerasnets.export import runtime, tflite
from kerasnets.export.cli import zoo_model
from kerasnets import datasets
from kerasnets.cli import define_flags, model_flags, print_json, run_main
from kerasnets.errors import UsageError

FLAGS = flags.FLAGS
define_flags("model", "spec", "input_size", "classes", "weights", "out", "calibration_count", "io_type", "seed", "json")
flags.DEFINE_enum("mode", "int8", ["float32", "float16", "dynamic", "int8"], "Conversion mode.")
flags.DEFINE_string("calibration", "fashion_mnist",
                    "Calibration images for int8: fashion_mnist, a folder of class sub-folders, or random.")

# Images the verification runs through Keras and LiteRT (the first of the calibration images).
VERIFY_IMAGES = 32


def calibration(source, size, count, seed):
    """(images, normalization) for int8 calibration: real images read by :mod:`kerasnets.datasets` and
    preprocessed like training, or with 'random' uniform noise in [-1, 1] (no normalization)."""
    if source == "random":
        return np.random.default_rng(seed).uniform(-1, 1, (count,) + size + (3,)).astype("float32"), None
    split = datasets.load_split(source, "train", image_size=size)
    return datasets.calibration_images(split, size, count, seed=seed), datasets.DEFAULT_NORMALIZATION


def check_calibration_source(source):
    """Refuse (UsageError / DataError) a --calibration source that cannot be read, before any work."""
    if not source:
        raise UsageError("--calibration is empty; pass random, fashion_mnist or a folder of class sub-folders.")
    if source == "random":
        return
    if source == "fashion_mnist" or source.startswith("fashion_mnist:"):
        datasets.find_fashion_mnist(source.split(":", 1)[1] if ":" in source else None)
        return
    path = source.replace("{split}", "train")
    if os.path.isdir(path):
        return
    if path.endswith((".tfrecord", ".tfrecords", ".tfrec")) or "*" in path:
        if not glob.glob(path):
            raise UsageError(f"--calibration={source!r} matches no file; pass existing .tfrecord files.")
        return
    what = "is a file, not a folder" if os.path.isfile(path) else "does not exist"
    raise UsageError(f"--calibration={source!r} {what}; pass random, fashion_mnist, a folder of class "
                     "sub-folders or a .tfrecord path.")


def artifact_path(out, model, mode):
    """``out`` when it names a .tflite file, else ``out/<model>_<mode>.tflite``."""
    if not out:
        raise UsageError("--out is required; pass the output folder (or a FILE.tflite), e.g. --out=exported.")
    if out.endswith(".tflite") and not os.path.isdir(out):
        return out
    if os.path.splitext(out.rstrip("/"))[1] and not os.path.isdir(out):
        raise UsageError(f"--out={out!r} looks like a file that is not .tflite; it must name a .tflite file or a "
                         "folder, e.g. --out=model.tflite or --out=exported/.")
    return os.path.join(out, f"{model}_{mode}.tflite")


def check_out(out, path):
    """Refuse an --out that cannot take the artifact and its manifest (see :mod:`kerasnets.export.cli.zoo_model`)."""
    if path == out:  # --out names the artifact itself
        zoo_model.check_output_file(path, "out", "FILE.tflite")
    else:
        zoo_model.check_output_folder(out, "out", files=(os.path.basename(path),))
    zoo_model.check_output_file(tflite.manifest_path(path), "out", "FILE.tflite")


def main(argv):
    if FLAGS.io_type is not None:
        zoo_model.check_choice(FLAGS.io_type, tflite.IO_TYPES, "io_type")
        if FLAGS.mode != "int8" and FLAGS.io_type != "float32":
            raise UsageError(f"--io_type={FLAGS.io_type} needs --mode=int8 (integer input/output); drop --io_type "
                             f"or use --io_type=float32 with --mode={FLAGS.mode}.")
    name, spec = model_flags()
    path = artifact_path(FLAGS.out, name, FLAGS.mode)
    check_out(FLAGS.out, path)
    check_calibration_source(FLAGS.calibration)
    size = zoo_model.model_size(name, FLAGS.input_size, spec)
    zoo_model.check_images_fit_memory(FLAGS.calibration_count, size)
    zoo_model.check_weights_file(FLAGS.weights)
    model, size = zoo_model.build_model_with_weights(name, FLAGS.input_size, FLAGS.classes, {}, spec=spec,
                                                     weights=FLAGS.weights,
                                                     batch=min(VERIFY_IMAGES, FLAGS.calibration_count))
    zoo_model.check_space(path, zoo_model.artifact_bytes(model.count_params(), FLAGS.mode), "out")
    # A second export to the same path is refused now, not after its conversion (where the folder
    # does not exist yet, write_artifact serialises the writers instead).
    folder = os.path.dirname(os.path.abspath(path))
    with tflite.artifact_lock(path) if os.path.isdir(folder) else contextlib.nullcontext():
        images, normalization = calibration(FLAGS.calibration, tuple(size), FLAGS.calibration_count, FLAGS.seed)
        content = tflite.convert(model, FLAGS.mode, representative_data=images,
                                 calibration_count=FLAGS.calibration_count, io_type=FLAGS.io_type)
        report = runtime.verify(model, content, images[:VERIFY_IMAGES], FLAGS.mode)
        manifest = zoo_model.writing(path, lambda: tflite.write_artifact(
            path, content, name, FLAGS.mode, normalization=normalization,
            extra={"verification": report, "calibration": FLAGS.calibration,
                   **({"spec": os.path.abspath(spec)} if spec else {})}))
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
