"""kerasnets-estimate and kerasnets-partition: JSON output, files written, one-sentence errors with exit 2.

The scripts run in this process (tests.helpers.run_cli: flags reset and restored, output captured);
only ConsoleScriptTest starts new processes, for what only a process shows.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from kerasnets.backend import tf
from tests.helpers import run_cli, run_module


class EstimateCliTest(tf.test.TestCase):

    def test_json_output_and_chart(self):
        chart = os.path.join(self.get_temp_dir(), "cost.png")
        proc = run_cli("kerasnets.export.cli.estimate", "--model=mobilenet_v2_035", "--input_size=64x96", "--profile=m55h",
                       "--classes=10", "--json", f"--chart={chart}")
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        with open(chart, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        doc = json.loads(proc.stdout)
        for key in ("latency_ms", "fps", "mac_utilization", "layers"):
            self.assertIn(key, doc)
        self.assertEqual(doc["input_size"], [64, 96])
        self.assertEqual(doc["precision"], "int8")
        self.assertGreater(doc["latency_ms"], 0)

    def test_calibrate_refits_from_saved_timings(self):
        # --calibrate --samples=FILE refits from timings saved earlier without measuring;
        # the written profile loads and estimates, and a file that is not timings exits 2.
        tmp = self.get_temp_dir()
        samples = []
        for precision in ("int8", "float32"):
            for kind, ms in (("conv", 0.05), ("conv1x1", 0.02), ("add", 0.003)):
                for i in range(3):
                    samples.append({"kind": kind, "precision": precision, "ops": 1, "work": 1e6 * (i + 1),
                                    "bytes": 1e4 * (i + 2), "ms": ms * (i + 1.5)})
        timings = os.path.join(tmp, "timings.json")
        with open(timings, "w") as f:
            json.dump({"threads": 1, "overhead_ms": {"int8": 0.001, "float32": 0.001}, "samples": samples,
                       "networks": []}, f)
        out = os.path.join(tmp, "host_cpu.json")
        proc = run_cli("kerasnets.export.cli.estimate", "--calibrate", f"--samples={timings}", f"--profile_out={out}", "--json")
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        self.assertEqual(json.loads(proc.stdout)["samples"], len(samples))
        proc = run_cli("kerasnets.export.cli.estimate", "--model=mobilenet_v2_035", "--input_size=32x32", f"--profile={out}",
                       "--json")
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        self.assertGreater(json.loads(proc.stdout)["latency_ms"], 0)
        with open(timings, "w") as f:
            f.write("not json")
        proc = run_cli("kerasnets.export.cli.estimate", "--calibrate", f"--samples={timings}", f"--profile_out={out}.2")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("is not a timings file", proc.stderr)
        self.assertFalse(os.path.exists(out + ".2"))
    def test_host_cpu_by_name_is_this_machines_profile(self):
        # host_cpu fitted on another CPU: the estimate uses the full fit shipped for this one (else says how to fit
        # it here); a path is taken as given. Independent of the CPU the test runs on.
        from kerasnets.export import hostfit, profiles
        shipped, cache = self.get_temp_dir() + "/hosts", self.get_temp_dir() + "/cache"
        os.makedirs(shipped)
        here = hostfit.identity(1)
        elsewhere = profiles.load_profile(hostfit.SHIPPED_HOST_PROFILE).to_dict()
        elsewhere["measured_on"] = dict(elsewhere["measured_on"], processor="Yet Another CPU")
        elsewhere = profiles.parse_profile(elsewhere, "'host_cpu'")
        mine = elsewhere.to_dict()
        mine["measured_on"] = dict(mine["measured_on"], processor=here["processor"], litert=here["litert"])
        mine["invoke_overhead_s"] = {k: v + 1e-3 for k, v in mine["invoke_overhead_s"].items()}  # +1 ms: visible
        mine_path = os.path.join(shipped, "here.json")
        with open(mine_path, "w") as f:
            json.dump(mine, f)
        args = ("--model=mobilenet_v2_035", "--input_size=32x32", "--profile=host_cpu", "--json")
        docs = {}
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("XDG_CACHE_HOME", cache)
            mp.setattr(hostfit, "load_profile", lambda p: elsewhere if p == "host_cpu" else profiles.load_profile(p))
            mp.setattr(hostfit, "SHIPPED_HOSTS_DIR", shipped)
            for case in ("shipped", "none"):
                if case == "none":
                    os.remove(mine_path)
                proc = run_cli("kerasnets.export.cli.estimate", *args)
                self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
                docs[case] = (json.loads(proc.stdout), proc.stderr)
        doc, err = docs["shipped"]
        self.assertEqual((doc["profile_source"], doc["profile_file"]), ("shipped for this CPU", mine_path))
        self.assertIn("Yet Another CPU", err)
        self.assertIn("full fit shipped for this CPU", err)
        doc, err = docs["none"]
        self.assertEqual(doc["profile_source"], "as found")
        self.assertIn("kerasnets-estimate --calibrate=quick", doc["profile_notes"][-1])
        self.assertAlmostEqual(docs["shipped"][0]["latency_ms"] - doc["latency_ms"], 1.0, places=6)
        proc = run_cli("kerasnets.export.cli.estimate", *args[:2], f"--profile={hostfit.SHIPPED_HOST_PROFILE}",
                       "--json")
        self.assertEqual(json.loads(proc.stdout)["profile_source"], "as named")

    def test_bad_flags_exit_2_with_one_sentence(self):
        for args, needle in ((["--model=mobilenet_v2_035", "--profile=warp_drive"], "profile 'warp_drive' is unknown"),
                             (["--model=mobilenet_v2_035", "--input_size=big"], "--input_size='big' is not a size"),
                             (["--model=nosuchnet"], "unknown model"),
                             (["--model=mobilenet_v2_035", "--threads=4", "--profile=host_cpu"], "recalibrate"),
                             (["--no_such_flag"], "")):
            proc = run_cli("kerasnets.export.cli.estimate", *args)
            self.assertEqual(proc.returncode, 2, (args, proc.stderr[-500:]))
            self.assertIn(needle, proc.stderr)


class PartitionCliTest(tf.test.TestCase):

    def test_json_and_files(self):
        with tempfile.TemporaryDirectory() as d:
            proc = run_cli("kerasnets.export.cli.partition", "--model=mobilenet_v2_035", "--input_size=32x32", "--classes=10",
                           "--profile=edgetpu_usb", "--policy=float_head", f"--out={d}", "--calibration_count=4",
                           "--json")
            self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
            doc = json.loads(proc.stdout)
            for key in ("latency_ms", "fps", "mac_utilization", "layers", "npu_layers", "cpu_layers", "cut"):
                self.assertIn(key, doc)
            self.assertIn("predictions", doc["cpu_layers"])
            names = sorted(os.listdir(d))
            self.assertIn("plan.json", names)
            self.assertIn("partition.log", names)
            self.assertTrue(any(n.endswith("_npu_int8.tflite") for n in names))
            self.assertTrue(any(n.endswith("_cpu_float32.tflite") for n in names))

    def test_bad_policy_exits_2(self):
        proc = run_cli("kerasnets.export.cli.partition", "--model=mobilenet_v2_035", "--policy=fastest")
        self.assertEqual(proc.returncode, 2)
        proc = run_cli("kerasnets.export.cli.partition", "--model=mobilenet_v2_035", "--input_size=32x32", "--profile=host_cpu")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("CPU profile", proc.stderr)


class ConsoleScriptTest(tf.test.TestCase):
    """A subprocess on purpose: the installed console script and ``python -m`` themselves (their
    wrappers, the process exit status and the stdout / stderr split), which run_cli bypasses."""

    @pytest.mark.slow
    def test_console_script_and_python_m(self):
        exe = os.path.join(os.path.dirname(sys.executable), "kerasnets-estimate")
        if not os.path.exists(exe):
            exe = shutil.which("kerasnets-estimate")
        if exe is None:
            self.skipTest("kerasnets-estimate is not installed (pip install -e .)")
        proc = run_module("kerasnets.export.cli.estimate", "--no_such_flag")  # absl's own parse error, in a process
        self.assertEqual(proc.returncode, 2, proc.stderr[-2000:])
        self.assertNotIn("Traceback", proc.stderr)
        proc = subprocess.run([exe, "--model=mobilenet_v2_035", "--input_size=32x32", "--profile=m55h", "--json"],
                              capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_USE_LEGACY_KERAS="1"))
        self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
        self.assertEqual(json.loads(proc.stdout)["input_size"], [32, 32])
