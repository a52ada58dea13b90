"""Exception hierarchy. Every user-facing fault is a ``PopcountLearnError``.

The CLI turns these into one line on stderr and exit code 2; anything else is a bug and keeps
its traceback.
"""


class PopcountLearnError(Exception):
    """Base class: a fault the user can fix (bad file, bad option, bad data)."""


class DatasetError(PopcountLearnError):
    """A dataset file is missing, malformed, truncated or fails its checksum."""


class ConfigError(PopcountLearnError, ValueError):
    """An invalid configuration value (datapath spec, encoding, training option)."""


class ModelFileError(PopcountLearnError):
    """A file is not a model / weight image, is damaged, or has an unsupported version."""
