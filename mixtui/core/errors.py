"""Errors a user can cause. Each carries one sentence that says what to do, and an exit code."""

from __future__ import annotations


class MixtuiError(Exception):
    """A problem the user can fix; its message is one sentence ending with what to do."""

    exit_code = 1

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail  # e.g. the engine's traceback, shown only with --debug


class UsageError(MixtuiError):
    """Bad command-line usage or input (exit code 2)."""

    exit_code = 2


class ModelNotFound(UsageError):
    """A model key, repo id or path that names nothing."""


class RegistryError(UsageError):
    """A malformed models.toml."""


class ModelNotLocal(MixtuiError):
    """A known model whose weights are not on this machine."""


class ModelDamaged(MixtuiError):
    """A downloaded model with a file that is known to be bad (wrong size, failed its hash)."""
