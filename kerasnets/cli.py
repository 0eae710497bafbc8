"""Shared pieces of the absl command-line scripts: the shared flags, size parsing and the exit-2 boundary.

Every flag that more than one script takes is defined here, once (:data:`SHARED_FLAGS`),
so a name means the same thing with the same default in every script; a script asks for
the ones it uses with :func:`define_flags`. Defining is idempotent, so several scripts can
be imported into one process (the in-process CLI tests do). Flags only one script takes
stay in that script.
"""
import json
import re
import sys
import traceback

from absl import app, flags

from kerasnets.errors import KerasnetsError, UsageError, path_error
from kerasnets.io import plain
from kerasnets.spec import load_spec

FLAGS = flags.FLAGS
# The shared flags define_flags makes belong to the script that asks for them (its --help lists them).
flags.disclaim_key_flags()

#: The size the training scripts (kerasnets-train, -quantize, -run) build models at when
#: ``--input_size`` is unset: Fashion-MNIST's 28x28 rounded up to the zoo's stride 32.
TRAINING_INPUT_SIZE = (32, 32)

# name -> (kind, default, help, extra keyword arguments, aliases)
SHARED_FLAGS = {
    "model": ("string", "mobilenet_v2_035", "Zoo model name (kerasnets-zoo lists them).", {}, ()),
    "spec": ("string", None, "A spec JSON to build instead of --model (kerasnets-retarget --out, kerasnets-search; "
             "kerasnets.spec.save_spec); its stored build options apply.", {}, ()),
    "input_size": ("string", None, "Input size HEIGHTxWIDTH (or S for square). Unset: the model's published size "
                   "(kerasnets-zoo) in the export scripts; 32x32 in the training scripts (train, quantize, run).",
                   {}, ()),
    "overrides": ("string", "{}", "JSON dict of get_model overrides, e.g. '{\"width\": 0.5}'.", {}, ()),
    "classes": ("integer", 1000, "Classifier width of a model built without a dataset.", {"lower_bound": 1}, ()),
    "shuffle": ("string", None, "ShuffleNet channel shuffle form: low_rank or 5d.", {}, ()),
    "group_conv": ("string", None, "Group conv form: native or split.", {}, ()),
    "weights": ("string", None, "Weights to start from: a Keras weights file, or a checkpoint to import (timm / "
                "torchvision .safetensors or .pth, a Hugging Face snapshot folder, a Keras Applications .h5, "
                "hf://timm/NAME); unset: random initialisation.", {}, ()),
    "dataset": ("string", "fashion_mnist", "fashion_mnist[:folder], a folder of class sub-folders (with train/ and "
                "test/, or a seeded held-out share is used), or a TFRecord path with {split}.", {}, ("data",)),
    "train_subset": ("integer", 0, "Use only this many training images (0 = all).", {"lower_bound": 0}, ()),
    "val_subset": ("integer", 0, "Use only this many test images (0 = all).", {"lower_bound": 0}, ()),
    "epochs": ("integer", 3, "Float training epochs.", {}, ()),
    "qat_epochs": ("integer", 1, "Epochs of quantization-aware training (of each QAT stage).", {}, ()),
    "batch_size": ("integer", 128, "Global batch size.", {}, ()),
    "learning_rate": ("float", 0.05, "Peak float learning rate (cosine with warm-up; QAT uses a tenth).", {}, ()),
    "calibration_count": ("integer", 200, "Images for int8 calibration (real training images where the script has "
                          "a dataset: more than it holds is refused; the default is capped to it).",
                          {"lower_bound": 1}, ()),
    "io_type": ("string", None, "Input/output type of an int8 model: int8, uint8 or float32 (unset: int8; checked by "
                "the conversion, export.tflite.IO_TYPES).", {}, ()),
    "profile": ("string", "edgetpu_usb", "Hardware profile name or path to a profile JSON.", {}, ()),
    "policy": ("string", None, "Partition policy: max_npu, float_head or min_latency (export.placement.POLICIES). "
               "Unset: max_npu (the Edge TPU compiler's placement) in kerasnets-estimate and -partition; float_head "
               "in kerasnets-run.", {}, ()),
    "out": ("string", None, "Output folder (kerasnets-export: a FILE.tflite names the artifact itself; "
            "kerasnets-retarget: the SPEC.json file to write).", {},
            ("output_dir",)),
    "threads": ("integer", 1, "LiteRT CPU threads.", {"lower_bound": 1}, ()),
    "runs": ("integer", 100, "Timed invokes per model (after the warm-up).", {"lower_bound": 1}, ()),
    "seed": ("integer", 0, "Seed of shuffling, augmentation, initialisation and calibration sampling.",
             {"lower_bound": 0, "upper_bound": 2**32 - 1}, ()),
    "json": ("bool", False, "Print one JSON object on stdout.", {}, ()),
    "verbose": ("integer", None, "Keras fit verbosity (0 silent, 1 progress bar, 2 one line per epoch; "
                "default 1 on a terminal, 2 in a log, 0 with --json).", {"lower_bound": 0, "upper_bound": 2}, ()),
}


