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


def quantise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x [..., rows, cols]`` (cols a multiple of 32) -> ``(blocks, scales, values)``.

    The rule of the reference oracle (``mind4_specs.oracle.mxfp4_encode``): a
    block's scale is the smallest power of two with ``amax / scale <= 6``; each
    value rounds to the nearest FP4 value, a tie going to the even code.
    Rounding is arithmetic (FP4 steps are 0.5 below 2, 1 below 4, 2 up to 6), not
    a search; ``values`` are the dequantised numbers, so a caller can measure the
    quantisation error without decoding.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2 or x.shape[-1] % BLOCK:
        raise CheckpointError(
            f"MXFP4 needs [..., rows, cols] with cols % 32 == 0, got {list(x.shape)}"
        )
    *lead, cols = x.shape
    groups = x.reshape(*lead, cols // BLOCK, BLOCK)  # (..., G, 32)
    amax = np.abs(groups).max(axis=-1)  # (..., G)
    # exact ceil(log2(amax / 6)): amax/6 = m·2^p with m in [0.5, 1)
    mantissa, power = np.frexp(amax.astype(np.float64) / 6.0)
    exponent = np.where(amax > 0, power - (mantissa == 0.5), -127)
    exponent = np.clip(exponent, -127, 127).astype(np.int32)  # (..., G)
    scaled = groups * np.ldexp(np.float32(1.0), -exponent)[..., None]  # exact, |.| <= 6
    mag = np.abs(scaled)
    # np.rint rounds half to even, and in each range the code's parity is rint's parity
    code = np.where(
        mag < 2, np.rint(mag * 2), np.where(mag < 4, np.rint(mag) + 2, np.rint(mag * 0.5) + 4)
    ).astype(np.uint8)  # (..., G, 32), codes 0..7
    code |= ((scaled < 0) & (code > 0)).view(np.uint8) << 3  # sign bit; zeros stay +0
    blocks = code[..., 0::2] | (code[..., 1::2] << 4)  # (..., G, 16), low nibble even
    values = FP4_VALUES[code] * np.ldexp(np.float32(1.0), exponent)[..., None]
    return blocks, (exponent + 127).astype(np.uint8), values.reshape(x.shape)


def encode(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Quantise ``x [..., rows, cols]`` to MXFP4 ``(blocks, scales)`` (see :func:`quantise`)."""
    blocks, scales, _ = quantise(x)
    return blocks, scales
