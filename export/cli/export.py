"""`kerasnets-export --model=NAME --input_size=HxW --mode=float32|float16|dynamic|int8 --out=FILE.tflite
[--calibration=fashion_mnist|DIR|random] [--weights=FILE] [--classes=N] [--io_type=int8|uint8|float32] [--json]`

Exports one TFLite artifact (after the deploy transforms, batch 1) with its manifest beside it,
and verifies it against the Keras model in LiteRT before reporting success.
"""
import numpy as np
from absl import flags

from kerasnets.cli import print_json, run_main

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Registry model name (see kerasnets-zoo).")
flags.DEFINE_string("input_size", "", "Input size HEIGHTxWIDTH (default: the model's published size).")
flags.DEFINE_enum("mode", "int8", ["float32", "float16", "dynamic", "int8"], "Conversion mode.")
flags.DEFINE_string("out", None, "Output .tflite path (a .manifest.json is written beside it).")
flags.DEFINE_string("calibration", "fashion_mnist",
                    "Calibration images for int8: fashion_mnist, a folder of class sub-folders, or random.")
flags.DEFINE_integer("calibration_count", 100, "Calibration images used for int8.", lower_bound=1)
flags.DEFINE_string("weights", None, "Keras weights file to load (default: random initialisation).")
flags.DEFINE_integer("classes", 10, "Classifier width.", lower_bound=1)
flags.DEFINE_enum("io_type", None, ["int8", "uint8", "float32"], "Input/output type of an int8 model.")
flags.DEFINE_integer("seed", 0, "Seed of the calibration sample.")
flags.DEFINE_bool("json", False, "Print one JSON object.")


def _calibration(source, size, count, seed):
    """Real images (preprocessed like training) or, with 'random', uniform noise in [-1, 1]."""
    if source == "random":
        return np.random.default_rng(seed).uniform(-1, 1, (count,) + size + (3,)).astype("float32"), None
    from pipelines import data  # data loading only, never training code
    split = data.load_split(source, "train", image_size=size)
    return data.calibration_images(split, size, count, seed=seed), data.DEFAULT_NORMALIZATION


def main(argv):
    from export import runtime, tflite
    from export.cli.zoo_model import build_model
    if not FLAGS.out or not FLAGS.out.endswith(".tflite"):
        raise ValueError(f"--out={FLAGS.out!r} must name a .tflite file, e.g. --out=model.tflite.")
    model, size = build_model(FLAGS.model, FLAGS.input_size, FLAGS.classes, {})
    if FLAGS.weights:
        model.load_weights(FLAGS.weights)
    images, normalization = _calibration(FLAGS.calibration, tuple(size), FLAGS.calibration_count, FLAGS.seed)
    content = tflite.convert(model, FLAGS.mode, representative_data=images,
                             calibration_count=FLAGS.calibration_count, io_type=FLAGS.io_type)
    report = runtime.verify(model, content, images[:32], FLAGS.mode)
    manifest = tflite.write_artifact(FLAGS.out, content, FLAGS.model, FLAGS.mode, normalization=normalization,
                                     extra={"verification": report, "calibration": FLAGS.calibration})
    if FLAGS.json:
        print_json({"out": FLAGS.out, "manifest": manifest})
    else:
        print(f"wrote {FLAGS.out} ({manifest['size_bytes']} bytes, sha256 {manifest['sha256'][:12]}); "
              f"verified on {report['samples']} images: max abs error {report['max_abs_error']:.3g} "
              f"({report['within_error_share']:.0%} of images within {report['tolerance']['max_abs_error']:g}), "
              f"top-1 agreement {report['top1_agreement']:.3f}")
    return 0


def run():
    run_main(main)


if __name__ == "__main__":
    run()
