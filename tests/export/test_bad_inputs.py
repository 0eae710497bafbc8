"""The catalogue of bad inputs to the export-side scripts and the export library.

Every script case runs in-process (``tests.helpers.run_cli``) and must: exit 2, print exactly
one line ``error: ...`` on stderr (absl's own message for a malformed flag), name the bad
value, show no trace, and leave the output folder as it was. The cases are cheap (a small
model at 32x32 at most, symbolic) because every check runs before any conversion or
calibration. Library cases call the public functions of ``kerasnets.export`` with wrong types and
values and expect a :class:`kerasnets.errors.KerasnetsError` naming the value.
"""
import copy
import errno
import json
import os
import shutil
import tempfile
import types
from unittest import mock

import numpy as np
import pytest
from absl.testing import parameterized

import kerasnets
from kerasnets.export import calibrate, cost, hostfit, partition, placement, profiles
from tests.helpers import TempFoldersTestCase, check_bad_call, run_cli

ZOO, EXPORT, ESTIMATE, PARTITION, BENCH = ("kerasnets.zoo_table", "kerasnets.export.cli.export", "kerasnets.export.cli.estimate",
                                           "kerasnets.export.cli.partition", "kerasnets.export.cli.bench")
SMALL = ("--model=mobilenet_v2_035", "--input_size=32x32", "--classes=10")
# A read-only or pseudo file system that refuses new files even to root.
NO_WRITE = "/proc/kerasnets_out"
FLAG_ERROR = "flags"  # the case is a malformed flag: absl's parsing message, not "error: ..."


def _disk_full():
    """shutil.disk_usage reporting a full disk (what check_free_space reads)."""
    return mock.patch("shutil.disk_usage", return_value=types.SimpleNamespace(total=1 << 30, used=1 << 30, free=0))


def _enospc(target):
    return mock.patch(target, side_effect=OSError(errno.ENOSPC, "No space left on device"))


