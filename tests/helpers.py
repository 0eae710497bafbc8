"""What the test packages share: the repository root, seeded inputs, randomized BatchNorm,
running a script, and the split of per-model sweeps between the two test tiers.

``make check`` runs the tests not marked ``slow``; ``make test`` runs them all. A sweep over
the zoo runs one model of each structural kind in the fast tier and the rest only in the full
suite, so both tiers still touch every block kind.
"""
import os
import subprocess
import sys

import numpy as np

from kerasnets.stats import randomize_batch_norm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One model per structural kind: inverted residual (depthwise), group conv + shuffle + pools,
# RepGhost re-parameterization, SE + hard-swish.
FAST_MODELS = ("mobilenet_v2_035", "shufflenet_v1_g3_x0_5", "repghostnet_050", "mobilenet_v3_small_100")


def split_sweep(names):
    """(fast, slow) halves of a model sweep, each as absl ``parameters`` tuples."""
    return ([(n,) for n in names if n in FAST_MODELS], [(n,) for n in names if n not in FAST_MODELS])


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
