"""Errors of the torch backend: all are :class:`mind4_core.errors.Mind4Error` s."""

from __future__ import annotations

from mind4_core.errors import ContextOverflowError, InputError

__all__ = ["ContextOverflowError", "InputError"]
