"""The catalogue of bad inputs of kerasnets-train, kerasnets-quantize and kerasnets-run.

Every case runs the script in this process (:func:`tests.helpers.run_cli`) and checks what the
user sees and what is left behind: exit code 2; one line on stderr, ``error: <sentence>`` (or
absl's own flag-parsing message for a flag it cannot parse or bound); the bad value named in
it; no trace; nothing written anywhere under the test folder (data, outputs, the working
directory: the listing is compared, so no job.json, no run folder); and no training or
calibration (Keras ``fit`` and the TFLite conversion are replaced by traps that turn any call
into a bug, exit 1). The data is a few tiny PNGs per class made here, so no case waits on
Fashion-MNIST or a model larger than mobilenet_v2_035 at 32x32.

A second part checks the same refusals through the library (``TrainConfig``, ``JobConfig``,
the loaders, ``fit``, ``run_job``, PTQ / QAT entry points): the project's errors, not
TypeError / AttributeError, and nothing written.
"""
import json
import os
import shutil
import tempfile
from unittest import mock

import numpy as np
import pytest
from absl.testing import parameterized

from kerasnets.export import tflite as tflite_export
from kerasnets import datasets
from kerasnets.backend import keras
from kerasnets.errors import DataError, KerasnetsError
from kerasnets.pipelines import data, job, ptq, qat, staged, train
from kerasnets.pipelines.errors import ConfigError
from tests.helpers import load_case, run_cli, write_checkpoint

TRAIN, QUANTIZE, RUN = "kerasnets.pipelines.cli.train", "kerasnets.pipelines.cli.quantize", "kerasnets.pipelines.cli.run"
FLAG_PARSING = "FATAL Flags parsing error"

