"""Test set-up: Keras 2 (tf_keras) before TensorFlow is imported, quiet logs."""
import atexit
import os
import shutil
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The tests never write the user's cache: kerasnets-run's quick host calibration (export.hostfit) caches
# its profile in a folder of this test session (child processes inherit it).
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="kerasnets-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)
