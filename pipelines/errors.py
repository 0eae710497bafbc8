"""User-facing errors of pipelines: one sentence naming the bad value and the fix.

Scripts catch :class:`PipelineError` (and the other packages' ``ValueError`` subclasses)
at the boundary and exit with status 2. :class:`DataError` is :class:`kerasnets.errors.DataError`
(the dataset readers live in :mod:`kerasnets.datasets`), re-exported here.
"""
from kerasnets.errors import DataError, KerasnetsError

__all__ = ["CheckpointError", "ConfigError", "DataError", "PipelineError"]


class PipelineError(KerasnetsError, ValueError):
    """Base class of every user error raised by pipelines."""


class CheckpointError(PipelineError):
    """A checkpoint that does not belong to the model being trained, or cannot be read."""


class ConfigError(PipelineError):
    """An option value the pipelines cannot honour."""
