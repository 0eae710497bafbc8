"""User-facing errors of kerasnets: one sentence naming the bad value and the fix."""


class ModelConfigError(ValueError):
    """A model name, size, width, group count or option that kerasnets cannot build."""


class DataError(ValueError):
    """A dataset that cannot be used: missing, empty, wrong shape or dtype, bad labels, NaN/Inf."""


class CheckpointError(ModelConfigError):
    """A checkpoint that cannot be imported: unreadable, of another family or width, or incomplete."""
