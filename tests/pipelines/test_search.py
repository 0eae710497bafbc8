"""kerasnets.pipelines.search and kerasnets-search: the spaces, the fronts, the journal, the end-to-end search and its
resume, and the bad inputs (each refused in one sentence, exit 2, before anything is written)."""
import json
import os
import shutil
import tempfile

import pytest
from absl.testing import parameterized

import kerasnets
from kerasnets.backend import tf
from kerasnets.spec import load_spec
from kerasnets.zoo import get_spec
from kerasnets.pipelines import search
from tests.helpers import run_cli

CLI = "kerasnets.pipelines.cli.search"
# The tiny setting of the end-to-end tests: a few estimator trials, 2 candidates trained for 2 steps at 32x32.
TINY = ["--profile=m55h", "--input_size=224x224", "--latency_ms=3", "--trials=16", "--top_k=2",
        "--train_subset=128", "--val_subset=64", "--batch_size=64", "--epochs=1", "--verbose=0"]


def _listing(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files)


class SpaceTest(tf.test.TestCase, parameterized.TestCase):

    @parameterized.parameters(*search.BASES)
    def test_the_reference_parameters_rebuild_the_registry_model(self, base):
        space = search.BASES[base]
        spec = space.spec(space.reference_params, "probe")
        want = get_spec(space.reference)
        self.assertEqual((spec.blocks, spec.top), (want.blocks, want.top))
        self.assertEqual(space.resolve(space.reference_params), space.reference_params)

    def test_conditional_knobs_exist_only_for_their_layout(self):
        space = search.BASES["mobilenet_v2"]
        four = space.resolve({"layout": "four_stage"})
        self.assertIn("depth_four_stage_2", four)
        self.assertNotIn("depth_five_stage_2", four)
        spec = space.spec(four, "four")
        self.assertEqual(sorted(set(spec.block_stages())), [1, 2, 3, 4, 5])
        self.assertEqual(sum(1 for b in spec.blocks if b.kind == "ir"), 4)  # one block a stage at the cheapest

    def test_transforms(self):
        spec = get_spec("mobilenet_v2_035")
        grouped = search.with_group_width(spec, 16)
        for a, b in zip(spec.blocks, grouped.blocks):
            if a.kind == "ir":
                self.assertEqual((b.group_width, b.mid % 16), (16, 0))
                self.assertGreaterEqual(b.mid, a.mid)
            else:
                self.assertEqual(a, b)
        self.assertIs(search.with_group_width(spec, 0), spec)
        k5 = search.with_kernels(spec, {4: 5, 5: 5})
        self.assertEqual({(s, b.kernel) for b, s in zip(k5.blocks, k5.block_stages()) if b.kind == "ir"},
                         {(2, 3), (3, 3), (4, 5), (5, 5)})
        acts = {b.act for b in search.with_activation(spec, "hard_swish").blocks}
        self.assertEqual(acts, {"hard_swish"})

    def test_fronts(self):
        pts = [(1.0, 10), (2.0, 30), (1.5, 5), (3.0, 30), (2.5, 40)]
        self.assertEqual(search.pareto_front(pts), [0, 1, 4])
        self.assertEqual(search.pareto_front(pts, maximize_second=False), [0, 2])
        rows = [{"latency_ms": ms, "macs": m} for ms, m in pts]
        top = search.select_top(rows, 4)
        self.assertEqual([(r["latency_ms"], r["macs"]) for r in top], [(2.5, 40), (2.0, 30), (1.0, 10), (3.0, 30)])

    def test_a_partial_journal_line_is_dropped(self):
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder, True)
        path = os.path.join(folder, "j")
        with open(path, "wb") as f:
            f.write(b'{"a":1}\n{"b":')
        self.assertEqual(search.repair_journal(path), 5)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b'{"a":1}\n')
        self.assertEqual(search.repair_journal(path), 0)


