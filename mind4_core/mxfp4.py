"""MXFP4 (OCP microscaling FP4) in NumPy: decode and encode.

A block is 32 values sharing one E8M0 scale (an exponent with bias 127). Each
value is FP4 E2M1, code 0-15 (sign bit 3). Two codes share a byte: the **low
nibble is the even element**.

    blocks: uint8 [..., rows, cols/32, 16]     scales: uint8 [..., rows, cols/32]
    value  = FP4_VALUES[code] * 2**(scale - 127)
"""

from __future__ import annotations

import numpy as np

from .errors import CheckpointError

BLOCK = 32
FP4_VALUES = np.array(
    [
        +0.0,
        +0.5,
        +1.0,
        +1.5,
        +2.0,
        +3.0,
        +4.0,
        +6.0,
        -0.0,
        -0.5,
        -1.0,
        -1.5,
        -2.0,
        -3.0,
        -4.0,
        -6.0,
    ],
    dtype=np.float32,
)


def check_pair(
    blocks_shape: tuple[int, ...], scales_shape: tuple[int, ...], name: str = ""
) -> None:
    """Raise if a blocks/scales pair does not describe the same matrix."""
    where = f" for {name}" if name else ""
    if len(blocks_shape) < 2 or blocks_shape[-1] != BLOCK // 2:
        raise CheckpointError(
            f"MXFP4 blocks{where} must have shape [..., rows, cols/32, 16], got {list(blocks_shape)}"
        )
    if tuple(blocks_shape[:-1]) != tuple(scales_shape):
        raise CheckpointError(
            f"MXFP4 blocks and scales{where} disagree: blocks {list(blocks_shape)} needs scales "
            f"{list(blocks_shape[:-1])}, got {list(scales_shape)}"
        )


def logical_shape(blocks_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the dequantised matrix: ``[..., rows, cols]``."""
    return (*blocks_shape[:-2], blocks_shape[-2] * BLOCK)


def decode(blocks: np.ndarray, scales: np.ndarray, out_dtype=np.float32) -> np.ndarray:
    """Dequantise ``blocks``/``scales`` to ``[..., rows, cols]``."""
    check_pair(blocks.shape, scales.shape)
    blocks = np.asarray(blocks, dtype=np.uint8)
    low = FP4_VALUES[blocks & 0x0F]  # even elements
    high = FP4_VALUES[blocks >> 4]  # odd elements
    values = np.stack([low, high], axis=-1).reshape(*blocks.shape[:-1], BLOCK)
    exponent = np.asarray(scales, dtype=np.int32) - 127
    values = np.ldexp(values, exponent[..., None])
    return values.reshape(logical_shape(blocks.shape)).astype(out_dtype, copy=False)


def encode(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantise ``x [..., rows, cols]`` (cols a multiple of 32) to MXFP4.

    The scale of a block is the smallest power of two that brings the block's
    largest magnitude within FP4's range (6.0); each value then rounds to the
    nearest FP4 value (ties to the even code)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2 or x.shape[-1] % BLOCK:
        raise CheckpointError(
            f"MXFP4 needs [..., rows, cols] with cols % 32 == 0, got {list(x.shape)}"
        )
    groups = x.reshape(*x.shape[:-1], x.shape[-1] // BLOCK, BLOCK)
    amax = np.abs(groups).max(axis=-1)
    with np.errstate(divide="ignore"):
        exponent = np.where(amax > 0, np.ceil(np.log2(np.maximum(amax, 1e-38) / 6.0)), -127)
    exponent = np.clip(exponent, -127, 127).astype(np.int32)
    scaled = groups / np.ldexp(np.float32(1.0), exponent)[..., None]
    # nearest code among the 8 magnitudes; sign bit separately
    magnitudes = FP4_VALUES[:8]
    idx = np.abs(np.abs(scaled)[..., None] - magnitudes).argmin(axis=-1).astype(np.uint8)
    codes = idx | np.where(scaled < 0, 8, 0).astype(np.uint8)
    codes = np.where(idx == 0, 0, codes).astype(np.uint8)  # no negative zero
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    scales = (exponent + 127).astype(np.uint8)
    return blocks, scales