def define_flags(*names):
    """Define the shared flags ``names`` (see :data:`SHARED_FLAGS`); a flag already defined is kept."""
    for name in names:
        kind, default, help_text, extra, aliases = SHARED_FLAGS[name]
        if name in FLAGS:  # defined by another script imported into this process: make it a key flag here too
            flags.declare_key_flag(name)
            continue
        getattr(flags, f"DEFINE_{kind}")(name, default, help_text, **extra)
        for alias in aliases:
            flags.DEFINE_alias(alias, name)


def model_flags():
    """``(name, spec_path)`` that ``--model`` / ``--spec`` name: ``(FLAGS.model, None)``, or with ``--spec``
    ``(the spec's model name, path)`` after the file is read and checked (one sentence on a bad file).
    Both flags given: UsageError."""
    spec = FLAGS.spec if "spec" in FLAGS else None
    if not spec:
        return FLAGS.model, None
    if FLAGS["model"].present:
        raise UsageError(f"--model={FLAGS.model} and --spec={spec} both name the model; pass one of them.")
    return load_spec(spec)[0].name, spec


def verbosity():
    """``--verbose``, or when unset: Keras's progress bar on a terminal, a line per epoch in a log, none with
    ``--json`` (stdout is the JSON)."""
    if FLAGS.verbose is not None:
        return FLAGS.verbose
    if FLAGS.json:
        return 0
    return 1 if sys.stdout.isatty() else 2


def parse_size(text, flag="input_size"):
    """'HxW' (or a single 'S' for square) -> (height, width); ValueError names the flag."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text or ""))
    if not m:
        raise UsageError(f"--{flag}={text!r} is not a size; write it as HEIGHTxWIDTH, e.g. 224x224.")
    h = int(m.group(1))
    w = int(m.group(2) or h)
    if h < 1 or w < 1:
        raise UsageError(f"--{flag}={text!r} must be positive.")
    return h, w


def print_json(obj):
    """Print one JSON object (numpy scalars made plain)."""
    print(json.dumps(obj, indent=1, sort_keys=True, default=plain))


def user_errors():
    """Exception classes that are the user's fault: printed as one sentence, exit code 2. Every
    package's user errors (``ModelConfigError``, ``DataError``, ``ExportError``, ``PipelineError``...)
    derive from :class:`kerasnets.errors.KerasnetsError`; anything else is a bug and keeps its trace."""
    return (KerasnetsError,)


def explain(exc):
    """The one-sentence message for an exception the boundary reports with exit 2, or None for a bug.

    User errors print as they are; an OSError that names its file (raised where the path was not
    known to the project) and running out of memory are the user's environment, not a bug.
    """
    if isinstance(exc, KerasnetsError):
        return str(exc)
    # TensorFlow's out-of-memory error, named without importing TensorFlow here.
    if isinstance(exc, MemoryError) or type(exc).__name__ == "ResourceExhaustedError":
        return ("ran out of memory; use a smaller --input_size, --batch_size or model, or a machine with more "
                "memory.")
    if isinstance(exc, OSError) and exc.filename is not None and exc.errno is not None:
        return str(path_error(exc.filename, exc, "use"))
    return None


HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def _script_help(main):
    """Make absl's ``--help`` describe the script: its module docstring and its flags (a console-script
    wrapper is ``__main__``, which absl would otherwise describe, with no flags)."""
    module = sys.modules.get(main.__module__)
    main_module = sys.modules.get("__main__")
    if module is None or module is main_module:
        return
    if main_module is not None and not main_module.__doc__:
        main_module.__doc__ = module.__doc__
    for flag in FLAGS.get_key_flags_for_module(module.__name__):
        FLAGS.register_key_flag_for_module(sys.argv[0], flag)


def run_main(main, positional=False):
    """``app.run`` around ``main``, turning user errors into one sentence and exit code 2.

    Positional arguments are refused unless ``positional`` (e.g. the files of kerasnets-bench).
    User errors (:func:`explain`) print one sentence and exit 2; a bug prints its trace and exits 1.
    ``--help`` lists the script's flags and exits 0; an unknown or malformed flag exits 2.
    """
    ran = []

    def guarded(argv):
        ran.append(True)
        if len(argv) > 1 and not positional:
            print(f"error: unexpected argument {argv[1]!r}; every option is a --flag.", file=sys.stderr)
            return 2
        try:
            return main(argv)
        except KeyboardInterrupt:
            print("interrupted.", file=sys.stderr)
            return 130
        except Exception as e:  # noqa: BLE001 (the one boundary: sorts user errors from bugs)
            message = explain(e)
            if message is None:
                traceback.print_exc()
                print(f"error: this is a bug in kerasnets ({type(e).__name__}); please report it with the command "
                      "and the trace above.", file=sys.stderr)
                return 1
            print(f"error: {message}", file=sys.stderr)
            return 2
    _script_help(main)
    try:
        app.run(guarded)
    except SystemExit as e:
        # absl exits 1 after --help and on an unknown or malformed flag; the scripts promise 0 and 2.
        if e.code == 1 and not ran:
            sys.exit(0 if any(a.split("=")[0] in HELP_FLAGS for a in sys.argv[1:]) else 2)
        raise