class BadInputTest(parameterized.TestCase):
    """Refused in one sentence, exit 2, before any work: nothing is written."""

    def setUp(self):
        super().setUp()
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.out = os.path.join(self.folder, "out")

    def _refused(self, args, *words):
        result = run_cli(CLI, *args)
        self.assertEqual(result.returncode, 2, result.stderr[-3000:])
        lines = [l for l in result.stderr.splitlines() if l.startswith("error:")]
        self.assertLen(lines, 1, result.stderr)
        for word in words:
            self.assertIn(word, lines[0])
        self.assertNotIn("Traceback", result.stderr)
        self.assertEqual(_listing(self.folder), [l for l in _listing(self.folder) if not l.startswith("out")])
        self.assertFalse(os.path.exists(self.out))
        return lines[0]

    @parameterized.named_parameters(
        ("both_budgets", ["--latency_ms=5", "--fps=100"], "exactly one", "latency_ms=5", "fps=100"),
        ("no_budget", [], "exactly one"),
        ("zero_latency", ["--latency_ms=0"], "latency_ms=0"),
        ("negative_fps", ["--fps=-3"], "fps=-3"),
        ("unknown_base", ["--fps=100", "--base=resnet"], "base='resnet'", "mobilenet_v2"),
        ("unknown_proxy", ["--fps=100", "--proxy=synflow"], "proxy='synflow'", "zero_cost"),
        ("unknown_profile", ["--fps=100", "--profile=m55x"], "m55x", "m55h"),
        ("bad_input_size", ["--fps=100", "--input_size=224xabc"], "--input_size='224xabc'", "HEIGHTxWIDTH"),
        ("input_below_stride", ["--fps=100", "--input_size=16x64"], "input_size=16x64", "32x32"),
        ("bad_train_size", ["--fps=100", "--train_size=0x32"], "--train_size"),
        ("zero_trials", ["--fps=100", "--trials=0"], "trials=0"),
        ("unknown_policy", ["--fps=100", "--policy=fastest"], "policy='fastest'"),
    )
    def test_refused(self, args, *words):
        self._refused(["--profile=m55h", f"--out={self.out}"] + args, *words)

    def test_out_not_writable(self):
        blocker = os.path.join(self.folder, "file")
        with open(blocker, "w") as f:
            f.write("x")
        self._refused(["--profile=m55h", "--fps=100", f"--out={blocker}/out"], blocker, "is a file")
        self._refused(["--profile=m55h", "--fps=100", f"--out={blocker}"], blocker, "is a file")

    def test_resume_without_a_search_and_a_folder_of_something_else(self):
        self._refused(["--profile=m55h", "--fps=100", f"--out={self.out}", "--resume"], "--resume", "holds no search")
        other = os.path.join(self.folder, "other")
        os.makedirs(other)
        with open(os.path.join(other, "notes.txt"), "w") as f:
            f.write("mine")
        self._refused(["--profile=m55h", "--fps=100", f"--out={other}"], "not empty")
        self.assertEqual(os.listdir(other), ["notes.txt"])

    def test_budget_below_the_fastest_candidate(self):
        line = self._refused(["--profile=m55h", "--input_size=576x320", "--latency_ms=0.05", "--base=mobilenet_v2",
                              f"--out={self.out}", "--train_subset=64", "--val_subset=32"],
                             "latency_ms=0.05", "fastest candidate", "mobilenet_v2_search_fastest", "width=0.35")
        self.assertRegex(line, r"at \d+\.\d+ ms \(\d+\.\d fps\)")


def _read(out, name):
    with open(os.path.join(out, name)) as f:
        return json.load(f)


