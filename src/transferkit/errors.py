"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""


import re

# torch's refusal of a pickled object advises retrying with weights_only=False, that is, running the
# file's code; transferkit never passes that advice on.
_TORCH_REFUSAL = "Weights only load failed"
_UNSAFE_ADVICE = re.compile(r"weights_only`? (set to `?)?=?\s*`?False|add_safe_globals|safe_globals\(", re.IGNORECASE)
_UNPICKLER_REASON = re.compile(r"WeightsUnpickler error:\s*(?:Unsupported global: GLOBAL (\S+))?\s*([^\n]*)")


def pickle_refusal(exc: BaseException | str) -> str:
    """What a refused ``torch.load(..., weights_only=True)`` means, without torch's advice to disable it."""
    found = _UNPICKLER_REASON.search(str(exc))
    detail = (found.group(1) or found.group(2).strip()) if found else ""
    return f"it holds pickled Python objects{f' ({detail})' if detail else ''}, not only tensors; refused " \
           "without running them"


def without_unsafe_advice(message: str) -> str:
    """``message`` with torch's advice to load a file with ``weights_only=False`` replaced or dropped."""
    start = message.find(_TORCH_REFUSAL)
    if start >= 0:
        return message[:start] + pickle_refusal(message[start:])
    if not _UNSAFE_ADVICE.search(message):
        return message
    return " ".join(line.strip() for line in message.splitlines() if line.strip() and not _UNSAFE_ADVICE.search(line))


class TransferkitError(Exception):
    """Base class of every error transferkit raises on bad input or bad configuration.

    A message that carries torch's advice to load a file with ``weights_only=False`` loses it here.
    """

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (without_unsafe_advice(args[0]), *args[1:])
        super().__init__(*args)


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
