"""absl command-line scripts: kerasnets-train and kerasnets-quantize (thin wrappers)."""
import json
import sys

def user_errors():
    """ValueError subclasses that mean bad user input (exit 2 with one sentence)."""
    from export.runtime import ArtifactError
    from export.tflite import ExportError
    from kerasnets.errors import ModelConfigError
    from pipelines.errors import PipelineError
    return (PipelineError, ExportError, ArtifactError, ModelConfigError)


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def emit(summary, as_json):
    if as_json:
        print(json.dumps(summary, sort_keys=True, default=str))
