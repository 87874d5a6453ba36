"""The one family of user-facing errors.

Every failure a user can cause (a bad file, a bad flag, a bad value) raises a
subclass of :class:`Mind4Error` whose message says *what* was wrong, *where*
(file, field, tensor name) and *what to do*. The CLI prints the message without
a traceback unless ``--debug`` is given.
"""

from __future__ import annotations


class Mind4Error(Exception):
    """Base class of every error Mind 4 reports to a user."""


class ConfigError(Mind4Error):
    """A configuration field is unknown, missing or has an invalid value."""


class CheckpointError(Mind4Error):
    """A checkpoint directory or file cannot be read or does not match its config."""


class PluginError(Mind4Error):
    """A plugin failed to load, or a requested component/backend does not exist."""


class BackendUnavailableError(PluginError):
    """A backend exists but cannot run here (no GPU, missing library, ...)."""


class ContextOverflowError(Mind4Error):
    """More tokens than the model's context (or the session's cache) can hold."""


class SamplingError(Mind4Error):
    """Invalid sampling parameters (temperature < 0, top_p outside (0, 1], ...)."""


class InputError(Mind4Error, ValueError):
    """An array handed to a component or runtime has the wrong shape, dtype or values."""


class TokenizerError(Mind4Error):
    """A tokenizer cannot be found, loaded, trained or used as asked."""