# (name, script, args, words the message must contain, context) -- args and words may name the
# fixtures: {tmp} (the output folder, empty), {file} (a text file), {folder} (a folder) and the others
# made in setUpClass. context is None, "disk_full", FLAG_ERROR or a (target, OSError) patch.
SCRIPT_CASES = [
    # ---- kerasnets-zoo
    ("zoo_positional", ZOO, ("foo",), ("unexpected argument 'foo'",), None),
    ("zoo_unknown_model", ZOO, ("--models=mobilenet_v2_10",), ("'mobilenet_v2_10'", "did you mean"), None),
    ("zoo_twice", ZOO, ("--models=mobilenet_v2_035,mobilenet_v2_035",), ("'mobilenet_v2_035' twice",), None),
    ("zoo_empty_entry", ZOO, ("--models=mobilenet_v2_035,,ghostnet_050",), ("empty entry",), None),
    ("zoo_unknown_flag", ZOO, ("--modles=ghostnet_050",), ("modles",), FLAG_ERROR),
    ("zoo_bad_bool", ZOO, ("--json=maybe",), ("--json=maybe",), FLAG_ERROR),
    # ---- kerasnets-estimate: flags and sizes
    ("estimate_huge_input", ESTIMATE, ("--model=mobilenet_v2_035", "--input_size=100000x100000"),
     ("100000x100000", "memory"), None),
    ("estimate_size_not_a_size", ESTIMATE, ("--model=mobilenet_v2_035", "--input_size=big"),
     ("--input_size='big' is not a size",), None),
    ("estimate_size_zero", ESTIMATE, ("--model=mobilenet_v2_035", "--input_size=0x32"),
     ("--input_size='0x32'", "positive"), None),
    ("estimate_size_negative", ESTIMATE, ("--model=mobilenet_v2_035", "--input_size=32x-5"),
     ("--input_size='32x-5'",), None),
    ("estimate_size_too_small", ESTIMATE, ("--model=mobilenet_v2_035", "--input_size=16x16"),
     ("16x16", "at least 32x32"), None),
    ("estimate_unknown_model", ESTIMATE, ("--model=nosuchnet",), ("'nosuchnet'", "unknown model"), None),
    ("estimate_empty_model", ESTIMATE, ("--model=",), ("--model is required",), None),
    ("estimate_positional", ESTIMATE, SMALL + ("extra",), ("unexpected argument 'extra'",), None),
    ("estimate_unknown_flag", ESTIMATE, SMALL + ("--no_such_flag",), ("no_such_flag",), FLAG_ERROR),
    ("estimate_threads_zero", ESTIMATE, SMALL + ("--threads=0",), ("--threads=0",), FLAG_ERROR),
    ("estimate_top_negative", ESTIMATE, SMALL + ("--top=-1",), ("--top=-1",), FLAG_ERROR),
    ("estimate_classes_zero", ESTIMATE, ("--model=mobilenet_v2_035", "--classes=0"), ("--classes=0",),
     FLAG_ERROR),
    ("estimate_classes_text", ESTIMATE, ("--model=mobilenet_v2_035", "--classes=ten"),
     ("--classes=ten",), FLAG_ERROR),
    ("estimate_precision", ESTIMATE, SMALL + ("--precision=int4",), ("--precision='int4'", "int8"), None),
    ("estimate_policy", ESTIMATE, SMALL + ("--policy=fastest",), ("--policy='fastest'", "max_npu"), None),
    ("estimate_policy_typo", ESTIMATE, SMALL + ("--policy=max_nmu",), ("'max_nmu'", "did you mean 'max_npu'"), None),
    ("estimate_shuffle", ESTIMATE, SMALL + ("--shuffle=6d",), ("--shuffle='6d'", "low_rank"), None),
    ("estimate_group_conv", ESTIMATE, SMALL + ("--group_conv=fast",), ("--group_conv='fast'", "split"), None),
    # ---- kerasnets-estimate: profiles
    ("estimate_profile_unknown", ESTIMATE, SMALL + ("--profile=warp_drive",),
     ("profile 'warp_drive' is unknown",), None),
    ("estimate_profile_typo", ESTIMATE, SMALL + ("--profile=edgetpu_ubs",), ("did you mean 'edgetpu_usb'",), None),
    ("estimate_profile_folder", ESTIMATE, SMALL + ("--profile={folder}",), ("{folder}", "is a folder"), None),
    ("estimate_profile_missing", ESTIMATE, SMALL + ("--profile={folder}/none.json",), ("none.json", "does not exist"),
     None),
    ("estimate_profile_not_json", ESTIMATE, SMALL + ("--profile={not_json}",), ("not valid JSON",), None),
    ("estimate_profile_binary", ESTIMATE, SMALL + ("--profile={binary_json}",), ("not a text file",), None),
    ("estimate_profile_not_object", ESTIMATE, SMALL + ("--profile={list_json}",), ("must be a JSON object",), None),
    ("estimate_profile_unknown_key", ESTIMATE, SMALL + ("--profile={typo_profile}",),
     ("support.max_nonunit_dim", "did you mean 'max_nonunit_dims'"), None),
    ("estimate_profile_unknown_top_key", ESTIMATE, SMALL + ("--profile={typo_top_profile}",),
     ("'segment'", "did you mean 'segments'"), None),
    ("estimate_profile_bad_value", ESTIMATE, SMALL + ("--profile={bad_value_profile}",),
     ("compute.efficiency.depthwise",), None),
    ("estimate_threads_vs_profile", ESTIMATE, SMALL + ("--profile=host_cpu", "--threads=4"),
     ("--threads=4", "recalibrate"), None),
    ("estimate_precision_vs_cpu_profile", ESTIMATE, SMALL + ("--profile={float_cpu_profile}", "--precision=int8"),
     ("--precision=int8", "float32"), None),
    # ---- kerasnets-estimate: --chart
    ("estimate_chart_folder", ESTIMATE, SMALL + ("--chart={tmp}",), ("--chart=", "is a folder"), None),
    ("estimate_chart_under_file", ESTIMATE, SMALL + ("--chart={file}/cost.png",), ("is a file, not a folder",), None),
    ("estimate_chart_read_only", ESTIMATE, SMALL + (f"--chart={NO_WRITE}.png",), (NO_WRITE,), None),
    ("estimate_chart_disk_full", ESTIMATE, SMALL + ("--chart={tmp}/cost.png",), ("--chart", "free"), "disk_full"),
    ("estimate_chart_enospc", ESTIMATE, SMALL + ("--chart={tmp}/cost.png",), ("cost.png", "disk is full"),
     ("kerasnets.export.cli.estimate.plot_estimate", errno.ENOSPC)),
    # ---- kerasnets-estimate: --calibrate and its flags
    ("estimate_quick_without_calibrate", ESTIMATE, SMALL + ("--quick",), ("--quick only applies with --calibrate",),
     None),
    ("estimate_samples_without_calibrate", ESTIMATE, SMALL + ("--samples={tmp}/t.json",), ("--samples",), None),
    ("estimate_calibrate_with_model", ESTIMATE, ("--calibrate", "--model=ghostnet_050"),
     ("--model does not apply with --calibrate",), None),
    ("estimate_calibrate_networks", ESTIMATE, ("--calibrate", "--networks=2"), ("--networks=2",), FLAG_ERROR),
    ("estimate_calibrate_out_folder", ESTIMATE, ("--calibrate", "--profile_out={tmp}"),
     ("--profile_out=", "is a folder"), None),
    ("estimate_calibrate_out_under_file", ESTIMATE, ("--calibrate", "--profile_out={file}/host_cpu.json"),
     ("is a file, not a folder",), None),
    ("estimate_calibrate_out_read_only", ESTIMATE, ("--calibrate", f"--profile_out={NO_WRITE}.json"), (NO_WRITE,),
     None),
    ("estimate_calibrate_samples_folder", ESTIMATE,
     ("--calibrate", "--profile_out={tmp}/p.json", "--samples={folder}"), ("--samples=", "is a folder"), None),
    ("estimate_calibrate_samples_not_timings", ESTIMATE,
     ("--calibrate", "--profile_out={tmp}/p.json", "--samples={not_json}"), ("is not a timings file",), None),
    ("estimate_calibrate_samples_under_file", ESTIMATE,
     ("--calibrate", "--profile_out={tmp}/p.json", "--samples={file}/t.json"), ("is a file, not a folder",), None),
    # ---- kerasnets-export: output paths
    ("export_no_out", EXPORT, SMALL + ("--calibration=random",), ("--out is required",), None),
    ("export_empty_out", EXPORT, SMALL + ("--calibration=random", "--out="), ("--out is required",), None),
    ("export_out_not_tflite", EXPORT, SMALL + ("--out={tmp}/m.onnx",), ("m.onnx", "must name a .tflite"), None),
    ("export_out_is_file", EXPORT, SMALL + ("--calibration=random", "--out={file}"), ("is a file, not a folder",),
     None),
    ("export_out_under_file", EXPORT, SMALL + ("--calibration=random", "--out={file}/m.tflite"),
     ("is a file, not a folder",), None),
    ("export_out_read_only", EXPORT, SMALL + ("--calibration=random", f"--out={NO_WRITE}.tflite"), (NO_WRITE,), None),
    ("export_out_read_only_folder", EXPORT, SMALL + ("--calibration=random", f"--out={NO_WRITE}/models"),
     (NO_WRITE,), None),
    ("export_out_artifact_is_folder", EXPORT,
     SMALL + ("--calibration=random", "--mode=float32", "--out={artifact_folder_parent}"),
     ("mobilenet_v2_035_float32.tflite", "is a folder"), None),
    ("export_out_manifest_is_folder", EXPORT,
     SMALL + ("--calibration=random", "--out={manifest_folder_parent}/m.tflite"),
     ("m.tflite.manifest.json", "is a folder"), None),
    ("export_disk_full", EXPORT, SMALL + ("--calibration=random", "--out={tmp}/m.tflite"), ("--out", "free"),
     "disk_full"),
    # ---- kerasnets-export: flags
    ("export_mode", EXPORT, SMALL + ("--mode=int4", "--out={tmp}"), ("--mode=int4",), FLAG_ERROR),
    ("export_io_type", EXPORT, SMALL + ("--io_type=int16", "--out={tmp}"), ("--io_type='int16'", "uint8"), None),
    ("export_io_type_vs_mode", EXPORT, SMALL + ("--io_type=uint8", "--mode=float16", "--out={tmp}"),
     ("--io_type=uint8", "--mode=int8"), None),
    ("export_seed_negative", EXPORT, SMALL + ("--seed=-1", "--calibration=random", "--out={tmp}"), ("--seed=-1",),
     FLAG_ERROR),
    ("export_count_zero", EXPORT, SMALL + ("--calibration_count=0", "--out={tmp}"),
     ("--calibration_count=0",), FLAG_ERROR),
    ("export_count_huge", EXPORT, SMALL + ("--calibration_count=100000000", "--calibration=random", "--out={tmp}"),
     ("--calibration_count=100000000", "memory"), None),
    ("export_classes_zero", EXPORT, ("--model=mobilenet_v2_035", "--classes=0", "--out={tmp}"),
     ("--classes=0",), FLAG_ERROR),
    ("export_unknown_model", EXPORT, ("--model=mobilenet_v9", "--out={tmp}"), ("'mobilenet_v9'", "unknown model"),
     None),
    ("export_huge_input", EXPORT, ("--model=mobilenet_v2_035", "--input_size=100000x100000", "--calibration=random",
                                   "--out={tmp}"), ("100000x100000", "memory"), None),
    ("export_bad_size", EXPORT, ("--model=mobilenet_v2_035", "--input_size=32x", "--out={tmp}"),
     ("--input_size='32x'",), None),
    ("export_calibration_missing", EXPORT, SMALL + ("--calibration=/no/such/images", "--out={tmp}"),
     ("--calibration='/no/such/images'", "does not exist"), None),
    ("export_calibration_file", EXPORT, SMALL + ("--calibration={file}", "--out={tmp}"),
     ("--calibration=", "is a file"), None),
    ("export_calibration_no_tfrecord", EXPORT, SMALL + ("--calibration={tmp}/none-*.tfrecord", "--out={tmp}"),
     ("none-*.tfrecord", "matches no file"), None),
    ("export_calibration_empty", EXPORT, SMALL + ("--calibration=", "--out={tmp}"), ("--calibration is empty",), None),
    # ---- kerasnets-export: weights
    ("export_weights_missing", EXPORT, SMALL + ("--calibration=random", "--out={tmp}", "--weights={tmp}/no.h5"),
     ("--weights=", "no.h5", "does not exist"), None),
    ("export_weights_not_hdf5", EXPORT, SMALL + ("--calibration=random", "--out={tmp}", "--weights={not_hdf5}"),
     ("--weights=", "not_hdf5.h5", "not HDF5"), None),
    ("export_weights_other_model", EXPORT,
     SMALL + ("--calibration=random", "--out={tmp}", "--weights={other_weights}"),
     ("--weights=", "other.weights.h5", "does not fit mobilenet_v2_035"), None),
    ("export_weights_other_classes", EXPORT,
     ("--model=mobilenet_v2_050", "--input_size=32x32", "--classes=7", "--calibration=random", "--out={tmp}",
      "--weights={other_weights}"), ("--weights=", "other.weights.h5", "does not fit"), None),
    ("export_weights_missing_checkpoint", EXPORT,
     SMALL + ("--calibration=random", "--out={tmp}", "--weights={tmp}/model.safetensors"),
     ("model.safetensors", "does not exist"), None),
    # ---- kerasnets-partition
    ("partition_policy", PARTITION, SMALL + ("--policy=fastest",), ("--policy='fastest'",), None),
    ("partition_cpu_profile", PARTITION, SMALL + ("--profile=host_cpu",), ("CPU profile",), None),
    ("partition_unknown_profile", PARTITION, SMALL + ("--profile=coral",), ("profile 'coral' is unknown",), None),
    ("partition_unknown_key_profile", PARTITION, SMALL + ("--profile={typo_profile}",), ("max_nonunit_dims",), None),
    ("partition_shuffle", PARTITION, SMALL + ("--shuffle=bad",), ("--shuffle='bad'",), None),
    ("partition_huge_input", PARTITION, ("--model=mobilenet_v2_035", "--input_size=100000x100000"),
     ("100000x100000", "memory"), None),
    ("partition_npz_without_out", PARTITION, SMALL + ("--calibration_npz={npz_ok}",),
     ("--calibration_npz is only used", "--out"), None),
    ("partition_count_without_out", PARTITION, SMALL + ("--calibration_count=4",),
     ("--calibration_count is only used",), None),
    ("partition_count_zero", PARTITION, SMALL + ("--calibration_count=0", "--out={tmp}"),
     ("--calibration_count=0",), FLAG_ERROR),
    ("partition_out_is_file", PARTITION, SMALL + ("--out={file}",), ("--out=", "is a file, not a folder"), None),
    ("partition_out_under_file", PARTITION, SMALL + ("--out={file}/parts",), ("is a file, not a folder",), None),
    ("partition_out_read_only", PARTITION, SMALL + (f"--out={NO_WRITE}",), (NO_WRITE,), None),
    ("partition_plan_is_folder", PARTITION, SMALL + ("--out={plan_folder_parent}",), ("plan.json", "is a folder"),
     None),
    ("partition_disk_full", PARTITION, SMALL + ("--out={tmp}/parts", "--calibration_count=2"), ("--out", "free"),
     "disk_full"),
    ("partition_npz_missing", PARTITION, SMALL + ("--out={tmp}", "--calibration_npz={tmp}/none.npz"),
     ("none.npz", "does not exist"), None),
    ("partition_npz_folder", PARTITION, SMALL + ("--out={tmp}", "--calibration_npz={folder}"), ("is a folder",), None),
    ("partition_npz_not_npz", PARTITION, SMALL + ("--out={tmp}", "--calibration_npz={file}"),
     ("--calibration_npz=", "not an .npz"), None),
    ("partition_npz_npy", PARTITION, SMALL + ("--out={tmp}", "--calibration_npz={npy}"), (".npy file",), None),
    ("partition_npz_no_arrays", PARTITION, SMALL + ("--out={tmp}", "--calibration_npz={npz_empty}"),
     ("npz_empty.npz", "holds no arrays"), None),
    ("partition_npz_pickled", PARTITION, SMALL + ("--out={tmp}", "--calibration_npz={npz_object}"),
     ("npz_object.npz", "object array"), None),
    ("partition_npz_strings", PARTITION, SMALL + ("--out={tmp}", "--calibration_npz={npz_strings}"),
     ("npz_strings.npz", "not numbers"), None),
    ("partition_npz_shape", PARTITION, SMALL + ("--out={tmp}", "--calibration_npz={npz_shape}"),
     ("npz_shape.npz", "(4, 28, 28)", "--input_size"), None),
    ("partition_npz_nan", PARTITION, SMALL + ("--out={tmp}", "--calibration_npz={npz_nan}"),
     ("npz_nan.npz", "NaN"), None),
    ("partition_npz_corrupt", PARTITION, SMALL + ("--out={tmp}", "--calibration_npz={npz_corrupt}"),
     ("npz_corrupt.npz",), None),
    ("partition_weights_other_model", PARTITION, SMALL + ("--weights={other_weights}",),
     ("--weights=", "other.weights.h5", "does not fit"), None),
    ("partition_weights_not_hdf5", PARTITION, SMALL + ("--weights={not_hdf5}",), ("not_hdf5.h5", "not HDF5"), None),
    ("partition_weights_folder", PARTITION, SMALL + ("--weights={folder}",), ("{folder}",), None),
    # ---- kerasnets-bench
    ("bench_no_file", BENCH, (), ("no TFLite file given",), None),
    ("bench_missing", BENCH, ("{tmp}/none.tflite",), ("none.tflite", "does not exist"), None),
    ("bench_folder", BENCH, ("{folder}",), ("{folder}", "is a folder"), None),
    ("bench_not_tflite", BENCH, ("{text_tflite}",), ("text.tflite", "not a TFLite flatbuffer"), None),
    ("bench_fake_header", BENCH, ("{fake_tflite}",), ("fake.tflite",), None),
    ("bench_tiny", BENCH, ("{tiny_tflite}",), ("tiny.tflite", "too short"), None),
    ("bench_twice", BENCH, ("{file}", "{file}"), ("given twice",), None),
    ("bench_runs_zero", BENCH, ("--runs=0", "{file}"), ("--runs=0",), FLAG_ERROR),
    ("bench_warmup_negative", BENCH, ("--warmup=-1", "{file}"), ("--warmup=-1",), FLAG_ERROR),
    ("bench_threads_zero", BENCH, ("--threads=0", "{file}"), ("--threads=0",), FLAG_ERROR),
]


