"""Errors that carry one sentence saying what is wrong and how to fix it."""


class ClamError(Exception):
    """Base class for user-facing errors; the message is meant to be printed as is."""


class ConfigError(ClamError):
    """The configuration asks for something that cannot work."""


class DataError(ClamError):
    """A dataset is missing, corrupt, or does not match the configuration."""


class NonFiniteLossError(ClamError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""
