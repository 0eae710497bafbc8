"""absl command-line scripts: kerasnets-train, kerasnets-quantize and kerasnets-run (thin wrappers).

Each script raises the project's errors (:class:`kerasnets.errors.KerasnetsError`) and leaves the
exit to :func:`kerasnets.cli.run_main`: one ``error:`` sentence and exit 2 for a user error.
"""
import json

from kerasnets.cli import user_errors
from kerasnets.io import plain

__all__ = ["emit", "user_errors"]


def emit(summary, as_json):
    if as_json:
        print(json.dumps(summary, sort_keys=True, default=plain))
