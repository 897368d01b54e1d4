"""Refrain's exceptions: one base class, `RefrainError`, and subclasses that
are also the built-in exception a caller already catches (an
`InvalidInputError` is a `ValueError`, ...)."""


class RefrainError(Exception):
    """Base class of every error Refrain raises."""


class InvalidInputError(RefrainError, ValueError):
    """Bad input: NaN or infinite samples, a wrong shape, an empty or too
    short clip, a bad sample rate, an unsupported or damaged file."""


class InvalidTypeError(RefrainError, TypeError):
    """Input of the wrong type: samples that are not float32/float64, a
    sample rate that is not a number."""


class NotFoundError(RefrainError, FileNotFoundError):
    """A file or an index directory that is not there."""


class RefrainOSError(RefrainError, OSError):
    """Another operating-system error reading or writing a file."""


class IncompatibleError(RefrainError, RuntimeError):
    """An index or fingerprint made by another version of Refrain."""


class StateError(RefrainError, RuntimeError):
    """A call the object's state does not allow (an IndexBuilder built twice)."""


__all__ = [
    "RefrainError",
    "InvalidInputError",
    "InvalidTypeError",
    "NotFoundError",
    "RefrainOSError",
    "IncompatibleError",
    "StateError",
]
