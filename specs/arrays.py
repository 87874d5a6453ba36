"""Moving spec inputs into a component's own array type and results back.

A record's ``array_type`` names the array library its component consumes
(``"torch"`` for the torch and triton backends, ``"numpy"`` for host
components). Specs make inputs in NumPy float64, convert them with
:meth:`Arrays.put` to the component's type and dtype, and read results back
as float64 with :meth:`Arrays.get`. The reference is computed from the inputs
*as the component received them* (``get(put(x))``), so the tolerance measures
the component's arithmetic, not the rounding of its inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mind4_core.errors import PluginError

_NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "float64": np.float64}


class NumpyArrays:
    """Host arrays. bfloat16 has no NumPy type: values are rounded to bf16 and kept in float32."""

    name = "numpy"

    def __init__(self, device: str = "cpu"):
        self.device = device

    def put(self, x: np.ndarray, dtype: str | None = None) -> np.ndarray:
        x = np.asarray(x)
        if dtype is None:
            return x.copy()
        if dtype == "bfloat16":
            from mind4_core.checkpoint import bf16_bits_to_float32, to_bf16_bits

            return bf16_bits_to_float32(to_bf16_bits(x.astype(np.float32)))
        return x.astype(_NUMPY_DTYPES[dtype])

    def get(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        return x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x

    def dtype_name(self, x: Any) -> str:
        return str(np.asarray(x).dtype)


class TorchArrays:
    """``torch.Tensor`` on the component's device (torch is imported on first use)."""

    name = "torch"

    def __init__(self, device: str = "cpu"):
        import torch

        self.torch = torch
        self.device = device

    def put(self, x: np.ndarray, dtype: str | None = None) -> Any:
        t = self.torch.from_numpy(np.ascontiguousarray(x))
        if dtype is not None:
            t = t.to(getattr(self.torch, dtype))
        return t.to(self.device)

    def get(self, x: Any) -> np.ndarray:
        if not isinstance(x, self.torch.Tensor):
            return NumpyArrays().get(x)
        x = x.detach().cpu()
        if x.is_floating_point():
            return x.to(self.torch.float64).numpy()
        return x.numpy()

    def dtype_name(self, x: Any) -> str:
        return str(x.dtype).removeprefix("torch.")


ADAPTERS = {"numpy": NumpyArrays, "torch": TorchArrays}


def arrays_for(array_type: str, device: str = "cpu"):
    """The adapter for ``array_type`` on ``device``."""
    try:
        adapter = ADAPTERS[array_type]
    except KeyError:
        raise PluginError(
            f"the conformance specs cannot feed {array_type!r} arrays; known array types: "
            f"{', '.join(ADAPTERS)}. Add an adapter to mind4_specs.arrays.ADAPTERS."
        ) from None
    return adapter(device)
