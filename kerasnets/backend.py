"""The one place that knows how Keras is imported.

tfmot only works with Keras 2 (the ``tf_keras`` package), so ``TF_USE_LEGACY_KERAS=1``
must be set before TensorFlow is first imported. Every module of kerasnets, pipelines
and export imports ``keras`` and ``tf`` from here.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ["TF_USE_LEGACY_KERAS"] != "1":
    raise RuntimeError(
        f"TF_USE_LEGACY_KERAS={os.environ['TF_USE_LEGACY_KERAS']!r} but kerasnets needs Keras 2 "
        "(tf_keras) for tfmot; unset it or set it to 1 before importing kerasnets.")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

layers = keras.layers

__all__ = ["tf", "keras", "layers"]
