"""Test set-up: Keras 2 (tf_keras) before TensorFlow is imported, quiet logs."""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
