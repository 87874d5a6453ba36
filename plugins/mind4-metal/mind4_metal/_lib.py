"""Loads the compiled module and turns C status codes into exceptions."""

from __future__ import annotations

from .errors import MetalError, error_class

try:
    from ._native import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the installation
    from mind4_core.errors import BackendUnavailableError

    raise BackendUnavailableError(
        "the mind4-metal native module is not built: install the plugin with "
        "`pip install plugins/mind4-metal` (needs CMake >= 3.20 and a C11 compiler), or run "
        f"`python plugins/mind4-metal/build_ffi.py --inplace` in a checkout ({exc})"
    ) from exc

STATUS_NAMES = {
    getattr(lib, "MIND4_" + name): name
    for name in (
        "SUCCESS",
        "INVALID_ARGUMENT",
        "UNSUPPORTED",
        "IO_ERROR",
        "OUT_OF_MEMORY",
        "CONTEXT_OVERFLOW",
        "CORRUPT_FILE",
        "CONFIG_MISMATCH",
        "NOT_FOUND",
        "INTERNAL_ERROR",
    )
}

if lib.mind4_api_version() != lib.MIND4_API_VERSION:  # pragma: no cover
    raise MetalError(
        f"mind4_metal._native was built for C API {lib.MIND4_API_VERSION} but links "
        f"{lib.mind4_api_version()}; reinstall mind4-metal"
    )


def last_error() -> str:
    return ffi.string(lib.mind4_last_error()).decode("utf-8", errors="replace")


def check(status: int, what: str, *, sampling: bool = False) -> None:
    """Raise the Mind4Error subclass matching a non-zero status."""
    if status == 0:
        return
    name = STATUS_NAMES.get(status, f"status {status}")
    sentence = last_error() or ffi.string(lib.mind4_status_string(status)).decode()
    err = error_class(name, sampling)(f"{what}: {sentence} [metal_native: {name.lower()}]")
    err.status = name
    raise err
