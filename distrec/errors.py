"""Errors a user can act on: each names the file, column or key at fault and what was expected."""


class DistrecError(Exception):
    """Base class for every user-facing distrec error."""


class ConfigError(DistrecError):
    """A config file or override is invalid (unknown key, wrong type, missing value)."""


class DataError(DistrecError):
    """Input data is missing, unreadable or does not match the feature schema."""


class CheckpointError(DistrecError):
    """A checkpoint is missing, incomplete or incompatible with the model."""


class RunLockError(DistrecError):
    """Another run holds the run directory (one writer per run directory)."""


class ClusterError(DistrecError):
    """The Ray cluster cannot place the workers a config asks for."""
