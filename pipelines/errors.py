"""User-facing errors of pipelines: one sentence naming the bad value and the fix.

Scripts catch :class:`PipelineError` (and the other packages' ``ValueError`` subclasses)
at the boundary and exit with status 2.
"""


class PipelineError(ValueError):
    """Base class of every user error raised by pipelines."""


class DataError(PipelineError):
    """A dataset that cannot be used: missing, empty, wrong shape or dtype, bad labels, NaN/Inf."""


class CheckpointError(PipelineError):
    """A checkpoint that does not belong to the model being trained, or cannot be read."""


class ConfigError(PipelineError):
    """An option value the pipelines cannot honour."""
