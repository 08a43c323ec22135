"""The one start-up error of model preparation."""

from __future__ import annotations


class ModelError(RuntimeError):
    """A model that cannot be prepared or loaded; the message says what to do."""
