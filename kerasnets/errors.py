"""User-facing errors of kerasnets: one sentence naming the bad value and the fix."""


class ModelConfigError(ValueError):
    """A model name, size, width, group count or option that kerasnets cannot build."""