def _listing(root):
    out = []
    for folder, dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(folder, n), root) for n in sorted(dirs + files)]
    return sorted(out)


class ScriptBadInputsTest(parameterized.TestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp(prefix="kn-bad-")
        cls.fixtures = os.path.join(cls.root, "fixtures")
        os.makedirs(cls.fixtures)
        cls.paths = {}

        def path(key, name):
            cls.paths[key] = os.path.join(cls.fixtures, name)
            return cls.paths[key]

        with open(path("file", "afile"), "w") as f:
            f.write("just text\n")
        os.makedirs(path("folder", "afolder"))
        with open(path("not_json", "not.json"), "w") as f:
            f.write("{not json")
        with open(path("binary_json", "binary.json"), "wb") as f:
            f.write(b"\xff\xfe\x00\x81garbage")
        with open(path("list_json", "list.json"), "w") as f:
            json.dump([1, 2], f)
        with open(path("not_hdf5", "not_hdf5.h5"), "w") as f:
            f.write("not an HDF5 file")
        with open(os.path.join(os.path.dirname(profiles.__file__), "profiles", "edgetpu_usb.json")) as f:
            usb = json.load(f)
        for key, change in (("typo_profile", lambda d: d["support"].update(max_nonunit_dim=d["support"].pop(
                                 "max_nonunit_dims"))),
                            ("typo_top_profile", lambda d: d.update(segment=d.pop("segments"))),
                            ("bad_value_profile", lambda d: d["compute"]["efficiency"].update(depthwise=1.5))):
            data = copy.deepcopy(usb)
            change(data)
            data["name"] = key
            with open(path(key, f"{key}.json"), "w") as f:
                json.dump(data, f)
        cpu = profiles.load_profile("host_cpu").to_dict()
        for key in ("predictors", "residuals", "invoke_overhead_s", "peak_macs_per_s", "context_factor",
                    "context_per_op_s", "context_per_param_byte_s"):
            cpu.get(key, {}).pop("int8", None)
        cpu["name"] = "float_cpu"
        with open(path("float_cpu_profile", "float_cpu.json"), "w") as f:
            json.dump(cpu, f)
        rng = np.random.default_rng(0)
        np.savez(path("npz_ok", "npz_ok.npz"), images=rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32"))
        np.savez(path("npz_empty", "npz_empty.npz"))
        np.savez(path("npz_object", "npz_object.npz"), images=np.array([{"a": 1}, None], dtype=object))
        np.savez(path("npz_strings", "npz_strings.npz"), images=np.array(["a", "b"]))
        np.savez(path("npz_shape", "npz_shape.npz"), images=np.zeros((4, 28, 28), "float32"))
        nan = rng.uniform(-1, 1, (4, 32, 32, 3)).astype("float32")
        nan[1, 2, 3, 0] = np.nan
        np.savez(path("npz_nan", "npz_nan.npz"), images=nan)
        np.save(path("npy", "images.npy"), nan)
        with open(cls.paths["npz_ok"], "rb") as f:
            good = f.read()
        with open(path("npz_corrupt", "npz_corrupt.npz"), "wb") as f:
            f.write(good[:len(good) // 2])
        with open(path("fake_tflite", "fake.tflite"), "wb") as f:
            f.write(b"\x00\x00\x00\x00TFL3" + b"\xff" * 64)
        with open(path("text_tflite", "text.tflite"), "w") as f:
            f.write("this is a text file, not a flatbuffer\n" * 4)
        with open(path("tiny_tflite", "tiny.tflite"), "wb") as f:
            f.write(b"TFL3")
        other = kerasnets.get_model("mobilenet_v2_050", input_shape=(32, 32, 3), classes=10)
        other.save_weights(path("other_weights", "other.weights.h5"))
        # Output folders holding a folder where a file is to be written.
        os.makedirs(os.path.join(path("artifact_folder_parent", "artifact_parent"), "mobilenet_v2_035_float32.tflite"))
        os.makedirs(os.path.join(path("manifest_folder_parent", "manifest_parent"), "m.tflite.manifest.json"))
        os.makedirs(os.path.join(path("plan_folder_parent", "plan_parent"), "plan.json"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    def _fill(self, text, tmp):
        return text.format(tmp=tmp, **self.paths)

    def _run_case(self, script, args, words, context):
        tmp = tempfile.mkdtemp(dir=self.root)
        args = [self._fill(a, tmp) for a in args]
        words = [self._fill(w, tmp) for w in words]
        before = _listing(self.root)
        if context == "disk_full":
            with _disk_full():
                proc = run_cli(script, *args)
        elif isinstance(context, tuple):
            with _enospc(context[0]):
                proc = run_cli(script, *args)
        else:
            proc = run_cli(script, *args)
        err = proc.stderr
        self.assertEqual(proc.returncode, 2, f"{args}: exit {proc.returncode}\n{err[-3000:]}")
        self.assertNotIn("Traceback", err)
        self.assertNotIn("this is a bug", err)
        self.assertNotIn("allow_pickle", err)
        lines = err.strip().splitlines()
        if context == FLAG_ERROR:
            self.assertIn("Flags parsing error", err, err)
        else:
            self.assertLen(lines, 1, f"{args}: stderr is not one line:\n{err}")
            self.assertTrue(lines[0].startswith("error: "), lines[0])
            self.assertLess(len(lines[0]), 400, f"message too long: {lines[0]}")
        for word in words:
            self.assertIn(word, err, f"{args}: {word!r} not in the message")
        self.assertEqual(_listing(self.root), before, f"{args}: files were written or removed")

    @parameterized.named_parameters(*[(name, script, args, words, context)
                                      for name, script, args, words, context in SCRIPT_CASES])
    def test_bad_input(self, script, args, words, context):
        self._run_case(script, args, words, context)

    @pytest.mark.slow
    def test_disk_full_while_writing_the_parts_is_one_sentence(self):
        # Space runs out during the write itself (after the checks passed): one sentence, exit 2.
        tmp = tempfile.mkdtemp(dir=self.root)
        with _enospc("kerasnets.export.tflite.write_artifact"):
            proc = run_cli(PARTITION, *SMALL, f"--out={tmp}/parts", "--calibration_count=2")
        self.assertEqual(proc.returncode, 2, proc.stderr[-3000:])
        self.assertIn("disk is full", proc.stderr)
        self.assertNotIn("Traceback", proc.stderr)


# ----------------------------------------------------------------------------- library ----

_MODEL = []


def _model():
    if not _MODEL:
        _MODEL.append(kerasnets.get_model("mobilenet_v2_035", input_shape=(32, 32, 3), classes=10))
    return _MODEL[0]


def _plan():
    return partition.partition_for_profile(_model(), "edgetpu_usb")


def _usb_with(change):
    with open(os.path.join(os.path.dirname(profiles.__file__), "profiles", "edgetpu_usb.json")) as f:
        data = json.load(f)
    change(data)
    return data


def _cpu_with(change):
    data = profiles.load_profile("host_cpu").to_dict()
    change(data)
    return data


def _dynamic_model():
    return kerasnets.get_model("mobilenet_v2_035", input_shape=(None, None, 3), classes=10)


_TMP = []  # the library cases' scratch folder, removed after the class


def _scratch():
    if not _TMP:
        _TMP.append(tempfile.mkdtemp(prefix="kn-bad-lib-"))
    return tempfile.mkdtemp(dir=_TMP[0])


def _a_file():
    fd, path = tempfile.mkstemp(dir=_scratch())
    os.close(fd)
    return path


# (name, call, words): call() must raise a KerasnetsError whose message holds every word.
LIBRARY_CASES = [
    ("estimate_not_a_model", lambda: cost.estimate("mobilenet", "edgetpu_usb"), ("functional Keras model", "str")),
    ("estimate_profile_type", lambda: cost.estimate(_model(), 5), ("profile 5", "int")),
    ("estimate_profile_unknown", lambda: cost.estimate(_model(), "tpu_v9"), ("'tpu_v9'",)),
    ("estimate_profile_empty", lambda: cost.estimate(_model(), ""), ("is empty",)),
    ("estimate_precision", lambda: cost.estimate(_model(), "edgetpu_usb", precision="int4"), ("'int4'",)),
    ("estimate_precision_type", lambda: cost.estimate(_model(), "edgetpu_usb", precision=["int8"]), ("['int8']",)),
    ("estimate_policy", lambda: cost.estimate(_model(), "edgetpu_usb", policy="fastest"), ("'fastest'", "max_npu")),
    ("estimate_policy_none", lambda: cost.estimate(_model(), "edgetpu_usb", policy=None), ("policy None",)),
    ("estimate_cpu_precision", lambda: cost.estimate(_model(), "edgetpu_usb", cpu_precision=8), ("cpu_precision 8",)),
    ("estimate_dynamic_size", lambda: cost.estimate(_dynamic_model(), "edgetpu_usb"), ("not a static size",)),
    ("estimate_cpu_profile_precision", lambda: cost.estimate(_model(), "host_cpu", precision="int16"),
     ("no int16 predictors",)),
    ("estimate_graph_type", lambda: cost.estimate_graph(42, "edgetpu_usb"), ("functional Keras model", "int")),
    ("estimate_graph_placement", lambda: cost.estimate_graph(cost.analyze(_model()), "edgetpu_usb", placement="npu"),
     ("placement",)),
    ("analyze_not_a_model", lambda: cost.analyze([1, 2]), ("list",)),
    ("place_graph_type", lambda: placement.place(_model(), "edgetpu_usb"), ("analyze",)),
    ("place_policy", lambda: placement.place(cost.analyze(_model()), "edgetpu_usb", policy="all"), ("'all'",)),
    ("place_precision", lambda: placement.place(cost.analyze(_model()), "edgetpu_usb", precision="fp8"), ("'fp8'",)),
    ("partition_cpu_profile", lambda: partition.partition_for_profile(_model(), "host_cpu"), ("CPU profile",)),
    ("partition_policy", lambda: partition.partition_for_profile(_model(), "edgetpu_usb", policy="min"), ("'min'",)),
    ("partition_precision", lambda: partition.partition_for_profile(_model(), "edgetpu_usb", precision=16),
     ("precision 16",)),
    ("split_plan_type", lambda: partition.split_model(_model(), "plan"), ("PartitionPlan", "str")),
    ("split_model_type", lambda: partition.split_model("model", _plan()), ("functional Keras model",)),
    ("split_plan_of_another_model", lambda: partition.split_model(
        kerasnets.get_model("ghostnet_050", input_shape=(32, 32, 3), classes=10), _plan()), ("does not fit",)),
    ("export_partition_plan_type", lambda: partition.export_partition(_model(), {}, _scratch(),
                                                                      np.zeros((2, 32, 32, 3))), ("dict",)),
    ("export_partition_count", lambda: partition.export_partition(_model(), _plan(), _scratch(),
                                                                  np.zeros((2, 32, 32, 3)), calibration_count=0),
     ("calibration_count=0",)),
    ("export_partition_out_is_file", lambda: partition.export_partition(_model(), _plan(), _a_file(),
                                                                        np.zeros((2, 32, 32, 3))),
     ("is a file, not a folder",)),
    ("export_partition_out_type", lambda: partition.export_partition(_model(), _plan(), 3, np.zeros((2, 32, 32, 3))),
     ("out_dir=3",)),
    ("export_partition_image_shape", lambda: partition.export_partition(_model(), _plan(), _scratch(),
                                                                        np.zeros((2, 28, 28))), ("(2, 28, 28)",)),
    ("export_partition_image_nan", lambda: partition.export_partition(
        _model(), _plan(), _scratch(), np.full((2, 32, 32, 3), np.nan)), ("NaN",)),
    ("export_partition_image_type", lambda: partition.export_partition(_model(), _plan(), _scratch(),
                                                                       "images"), ("dtype <U6",)),
    ("chained_runner_missing", lambda: partition.ChainedRunner("/no/such/parts"), ("plan.json", "does not exist")),
    ("chained_runner_threads", lambda: partition.ChainedRunner(_scratch(), threads=0), ("threads=0",)),
    ("profile_type", lambda: profiles.load_profile(["edgetpu_usb"]), ("list",)),
    ("profile_folder", lambda: profiles.load_profile(tempfile.gettempdir() + os.sep), ("is a folder",)),
    ("profile_not_dict", lambda: profiles.parse_profile([1], "'x'"), ("JSON object", "list")),
    ("profile_unknown_compute_key", lambda: profiles.parse_profile(_usb_with(
        lambda d: d["compute"].update(clok_hz=1)), "'x'"), ("compute.clok_hz", "did you mean 'clock_hz'")),
    ("profile_unknown_memory_key", lambda: profiles.parse_profile(_usb_with(
        lambda d: d["memory"].update(param_cache_byte=1)), "'x'"), ("memory.param_cache_byte",)),
    ("profile_unknown_efficiency_key", lambda: profiles.parse_profile(_usb_with(
        lambda d: d["compute"]["efficiency"].update(conv3x3=0.5)), "'x'"), ("compute.efficiency.conv3x3",)),
    ("profile_unknown_constraint", lambda: profiles.parse_profile(_usb_with(
        lambda d: d["support"]["ops"]["conv"].update(kernel_size=[3])), "'x'"),
     ("support.ops.conv.kernel_size", "did you mean 'kernel_sizes'")),
    ("profile_unknown_host_key", lambda: profiles.parse_profile(_usb_with(
        lambda d: d["host"].update(speed=2)), "'x'"), ("host.speed", "did you mean 'speed_factor'")),
    ("profile_unknown_segments_key", lambda: profiles.parse_profile(_usb_with(
        lambda d: d["segments"].update(max_segments=2)), "'x'"), ("segments.max_segments",)),
    ("profile_unknown_memory_op", lambda: profiles.parse_profile(_usb_with(
        lambda d: d["memory_ops"].update(shufle=0.5)), "'x'"), ("memory_ops.shufle", "did you mean 'shuffle'")),
    ("profile_unknown_cpu_key", lambda: profiles.parse_profile(_cpu_with(lambda d: d.update(thread=1)), "'x'"),
     ("'thread'", "did you mean 'threads'")),
    ("profile_unknown_cpu_term", lambda: profiles.parse_profile(_cpu_with(
        lambda d: d["predictors"]["int8"]["conv"].update(per_macs_s=1e-9)), "'x'"),
     ("predictors.int8.conv.per_macs_s", "did you mean 'per_mac_s'")),
    ("profile_unknown_residual_key", lambda: profiles.parse_profile(_cpu_with(
        lambda d: d["residuals"]["int8"]["conv"].update(bandwith=1.0)), "'x'"), ("residuals.int8.conv.bandwith",)),
    ("profile_unknown_cpu_precision", lambda: profiles.parse_profile(_cpu_with(
        lambda d: d["invoke_overhead_s"].update(fp32=1e-5)), "'x'"), ("invoke_overhead_s.fp32",)),
    ("calibrate_threads", lambda: calibrate.run_microbenchmarks(threads=0), ("threads=0",)),
    ("calibrate_precisions", lambda: calibrate.run_microbenchmarks(precisions=("int4",)), ("'int4'",)),
    ("calibrate_precisions_type", lambda: calibrate.run_microbenchmarks(precisions="int8"), ("precisions='int8'",)),
    ("calibrate_networks", lambda: calibrate.run_microbenchmarks(networks=-1), ("networks=-1",)),
    ("validate_resolutions", lambda: calibrate.validate_host_profile(resolutions=(16,)), ("resolutions=(16,)",)),
    ("validate_repeats", lambda: calibrate.validate_host_profile(repeats=0), ("repeats=0",)),
    ("validate_probe_mib", lambda: calibrate.validate_host_profile(probe_mib=(0,)), ("probe_mib=(0,)",)),
    ("host_profile_threads", lambda: hostfit.profile_for_here("host_cpu", threads=0), ("threads=0",)),
    ("fit_samples", lambda: calibrate.fit_host_profile([], {}), ("samples",)),
    ("fit_threads", lambda: calibrate.fit_host_profile([{"kind": "conv"}], {}, threads="1"), ("threads='1'",)),
]


class LibraryBadInputsTest(TempFoldersTestCase):
    TEMP = _TMP

    @parameterized.named_parameters(*LIBRARY_CASES)
    def test_bad_call(self, call, words):
        check_bad_call(self, call, words)