# (name, script, arguments, words the message must hold). In the arguments {data} is the folder of
# prepared datasets and files, {out} a fresh (missing) output folder of the case. Every script gets
# a dataset and --out unless the case sets them, so the case's own flag is the only bad input.
CASES = [
    # ------------------------------------------------------------------ kerasnets-train
    ("train_misspelled_flag", TRAIN, ["--epochz=3"], "epochz"),
    ("train_epochs_not_a_number", TRAIN, ["--epochs=abc"], "--epochs=abc"),
    ("train_negative_train_subset", TRAIN, ["--train_subset=-5"], "--train_subset=-5"),
    ("train_negative_val_subset", TRAIN, ["--val_subset=-1"], "--val_subset=-1"),
    ("train_zero_epochs", TRAIN, ["--epochs=0"], "epochs=0"),
    ("train_negative_epochs", TRAIN, ["--epochs=-2"], "epochs=-2"),
    ("train_zero_batch", TRAIN, ["--batch_size=0"], "batch_size=0"),
    ("train_negative_batch", TRAIN, ["--batch_size=-8"], "batch_size=-8"),
    ("train_zero_learning_rate", TRAIN, ["--learning_rate=0"], "learning_rate=0"),
    ("train_negative_learning_rate", TRAIN, ["--learning_rate=-0.1"], "learning_rate=-0.1"),
    ("train_nan_learning_rate", TRAIN, ["--learning_rate=nan"], "learning_rate=nan"),
    ("train_infinite_learning_rate", TRAIN, ["--learning_rate=inf"], "learning_rate=inf"),
    ("train_negative_weight_decay", TRAIN, ["--weight_decay=-1"], "weight_decay=-1"),
    ("train_nan_warmup", TRAIN, ["--warmup_epochs=nan"], "warmup_epochs=nan"),
    ("train_label_smoothing_above_1", TRAIN, ["--label_smoothing=1.5"], "label_smoothing=1.5"),
    ("train_ema_decay_1", TRAIN, ["--ema_decay=1"], "ema_decay=1"),
    ("train_negative_seed", TRAIN, ["--seed=-1"], "--seed=-1"),
    ("train_verbose_5", TRAIN, ["--verbose=5"], "--verbose=5"),
    ("train_unknown_optimizer", TRAIN, ["--optimizer=rmsprop"], "rmsprop"),
    ("train_input_size_text", TRAIN, ["--input_size=abc"], "'abc'"),
    ("train_input_size_zero", TRAIN, ["--input_size=0"], "'0'"),
    ("train_input_size_half", TRAIN, ["--input_size=32x"], "'32x'"),
    ("train_input_size_too_small", TRAIN, ["--input_size=16"], "16"),
    ("train_input_size_beyond_memory", TRAIN, ["--input_size=60000x60000"], "60000x60000"),
    ("train_batch_beyond_memory", TRAIN, ["--batch_size=100000000"], "batch 100000000"),
    ("train_fashion_mnist_size_beyond_memory", TRAIN, ["--dataset=fashion_mnist", "--train_subset=64",
                                                       "--input_size=30000x30000"], "30000x30000"),
    ("train_overrides_not_an_object", TRAIN, ["--overrides=[1]"], "[1]"),
    ("train_overrides_bad_json", TRAIN, ["--overrides={width: 0.5"], "{width: 0.5"),
    ("train_overrides_unknown_option", TRAIN, ['--overrides={"bogus": 1}'], "bogus"),
    ("train_overrides_width_text", TRAIN, ['--overrides={"width": "a"}'], "width"),
    ("train_overrides_negative_bn_epsilon", TRAIN, ['--overrides={"bn_epsilon": -1}'], "bn_epsilon"),
    ("train_overrides_bn_momentum_2", TRAIN, ['--overrides={"bn_momentum": 2}'], "bn_momentum"),
    ("train_unknown_model", TRAIN, ["--model=nope_net"], "nope_net"),
    ("train_dataset_missing_folder", TRAIN, ["--dataset={data}/no_such_folder"], "no_such_folder"),
    ("train_dataset_empty_folder", TRAIN, ["--dataset={data}/empty"], "empty"),
    ("train_dataset_one_class", TRAIN, ["--dataset={data}/one_class"], "'only'"),
    ("train_dataset_unreadable_image", TRAIN, ["--dataset={data}/corrupt"], "bad.png"),
    ("train_dataset_class_without_images", TRAIN, ["--dataset={data}/empty_class"], "empty_class/c"),
    ("train_dataset_text_file", TRAIN, ["--dataset={data}/notes.txt"], "notes.txt"),
    ("train_dataset_tfrecord_matches_nothing", TRAIN, ["--dataset={data}/none-*.tfrecord"], "none-*.tfrecord"),
    ("train_dataset_tfrecord_one_class", TRAIN, ["--dataset={data}/one_label.tfrecord"], "one_label.tfrecord"),
    ("train_dataset_tfrecord_no_test_split", TRAIN, ["--dataset={data}/records_{split}.tfrecord"],
     "records_test.tfrecord"),
    ("train_dataset_test_labels_beyond_classes", TRAIN, ["--dataset={data}/labels_{split}.tfrecord"],
     "label 2 but there are 2 classes"),
    ("train_fashion_mnist_missing_folder", TRAIN, ["--dataset=fashion_mnist:/no/such/fmnist"], "/no/such/fmnist"),
    ("train_subset_of_one_class", TRAIN, ["--train_subset=1"], "of class"),
    ("train_out_missing", TRAIN, ["--out="], "--out"),
    ("train_out_is_a_file", TRAIN, ["--out={data}/notes.txt"], "notes.txt"),
    ("train_out_parent_is_a_file", TRAIN, ["--out={data}/notes.txt/run"], "notes.txt"),
    ("train_out_unwritable", TRAIN, ["--out=/sys/kerasnets_bad_inputs"], "/sys/kerasnets_bad_inputs"),
    ("train_resume_without_checkpoint", TRAIN, ["--resume"], "--resume"),
    ("train_existing_run_without_resume", TRAIN, ["--out={data}/train_run"], "train_run"),
    ("train_resume_checkpoint_of_another_model", TRAIN, ["--out={data}/train_run", "--resume"],
     "belongs to model 'shufflenet"),
    ("train_weights_missing", TRAIN, ["--weights={data}/missing.safetensors"], "missing.safetensors"),
    ("train_weights_not_a_checkpoint", TRAIN, ["--weights={data}/junk.h5"], "junk.h5"),
    ("train_weights_of_another_family", TRAIN, ["--weights={data}/ghostnet_050"], "GhostNet"),
    ("train_positional_argument", TRAIN, ["extra"], "extra"),
    # ------------------------------------------------------------------ kerasnets-quantize
    ("quantize_misspelled_flag", QUANTIZE, ["ptq", "--calibration_cont=5"], "calibration_cont"),
    ("quantize_no_mode", QUANTIZE, [], "got none"),
    ("quantize_two_modes", QUANTIZE, ["ptq", "qat"], "ptq qat"),
    ("quantize_unknown_mode", QUANTIZE, ["dance"], "dance"),
    ("quantize_unknown_io_type", QUANTIZE, ["ptq", "--io_type=int4"], "int4"),
    ("quantize_float_weights_missing", QUANTIZE, ["ptq", "--float_weights={data}/missing.weights.h5"],
     "missing.weights.h5"),
    ("quantize_float_weights_folder", QUANTIZE, ["ptq", "--float_weights={data}/empty"], "empty"),
    ("quantize_float_weights_not_hdf5", QUANTIZE, ["ptq", "--float_weights={data}/junk.h5"], "junk.h5"),
    ("quantize_float_weights_other_head", QUANTIZE, ["ptq", "--float_weights={data}/ten_classes.weights.h5"],
     "ten_classes.weights.h5"),
    ("quantize_float_weights_other_width", QUANTIZE, ["ptq", "--float_weights={data}/width_050.weights.h5"],
     "width_050.weights.h5"),
    ("quantize_calibration_beyond_data", QUANTIZE, ["ptq", "--float_weights={data}/good.weights.h5",
                                                    "--calibration_count=500"], "--calibration_count=500"),
    ("quantize_calibration_zero", QUANTIZE, ["ptq", "--calibration_count=0"], "--calibration_count=0"),
    ("quantize_zero_qat_epochs", QUANTIZE, ["qat", "--qat_epochs=0"], "--qat_epochs=0"),
    ("quantize_negative_qat_learning_rate", QUANTIZE, ["qat", "--qat_learning_rate=-1"], "qat_learning_rate=-1"),
    ("quantize_zero_finetune_learning_rate", QUANTIZE, ["staged", "--finetune_learning_rate=0"],
     "finetune_learning_rate=0"),
    ("quantize_target_bits_9", QUANTIZE, ["bitwidth", "--target_bits=9"], "--target_bits=9"),
    ("quantize_two_budgets", QUANTIZE, ["bitwidth", "--target_bits=4", "--size_bytes=1000"], "two budgets"),
    ("quantize_bitwidth_flag_in_ptq", QUANTIZE, ["ptq", "--target_bits=4"], "--target_bits"),
    ("quantize_float_head_in_ptq", QUANTIZE, ["ptq", "--float_head"], "--float_head"),
    ("quantize_out_is_a_file", QUANTIZE, ["ptq", "--float_weights={data}/good.weights.h5", "--out={data}/notes.txt"],
     "notes.txt"),
    ("quantize_out_missing", QUANTIZE, ["ptq", "--out="], "--out"),
    ("quantize_resume_without_checkpoint", QUANTIZE, ["qat", "--resume"], "--resume"),
    ("quantize_dataset_one_class", QUANTIZE, ["ptq", "--dataset={data}/one_class"], "'only'"),
    ("quantize_overrides_bn_momentum_2", QUANTIZE, ["qat", '--overrides={"bn_momentum": 2}'], "bn_momentum"),
    ("quantize_zero_epochs", QUANTIZE, ["qat", "--epochs=0"], "epochs=0"),
    # ------------------------------------------------------------------ kerasnets-run
    ("run_misspelled_flag", RUN, ["--polcy=max_npu"], "polcy"),
    ("run_positional_argument", RUN, ["now"], "now"),
    ("run_cpu_profile", RUN, ["--profile=host_cpu"], "host_cpu"),
    ("run_unknown_profile", RUN, ["--profile=tpu9"], "tpu9"),
    ("run_profile_path_missing", RUN, ["--profile={data}/missing_profile.json"], "missing_profile.json"),
    ("run_profile_bad_json", RUN, ["--profile={data}/broken_profile.json"], "broken_profile"),
    ("run_profile_folder", RUN, ["--profile={data}/empty"], "empty"),
    ("run_unknown_policy", RUN, ["--policy=fastest"], "fastest"),
    ("run_unknown_quantization", RUN, ["--quantization=int4"], "int4"),
    ("run_overrides_bad_json", RUN, ["--overrides={width"], "{width"),
    ("run_overrides_unknown_option", RUN, ['--overrides={"bogus": 1}'], "bogus"),
    ("run_overrides_negative_bn_epsilon", RUN, ['--overrides={"bn_epsilon": -1}'], "bn_epsilon"),
    ("run_zero_epochs", RUN, ["--epochs=0"], "epochs=0"),
    ("run_zero_qat_epochs", RUN, ["--qat_epochs=0"], "qat_epochs=0"),
    ("run_qat_epochs_with_ptq", RUN, ["--quantization=ptq", "--qat_epochs=2"], "--qat_epochs=2"),
    ("run_zero_batch", RUN, ["--batch_size=0"], "batch_size=0"),
    ("run_nan_learning_rate", RUN, ["--learning_rate=nan"], "learning_rate=nan"),
    ("run_zero_threads", RUN, ["--threads=0"], "--threads=0"),
    ("run_input_size_4", RUN, ["--input_size=4"], "input_size"),
    ("run_input_size_beyond_memory", RUN, ["--input_size=60000x60000"], "60000x60000"),
    ("run_fashion_mnist_size_beyond_memory", RUN, ["--dataset=fashion_mnist", "--train_subset=64",
                                                   "--input_size=30000x30000"], "30000x30000"),
    ("run_calibration_beyond_data", RUN, ["--calibration_count=500"], "calibration_count=500"),
    ("run_unknown_model", RUN, ["--model=nope_net"], "nope_net"),
    ("run_dataset_missing_folder", RUN, ["--dataset={data}/no_such_folder"], "no_such_folder"),
    ("run_dataset_one_class", RUN, ["--dataset={data}/one_class"], "'only'"),
    ("run_dataset_unreadable_image", RUN, ["--dataset={data}/corrupt"], "bad.png"),
    ("run_weights_missing", RUN, ["--weights={data}/missing.safetensors"], "missing.safetensors"),
    ("run_weights_of_another_family", RUN, ["--weights={data}/ghostnet_050"], "GhostNet"),
    ("run_out_is_a_file", RUN, ["--out={data}/notes.txt"], "notes.txt"),
    ("run_out_parent_is_a_file", RUN, ["--out={data}/notes.txt/run"], "notes.txt"),
    ("run_out_unwritable", RUN, ["--out=/sys/kerasnets_bad_inputs"], "/sys/kerasnets_bad_inputs"),
    ("run_out_foreign_folder", RUN, ["--out={data}/foreign"], "foreign"),
    ("run_out_holds_other_job", RUN, ["--out={data}/job_run"], "epochs=7"),
    ("run_out_holds_broken_job", RUN, ["--out={data}/broken_job"], "job.json"),
    ("run_name_with_slash", RUN, ["--out=", "--name=../escape"], "../escape"),
]



