"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


class TransferkitError(Exception):
    """Base class of every error transferkit raises on bad input or bad configuration."""


class DataError(TransferkitError):
    """Unreadable, corrupt or inconsistent user data (names the file, column or value)."""


class BackboneError(TransferkitError):
    """Unknown backbone name, unavailable source, or weights that do not load."""


class ConfigError(TransferkitError):
    """An option value that makes no sense (unknown strategy, bad learning rate, ...)."""


class ArtifactError(TransferkitError):
    """A run directory that is missing, incomplete or from an incompatible version."""


class NotFittedError(TransferkitError, AttributeError):
    """predict/score called before fit."""
