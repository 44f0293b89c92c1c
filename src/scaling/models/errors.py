"""The models package's one error type, below every module that raises it."""

from __future__ import annotations

from scaling.errors import LocatedError


class ModelLoadError(LocatedError, RuntimeError):
    """A model or tokenizer could not be built; the message says what to do instead."""
