"""Errors of the Triton backend (all :class:`mind4_core.errors.Mind4Error`)."""

from __future__ import annotations

from mind4_core.errors import Mind4Error


class TritonInputError(Mind4Error, ValueError):
    """An array handed to a Triton component or runtime has the wrong shape, dtype or device."""