def _listing(root):
    """Every path under ``root``, files with their size and modification time (what a write would change).

    Folders are listed by name only: the output-folder check probes the nearest existing folder
    with a sub-folder it removes at once, which leaves no entry but moves the folder's mtime.
    """
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root)] = "folder"
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            out[os.path.relpath(os.path.join(folder, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


def _png_folder(root, classes, count=4, size=12, seed=0):
    from PIL import Image  # matplotlib depends on Pillow
    rng = np.random.default_rng(seed)
    for cls in classes:
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(os.path.join(root, cls, f"{i}.png"))


def _make_data(root):
    """The datasets and files the cases name (under ``root``)."""
    _png_folder(os.path.join(root, "good"), ("a", "b"))
    _png_folder(os.path.join(root, "one_class"), ("only",))
    os.makedirs(os.path.join(root, "empty"))
    _png_folder(os.path.join(root, "corrupt"), ("a", "b"))
    with open(os.path.join(root, "corrupt", "b", "bad.png"), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"truncated")
    _png_folder(os.path.join(root, "empty_class"), ("a", "b"))
    os.makedirs(os.path.join(root, "empty_class", "c"))
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("not a dataset\n")
    with open(os.path.join(root, "junk.h5"), "w") as f:
        f.write("not HDF5\n")
    with open(os.path.join(root, "broken_profile.json"), "w") as f:
        f.write("{\"name\": \"broken_profile\",\n")
    images = np.random.default_rng(1).integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
    data.write_tfrecord(os.path.join(root, "one_label.tfrecord"), images, [0] * 6)
    data.write_tfrecord(os.path.join(root, "records_train.tfrecord"), images, [0, 1] * 3)
    data.write_tfrecord(os.path.join(root, "labels_train.tfrecord"), images, [0, 1] * 3)  # 2 classes...
    data.write_tfrecord(os.path.join(root, "labels_test.tfrecord"), images, [0, 1, 2] * 2)  # ...a third in test
    # A kerasnets-train folder holding a checkpoint of another model (only its state.json is read).
    os.makedirs(os.path.join(root, "train_run"))
    with open(os.path.join(root, "train_run", "state.json"), "w") as f:
        json.dump({"epoch": 1, "checkpoint": "ckpt/ckpt-1",
                   "signature": {"name": "shufflenet_v2_x0_5", "params": 1, "digest": "0" * 16}}, f)
    os.makedirs(os.path.join(root, "foreign"))
    with open(os.path.join(root, "foreign", "mine.txt"), "w") as f:
        f.write("not a run\n")
    os.makedirs(os.path.join(root, "job_run"))
    with open(os.path.join(root, "job_run", "job.json"), "w") as f:
        json.dump({"config": dict(_job_config_dict(root), epochs=7)}, f)
    os.makedirs(os.path.join(root, "broken_job"))
    with open(os.path.join(root, "broken_job", "job.json"), "w") as f:
        f.write("{\"config\": ")
    meta, _, _ = load_case("ghostnet_050")  # a GhostNet checkpoint (a snapshot folder), for a MobileNetV2
    write_checkpoint(meta, root)
    # Float weights: a run on the good folder (2 classes), a 10-class head, another width.
    for name, model, classes in (("good", "mobilenet_v2_035", 2), ("ten_classes", "mobilenet_v2_035", 10),
                                 ("width_050", "mobilenet_v2_050", 2)):
        keras.backend.clear_session()
        import kerasnets
        kerasnets.get_model(model, input_shape=(32, 32, 3), classes=classes).save_weights(
            os.path.join(root, f"{name}.weights.h5"))


def _job_config_dict(root):
    import dataclasses
    config = job.JobConfig(dataset=os.path.join(root, "good"), input_size=(32, 32))
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _trap(what):
    def trap(*args, **kwargs):
        raise AssertionError(f"a refused command {what}")
    return trap


_ROOT = []


def _root():
    """The module's folder (made once): data/ with every prepared input, and one case-* folder per test."""
    if not _ROOT:
        root = tempfile.mkdtemp(prefix="kerasnets-bad-inputs-")
        os.makedirs(os.path.join(root, "data"))
        _make_data(os.path.join(root, "data"))
        _ROOT.append(root)
    return _ROOT[0]


def tearDownModule():
    for root in _ROOT:
        shutil.rmtree(root, ignore_errors=True)


class _Catalogue(parameterized.TestCase):
    """Shared set-up: the data folder (made once per module) and the check of one refused command."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = _root()
        cls.data = os.path.join(cls.root, "data")

    def setUp(self):
        super().setUp()
        self.cwd = os.getcwd()
        self.work = tempfile.mkdtemp(dir=self.root, prefix="case-")
        os.chdir(self.work)  # kerasnets-run without --out would write runs/ here
        self.addCleanup(os.chdir, self.cwd)

    def _args(self, args):
        values = {"data": self.data, "out": os.path.join(self.work, "out")}
        argv = []
        for arg in args:
            for key, value in values.items():
                arg = arg.replace("{" + key + "}", value)
            argv.append(arg)
        if not any(a.startswith("--dataset=") for a in argv):
            argv.append(f"--dataset={os.path.join(self.data, 'good')}")
        if "--out=" in argv:  # the case leaves --out unset
            argv.remove("--out=")
        elif not any(a.startswith("--out=") for a in argv):
            argv.append(f"--out={values['out']}")
        if not any(a.startswith("--verbose=") for a in argv):
            argv.append("--verbose=0")
        return argv

    def assert_refused(self, script, args, words):
        argv = self._args(args)
        before = _listing(self.root)
        with mock.patch.object(keras.Model, "fit", _trap("trained")), \
                mock.patch.object(tflite_export, "convert", _trap("converted to TFLite")), \
                mock.patch.object(tflite_export, "make_converter", _trap("calibrated")):
            res = run_cli(script, *argv)
        after = _listing(self.root)
        message = f"{script} {' '.join(argv)}\nstdout: {res.stdout[-1500:]}\nstderr: {res.stderr[-3000:]}"
        self.assertEqual(res.returncode, 2, message)
        self.assertNotIn("Traceback", res.stderr, message)
        lines = res.stderr.strip().splitlines()
        if lines and lines[0].startswith(FLAG_PARSING):  # absl: the flag and its value, then a help pointer
            self.assertLessEqual(len(lines), 2, message)
        else:
            self.assertEqual(len(lines), 1, message)
            self.assertTrue(lines[0].startswith("error: "), message)
            self.assertNotIn("this is a bug", lines[0], message)
        self.assertIn(words, res.stderr, message)
        self.assertEqual(before, after, f"the refused command wrote something\n{message}")
        case = os.path.relpath(self.work, self.root) + os.sep
        self.assertFalse([p for p in after if p.startswith(case)], f"the case folder is not empty\n{message}")
        self.assertNotIn("Epoch 1/", res.stdout, message)


class CatalogueTest(_Catalogue):

    def test_the_catalogue_is_large_enough(self):
        self.assertGreaterEqual(len(CASES), 55)
        self.assertEqual(len({c[0] for c in CASES}), len(CASES))
        for script in (TRAIN, QUANTIZE, RUN):
            self.assertGreaterEqual(sum(c[1] == script for c in CASES), 15, script)

    @parameterized.named_parameters(*CASES)
    def test_refused_up_front(self, script, args, words):
        self.assert_refused(script, args, words)

    def test_corrected_run_is_not_refused_because_of_the_bad_one(self):
        out = os.path.join(self.work, "run")
        base = ["--model=mobilenet_v2_035", f"--dataset={os.path.join(self.data, 'good')}", f"--out={out}",
                "--epochs=1", "--batch_size=4"]
        self.assert_refused(RUN, base + ['--overrides={"bogus": 1}'], "bogus")
        self.assertFalse(os.path.exists(out))
        # The corrected command passes every check on the same folder (nothing of the bad one is there).
        corrected = job.JobConfig(model="mobilenet_v2_035", dataset=os.path.join(self.data, "good"), epochs=1,
                                  batch_size=4, overrides={})
        run = job.prepare(corrected, out)
        self.assertFalse(run.resumed)
        self.assertFalse(os.path.exists(out))
        # Had the refused command written its job.json, the corrected one would be refused:
        os.makedirs(out)
        with open(os.path.join(out, "job.json"), "w") as f:
            json.dump({"config": dict(_job_config_dict(self.data), epochs=1, batch_size=4,
                                      overrides={"bogus": 1})}, f)
        with self.assertRaisesRegex(ConfigError, "overrides"):
            job.prepare(corrected, out)


    @pytest.mark.slow
    def test_corrected_command_runs_after_the_refused_one(self):
        out = os.path.join(self.work, "run")
        base = [f"--dataset={os.path.join(self.data, 'good')}", f"--out={out}", "--quantization=ptq", "--epochs=1",
                "--batch_size=4", "--runs=2", "--verbose=0", "--json"]
        self.assert_refused(RUN, base + ['--overrides={"bn_momentum": 2}'], "bn_momentum")
        res = run_cli(RUN, *base, '--overrides={"bn_momentum": 0.5}')
        self.assertEqual(res.returncode, 0, res.stderr[-3000:])
        summary = json.loads(res.stdout.strip().splitlines()[-1])
        self.assertEqual(summary["config"]["overrides"], {"bn_momentum": 0.5})
        self.assertTrue(os.path.isfile(os.path.join(out, "report.md")))


class LibraryTest(_Catalogue):
    """The library refuses the same inputs with the project's errors, before writing."""

    def test_train_config_types_and_ranges(self):
        for kwargs, words in (({"epochs": "3"}, "epochs='3'"), ({"epochs": 2.5}, "epochs=2.5"),
                              ({"batch_size": True}, "batch_size=True"), ({"learning_rate": float("nan")}, "nan"),
                              ({"input_size": (32,)}, "input_size=(32,)"), ({"input_size": "32"}, "'32'"),
                              ({"input_size": (32, 0)}, "input_size=0"), ({"overrides": "{}"}, "overrides='{}'"),
                              ({"seed": -1}, "seed=-1"), ({"model": None}, "model=None"),
                              ({"weights": 3}, "weights=3"), ({"momentum": 1.0}, "momentum=1")):
            with self.assertRaisesRegex(ConfigError, words.replace("(", r"\(").replace(")", r"\)")):
                train.TrainConfig(**kwargs).check()

    def test_job_config_types_and_profile(self):
        for kwargs, words in (({"partition_profile": "host_cpu"}, "CPU profile"), ({"train_subset": -5}, "-5"),
                              ({"calibration_count": "all"}, "'all'"), ({"partition_policy": None}, "None"),
                              ({"holdout_fraction": 1.0}, "holdout_fraction"), ({"quantization": "int4"}, "int4")):
            with self.assertRaisesRegex(ConfigError, words):
                job.JobConfig(**kwargs).check()

    def test_loaders(self):
        good = os.path.join(self.data, "good")
        with self.assertRaisesRegex(DataError, "train_subset=-5"):
            data.load_train_test(good, (32, 32), train_subset=-5)
        with self.assertRaisesRegex(DataError, "holdout_fraction"):
            data.load_train_test(good, (32, 32), holdout_fraction=0)
        with self.assertRaisesRegex(DataError, "not a path"):
            data.load_train_test(None)
        with self.assertRaisesRegex(DataError, "image_size"):
            data.load_split(good, image_size=(32, -1))
        split = data.load_split(good, image_size=(16, 16))
        with self.assertRaisesRegex(DataError, "count=-1"):
            split.take(-1)
        with self.assertRaisesRegex(DataError, "not a DataSplit"):
            datasets.validate_split("images")
        with self.assertRaisesRegex(DataError, "batch_size=0"):
            data.make_dataset(split, (16, 16), 0)
        with self.assertRaisesRegex(DataError, "count=0"):
            datasets.calibration_images(split, (16, 16), 0)
        with self.assertRaisesRegex(DataError, "has 1 class"):
            data.check_training_split(data.load_split(os.path.join(self.data, "one_class")))
        # Mixed sizes without a size to resize to: both files named.
        mixed = os.path.join(self.work, "mixed")
        _png_folder(mixed, ("a",), count=1, size=8)
        _png_folder(mixed, ("b",), count=1, size=10)
        with self.assertRaisesRegex(DataError, r"a/0.png is 8x8 but .*b/0.png is 10x10"):
            data.load_image_folder(mixed)
        self.assertEqual(data.load_image_folder(mixed, image_size=(9, 9)).images.shape, (2, 9, 9, 3))
        with self.assertRaisesRegex(DataError, "is a file"):
            data.load_image_folder(os.path.join(self.data, "notes.txt"))
        # Label count against the class count the caller gives.
        with self.assertRaisesRegex(DataError, "label 1 but there are 1 classes"):
            data.load_tfrecord(os.path.join(self.data, "records_train.tfrecord"), num_classes=1)
        with self.assertRaisesRegex(DataError, "num_classes=0"):
            data.load_tfrecord(os.path.join(self.data, "records_train.tfrecord"), num_classes=0)
        # A TFRecord without {split}: a seeded hold-out, not the training records evaluated again.
        tr, va = data.load_train_test(os.path.join(self.data, "records_train.tfrecord"), (16, 16))
        self.assertEqual((len(tr), len(va)), (5, 1))

    def test_fit_refuses_before_writing(self):
        split = data.load_split(os.path.join(self.data, "good"), image_size=(32, 32))
        config = train.TrainConfig(epochs=1, batch_size=4, verbose=0)
        before = _listing(self.root)
        with self.assertRaisesRegex(ConfigError, "notes.txt"):
            train.fit(config, split, None, os.path.join(self.data, "notes.txt", "run"))
        with self.assertRaisesRegex(ConfigError, "TrainConfig"):
            train.fit({"epochs": 1}, split, None, os.path.join(self.work, "a"))
        with self.assertRaisesRegex(DataError, "not a DataSplit"):
            train.fit(config, [1, 2], None, os.path.join(self.work, "b"))
        with self.assertRaisesRegex(KerasnetsError, "bogus"):
            train.fit(train.TrainConfig(epochs=1, batch_size=4, overrides={"bogus": 1}), split, None,
                      os.path.join(self.work, "c"))
        with self.assertRaisesRegex(ConfigError, "qat_epochs=0"):
            staged.run_staged(config, split, None, os.path.join(self.work, "d"), qat_epochs=0)
        with self.assertRaisesRegex(ConfigError, "target_bits=9"):
            staged.run_bitwidth(config, split, None, os.path.join(self.work, "e"), target_bits=9)
        self.assertEqual(before, _listing(self.root))

    def test_weights_file_messages(self):
        import kerasnets
        model = kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), classes=2)
        with self.assertRaisesRegex(KerasnetsError, r"ten_classes.weights.h5.*\(1280, 10\).*\(1280, 2\)"):
            train.load_weights_file(model, os.path.join(self.data, "ten_classes.weights.h5"))
        with self.assertRaisesRegex(KerasnetsError, "not a Keras weights file"):
            train.load_weights_file(model, os.path.join(self.data, "junk.h5"))
        with self.assertRaisesRegex(ConfigError, "not a Keras model"):
            ptq.quantize_post_training("model.h5", np.zeros((1, 32, 32, 3), np.float32))
        with self.assertRaisesRegex(ConfigError, "io_type='int4'"):
            ptq.quantize_post_training(model, np.zeros((1, 32, 32, 3), np.float32), count=1, io_type="int4")
        with self.assertRaisesRegex(ConfigError, "calibration count='1'"):
            ptq.quantize_post_training(model, np.zeros((1, 32, 32, 3), np.float32), count="1")
        with self.assertRaisesRegex(ConfigError, "float_head='yes'"):
            qat.quantize_model(model, float_head="yes")
        with self.assertRaisesRegex(ConfigError, "not a Keras model"):
            qat.quantize_model(None)

    def test_run_job_leaves_nothing_behind(self):
        out = os.path.join(self.work, "job")
        for config, words in ((job.JobConfig(dataset=os.path.join(self.data, "good"), overrides={"bogus": 1}),
                               "bogus"),
                              (job.JobConfig(dataset=os.path.join(self.data, "one_class")), "'only'"),
                              (job.JobConfig(dataset=os.path.join(self.data, "good"), calibration_count=500),
                               None)):
            before = _listing(self.root)
            with mock.patch.object(keras.Model, "fit", _trap("trained")):
                if words is None:
                    with self.assertRaisesRegex(ConfigError, "calibration_count=500"):
                        job.run_job(config, out, log=lambda m: None, calibration_exact=True)
                else:
                    with self.assertRaisesRegex(KerasnetsError, words):
                        job.run_job(config, out, log=lambda m: None)
            self.assertEqual(before, _listing(self.root))
        with self.assertRaisesRegex(ConfigError, "JobConfig"):
            job.run_job({"model": "mobilenet_v2_035"}, out)