class EndToEndTest(tf.test.TestCase):

    def setUp(self):
        super().setUp()
        self.out = os.path.join(tempfile.mkdtemp(), "search")
        self.addCleanup(shutil.rmtree, os.path.dirname(self.out), True)

    def _check_outputs(self, summary, base, proxy):
        for name in (search.JOURNAL, search.FRONT_JSON, search.FRONT_PNG, search.CHOSEN_SPEC):
            self.assertTrue(os.path.isfile(os.path.join(self.out, name)), name)
        with open(os.path.join(self.out, search.FRONT_PNG), "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertEqual(summary["config"]["base"], base)
        self.assertEqual(summary["config"]["proxy"], proxy)
        chosen = summary["chosen"]
        self.assertLessEqual(chosen["latency_ms"], summary["budget_ms"])
        self.assertEqual(chosen["score"], max(c["score"] for c in summary["candidates"]))
        self.assertIn(chosen["name"], [c["name"] for c in summary["front"]])
        self.assertTrue(all(c["feasible"] for c in summary["candidates"]))
        spec, options = load_spec(os.path.join(self.out, search.CHOSEN_SPEC))
        self.assertEqual(spec.name, chosen["name"])
        model = kerasnets.get_model(spec=os.path.join(self.out, search.CHOSEN_SPEC), input_shape=(32, 32, 3),
                                    classes=10)
        self.assertEqual(model.output_shape, (None, 10))
        return spec

    @pytest.mark.slow  # about a minute on 2 cores: 16 + 4 estimator trials and 2-3 short trainings
    def test_train_proxy_end_to_end_then_an_interrupted_search_resumes(self):
        config = search.SearchConfig(base="mobilenet_v2", profile="m55h", input_size=(224, 224), latency_ms=3.0,
                                     trials=16, top_k=2, train_subset=128, val_subset=64, batch_size=64, epochs=1)
        lines = []

        def interrupt_second_scoring(line):
            lines.append(line)
            if sum(l.startswith("scoring") for l in lines) == 2:
                raise KeyboardInterrupt
        with self.assertRaises(KeyboardInterrupt):
            search.run_search(config, self.out, log=interrupt_second_scoring)
        # Interrupted while scoring: the study and the first candidate's training are there, no result file.
        left = _listing(self.out)
        self.assertIn(search.JOURNAL, left)
        self.assertNotIn(search.FRONT_JSON, left)
        first = lines[[l.startswith("scoring") for l in lines].index(True)].split()[1]

        result = run_cli(CLI, "--base=mobilenet_v2", *TINY, f"--out={self.out}", "--resume")
        self.assertEqual(result.returncode, 0, result.stderr[-3000:] + result.stdout[-3000:])
        self.assertNotIn(f"scoring {first}", result.stdout)  # its score is read back from the journal
        self.assertIn("scoring ", result.stdout)  # the second candidate's is computed now
        self.assertEqual(_read(self.out, search.FRONT_JSON)["timing"]["trials_run_now"], 0)
        # More trials extend the study: the 16 finished ones are kept.
        result = run_cli(CLI, "--base=mobilenet_v2", *TINY, "--trials=20", f"--out={self.out}", "--resume")
        self.assertEqual(result.returncode, 0, result.stderr[-3000:] + result.stdout[-3000:])
        self.assertIn("20 trials", result.stdout)
        summary = _read(self.out, search.FRONT_JSON)
        self.assertEqual(len(summary["trials"]), 20)
        self.assertEqual(summary["timing"]["trials_run_now"], 4)
        self.assertIn("test-split top-1", summary["proxy_method"])
        self._check_outputs(summary, "mobilenet_v2", "train")
        self.assertTrue(os.path.isfile(os.path.join(self.out, "candidates", f"t{summary['chosen']['trial']}",
                                                    "final.weights.h5")))
        # The same folder without --resume is refused, and so is a resume with other settings.
        again = run_cli(CLI, "--base=mobilenet_v2", *TINY, f"--out={self.out}")
        self.assertEqual(again.returncode, 2)
        self.assertIn("--resume", again.stderr)
        other = run_cli(CLI, "--base=mobilenet_v2", *TINY, "--latency_ms=4", f"--out={self.out}", "--resume")
        self.assertEqual(other.returncode, 2)
        self.assertIn("latency_ms=3.0", other.stderr)

    @pytest.mark.slow  # about 40 s: 16 estimator trials of a new space, 3 SNIP scores
    def test_zero_cost_proxy_on_vargnet_for_the_edge_tpu(self):
        result = run_cli(CLI, "--base=vargnetv2", "--profile=edgetpu_usb", "--input_size=224x224", "--fps=200",
                         "--proxy=zero_cost", "--trials=16", "--top_k=3", "--train_subset=128", "--val_subset=64",
                         "--batch_size=32", f"--out={self.out}", "--json")
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        summary = json.loads(result.stdout)
        spec = self._check_outputs(summary, "vargnetv2", "zero_cost")
        self.assertIn("SNIP", summary["proxy_method"])
        self.assertLen(summary["candidates"], 3)
        self.assertTrue(all(c["score"] > 0 for c in summary["candidates"]))
        _, options = load_spec(os.path.join(self.out, search.CHOSEN_SPEC))
        self.assertEqual(options["group_conv"], "split")  # the Edge TPU takes split group convs only
        self.assertTrue(any(b.kind == "varg" for b in spec.blocks))
        print(search.format_summary(summary))
