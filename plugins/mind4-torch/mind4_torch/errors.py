"""Errors of the torch backend: all are :class:`mind4_core.errors.Mind4Error` s."""

from __future__ import annotations

from mind4_core.errors import ContextOverflowError, Mind4Error

__all__ = ["ContextOverflowError", "InputError"]


class InputError(Mind4Error, ValueError):
    """An array handed to the backend has the wrong shape, dtype or values."""
