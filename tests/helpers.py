"""What the test packages share: the repository root, seeded inputs, randomized BatchNorm,
running a script, and the split of per-model sweeps between the two test tiers.

``make check`` runs the tests not marked ``slow``; ``make test`` runs them all. A sweep over
the zoo runs one model of each structural kind in the fast tier and the rest only in the full
suite, so both tiers still touch every block kind.
"""
import contextlib
import functools
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import types
from unittest import mock

import numpy as np
from absl import flags
from absl.testing import flagsaver, parameterized

from kerasnets.stats import randomize_batch_norm
from tests.fixtures import synth

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# One model per structural kind: group conv + shuffle + pools, RepGhost re-parameterization,
# inverted residuals with SE + hard-swish (plain MobileNetV2 blocks run in most other fast tests).
FAST_MODELS = ("shufflenet_v1_g3_x0_5", "repghostnet_050", "mobilenet_v3_small_100")


@functools.lru_cache(maxsize=None)
def shared_spec_coster(shape=(96, 96, 3), classes=10):
    """One :class:`kerasnets.export.speccost.SpecCoster` per (shape, classes) for the whole test process:
    the zoo sweeps of test_speccost and test_op_kinds build each block once between them."""
    from kerasnets.export.speccost import SpecCoster
    return SpecCoster(tuple(shape), classes=classes)


def split_sweep(names, fast=FAST_MODELS):
    """(fast, slow) halves of a model sweep, each as absl ``parameters`` tuples."""
    return ([(n,) for n in names if n in fast], [(n,) for n in names if n not in fast])


def random_images(n=16, size=48, seed=1, width=None):
    """Seeded float32 NHWC images, uniform in [-1, 1]."""
    shape = (n, size, size if width is None else width, 3)
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


def randomized_bn(model, seed=0):
    """Give every BatchNorm of ``model`` non-trivial statistics (so folding and import errors show)."""
    return randomize_batch_norm(model, seed, gamma=(0.8, 1.5), beta_std=0.5, mean_std=0.1, variance=(0.5, 1.0))


def run_module(module, *args, env=None, timeout=300):
    """``python -m module args`` from the repository root; the completed process, output captured."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_USE_LEGACY_KERAS="1", PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout)


def run_cli(module, *args):
    """Run a script's ``run()`` in this process, as ``python -m module args`` would.

    Returns an object with ``returncode``, ``stdout`` and ``stderr`` like :func:`run_module`, in
    a fraction of its time (no new interpreter, no second TensorFlow import). The flags are
    reset before and restored after, so runs do not leak into each other.
    """
    script = importlib.import_module(module)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with flagsaver.flagsaver(), mock.patch.object(sys, "argv", [module, *args]), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        flags.FLAGS.unparse_flags()
        try:
            script.run()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


class TempFoldersTestCase(parameterized.TestCase):
    """A test class that removes the folders listed in its ``TEMP`` (filled by its cases) when done."""
    TEMP = []

    @classmethod
    def tearDownClass(cls):
        while cls.TEMP:
            shutil.rmtree(cls.TEMP.pop(), ignore_errors=True)
        super().tearDownClass()


def check_bad_call(test, call, words):
    """``call()`` must raise the project's own error, one line, naming every string in ``words``."""
    from kerasnets.errors import KerasnetsError
    with test.assertRaises(KerasnetsError) as caught:
        call()
    message = str(caught.exception)
    for word in words:
        test.assertIn(word, message)
    test.assertLen(message.strip().splitlines(), 1, message)


def load_case(case):
    """(metadata, input, reference logits) of reference fixture ``tests/fixtures/<case>``."""
    with open(os.path.join(FIXTURES, case, "case.json")) as f:
        meta = json.load(f)
    ref = np.load(os.path.join(FIXTURES, case, "reference.npz"))
    return meta, ref["input"], ref["logits"]


def write_checkpoint(meta, folder, keys=None):
    """The fixture's state dict, in its source's format, under ``folder``; returns the path to load.

    ``keys`` optionally rewrites the tensor dict first (to make a broken checkpoint).
    """
    from safetensors.numpy import save_file
    tensors = synth.synth_state_dict(meta["seed"], meta["tensors"])
    if keys is not None:
        tensors = keys(tensors)
    fmt = meta["checkpoint"]["format"]
    if fmt == "megvii_pth":  # Megvii's checkpoints come from DataParallel: keys start with "module."
        tensors = {f"module.{k}": v for k, v in tensors.items()}
    if fmt == "hf_snapshot":
        path = os.path.join(folder, meta["case"])
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(meta["checkpoint"]["config"], f)
        save_file(tensors, os.path.join(path, "model.safetensors"))
        return path
    path = os.path.join(folder, f"{meta['case']}.safetensors")
    save_file(tensors, path)
    return path
