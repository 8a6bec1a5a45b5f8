"""Exceptions a user can act on: each names the file (or setting) and what is wrong."""

from __future__ import annotations


class EmofeatError(Exception):
    """Base class of every error emofeat raises on purpose."""


class MediaError(EmofeatError):
    """An input cannot be read or decoded (missing, empty, corrupt, unsupported)."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


class SkipExtractor(EmofeatError):
    """An extractor does not apply to an input (for example: no audio track).

    The engine records the pair as *skipped* with this message as the reason; it is not a
    failure of the run.
    """


class ConfigError(EmofeatError):
    """A setting is unknown or has a value of the wrong type."""


class StoreError(EmofeatError):
    """The feature store cannot be opened, written or read."""


class StoreInUseError(StoreError):
    """Another process is writing the store."""


class StoreWriteError(StoreError):
    """Writing to the store failed (disk full, over quota, read-only, I/O error).

    Nothing can be gained by going on with the other inputs, so a run stops at the first one
    (everything committed before stays). ``path`` is the file being written, ``errno`` the
    system's error number.
    """

    def __init__(self, path: object, error: OSError) -> None:
        cause = error.strerror or str(error) or type(error).__name__
        cause = cause[:1].lower() + cause[1:]
        super().__init__(f"{path}: cannot write: {cause}")
        self.path = str(path)
        self.errno = error.errno
        self.cause = cause


class UnknownExtractorError(EmofeatError, KeyError):
    """No installed plugin provides an extractor of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
