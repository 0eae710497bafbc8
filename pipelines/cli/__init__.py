"""absl command-line scripts: kerasnets-train, kerasnets-quantize and kerasnets-run (thin wrappers)."""
import json
import sys

from export.partition import PartitionError
from export.profiles import ProfileError
from export.runtime import ArtifactError
from export.tflite import ExportError
from kerasnets.errors import DataError, ModelConfigError
from kerasnets.io import plain
from pipelines.errors import PipelineError


def user_errors():
    """ValueError subclasses that mean bad user input (exit 2 with one sentence)."""
    return (PipelineError, DataError, ExportError, ArtifactError, ModelConfigError, ProfileError, PartitionError)


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def emit(summary, as_json):
    if as_json:
        print(json.dumps(summary, sort_keys=True, default=plain))
