"""Errors of the evaluation harness (all :class:`~mind4_core.errors.Mind4Error`)."""

from __future__ import annotations

from mind4_core.errors import Mind4Error


class EvalError(Mind4Error):
    """An eval cannot run as asked (unknown eval name, bad option, no results)."""


class DatasetError(EvalError):
    """A dataset file is missing, unreadable, empty or in the wrong format."""


class SamplerError(EvalError):
    """A sampler could not produce a response (engine failure, HTTP error, bad reply)."""
