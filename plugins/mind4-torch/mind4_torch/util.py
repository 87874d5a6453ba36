"""Small tensor helpers shared by the model and its components."""

from __future__ import annotations

import torch


def float32(x: torch.Tensor) -> torch.Tensor:
    """``x.float()``, skipping the call when ``x`` is float32 already: in the decode loop a
    no-op conversion still costs a trip through the dispatcher, about a microsecond."""
    return x if x.dtype == torch.float32 else x.float()


def cast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x.to(dtype)``, skipping the call when ``x`` has that dtype already."""
    return x if x.dtype == dtype else x.to(dtype)
