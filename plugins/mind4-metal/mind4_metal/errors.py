"""C status codes -> Mind4Error subclasses with the library's own sentence."""

from __future__ import annotations

from mind4_core.errors import (
    CheckpointError,
    ContextOverflowError,
    Mind4Error,
    SamplingError,
)

try:  # the core's shared class for bad arrays/values handed to a runtime
    from mind4_core.errors import InputError
except ImportError:  # pragma: no cover - an older core

    class InputError(Mind4Error, ValueError):
        pass


class MetalError(Mind4Error):
    """A failure reported by metal_native (the message carries its status and sentence)."""

    status: str = ""


class MetalCheckpointError(MetalError, CheckpointError):
    """The checkpoint cannot be read, is corrupt, or disagrees with its config."""


class MetalContextOverflowError(MetalError, ContextOverflowError):
    """More tokens than the context holds."""


class MetalSamplingError(MetalError, SamplingError):
    """Invalid sampling parameters, or logits that cannot be sampled (NaN)."""


class MetalInputError(MetalError, InputError):
    """An invalid argument (a token id outside the vocabulary, a wrong offset, ...)."""


class MetalMemoryError(MetalError):
    """An allocation failed (the model or context does not fit in memory)."""


class MetalUnsupportedError(MetalError):
    """Valid, but this build of metal_native cannot do it."""


# status name (the C enum without MIND4_) -> class
_BY_STATUS = {
    "INVALID_ARGUMENT": MetalInputError,
    "UNSUPPORTED": MetalUnsupportedError,
    "IO_ERROR": MetalCheckpointError,
    "OUT_OF_MEMORY": MetalMemoryError,
    "CONTEXT_OVERFLOW": MetalContextOverflowError,
    "CORRUPT_FILE": MetalCheckpointError,
    "CONFIG_MISMATCH": MetalCheckpointError,
    "NOT_FOUND": MetalCheckpointError,
    "INTERNAL_ERROR": MetalError,
}


def error_class(status_name: str, sampling: bool = False) -> type[MetalError]:
    if sampling and status_name == "INVALID_ARGUMENT":
        return MetalSamplingError
    return _BY_STATUS.get(status_name, MetalError)
