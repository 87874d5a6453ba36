"""Safetensors files, read memory-mapped and written tensor by tensor.

The format: an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
(``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``),
then the raw little-endian data; offsets are relative to the end of the header.

Reading validates everything before any tensor is touched (header length,
JSON, dtypes, shapes, offsets inside the file, byte counts, no overlaps), so a
truncated or corrupt file is an error naming the file and the tensor, never a
crash. Nothing is ever unpickled. Writing streams one tensor at a time into a
temporary file that replaces the target only when complete.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from .errors import CheckpointError

#: safetensors dtype -> NumPy dtype of the raw data (bfloat16 is kept as uint16 bits)
DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
NUMPY_TO_DTYPE = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}
MAX_HEADER = 100 * 1024 * 1024
ALIGN = 64


@attrs.frozen
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute byte offset in the file
    end: int
    file: Path

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def _numel(shape: Iterable[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class SafetensorsFile:
    """One ``.safetensors`` file, validated and memory-mapped."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 - kept open for the mmap
        except FileNotFoundError:
            raise CheckpointError(f"missing safetensors file: {self.path}") from None
        except OSError as exc:
            raise CheckpointError(f"cannot open {self.path}: {exc}") from None
        try:
            self.size = os.fstat(self._fh.fileno()).st_size
            self.metadata, self.tensors = self._read_header()
            self._mmap = (
                mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ) if self.size else None
            )
        except BaseException:
            self._fh.close()
            raise

    def _fail(self, what: str) -> CheckpointError:
        return CheckpointError(
            f"{self.path}: {what}. The file is corrupt or truncated; re-create or re-download it."
        )

    def _read_header(self) -> tuple[dict[str, str], dict[str, TensorInfo]]:
        if self.size < 8:
            raise self._fail(f"file is {self.size} bytes, too short for a safetensors header")
        (n,) = struct.unpack("<Q", self._fh.read(8))
        if n > MAX_HEADER or 8 + n > self.size:
            raise self._fail(f"header length {n} does not fit in a file of {self.size} bytes")
        try:
            header = json.loads(self._fh.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._fail(f"header is not valid JSON ({exc})") from None
        if not isinstance(header, dict):
            raise self._fail("header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict):
            raise self._fail("__metadata__ is not an object")
        data_start = 8 + n
        tensors: dict[str, TensorInfo] = {}
        for name, entry in header.items():
            tensors[name] = self._check_entry(name, entry, data_start)
        spans = sorted((t.begin, t.end, t.name) for t in tensors.values() if t.nbytes)
        for (_, end_a, name_a), (begin_b, _, name_b) in zip(spans, spans[1:]):
            if begin_b < end_a:
                raise self._fail(f"tensors {name_a!r} and {name_b!r} overlap")
        return metadata, tensors

    def _check_entry(self, name: str, entry: Any, data_start: int) -> TensorInfo:
        if not isinstance(entry, dict):
            raise self._fail(f"entry for tensor {name!r} is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if dtype not in DTYPES:
            raise self._fail(f"tensor {name!r} has unsupported dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape
        ):
            raise self._fail(f"tensor {name!r} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        ):
            raise self._fail(f"tensor {name!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        expected = _numel(shape) * DTYPES[dtype].itemsize
        if begin < 0 or end < begin or end - begin != expected:
            raise self._fail(
                f"tensor {name!r} declares {end - begin} bytes but dtype {dtype} and shape "
                f"{shape} need {expected}"
            )
        if data_start + end > self.size:
            raise self._fail(
                f"tensor {name!r} ends at byte {data_start + end} past the end of the file "
                f"({self.size} bytes)"
            )
        return TensorInfo(
            name, dtype, tuple(shape), data_start + begin, data_start + end, self.path
        )

    def array(self, name: str) -> np.ndarray:
        """The raw tensor as a read-only NumPy view of the mapped file."""
        info = self.tensors[name]
        dtype = DTYPES[info.dtype]
        if info.nbytes == 0 or self._mmap is None:
            return np.zeros(info.shape, dtype=dtype)
        return np.frombuffer(
            self._mmap, dtype=dtype, count=info.nbytes // dtype.itemsize, offset=info.begin
        ).reshape(info.shape)

    def release(self, name: str) -> None:
        """Drop a tensor's mapped pages from this process's resident memory.

        The data stays on disk (and usually in the page cache); the next access
        maps it back in. Streaming tools call this after each tensor so their
        resident memory stays near one tensor instead of growing with the file.
        """
        info = self.tensors[name]
        if self._mmap is None or info.nbytes == 0 or not hasattr(mmap, "MADV_DONTNEED"):
            return
        start = info.begin - info.begin % mmap.PAGESIZE
        self._mmap.madvise(mmap.MADV_DONTNEED, start, info.end - start)

    def close(self) -> None:
        # Arrays handed out keep the mapping alive; closing the file handle is enough.
        self._fh.close()

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@attrs.frozen
class TensorSpec:
    """What the writer will write: name, safetensors dtype, shape."""

    name: str
    dtype: str
    shape: tuple[int, ...] = attrs.field(converter=tuple)


class SafetensorsWriter:
    """Write tensors one at a time, in the order of ``specs``.

    The header is computed from the specs up front, so the peak memory is one
    tensor (or one piece of it, see :meth:`write_parts`). Data goes to
    ``<path>.tmp`` and is renamed over ``path`` by :meth:`close` only after
    every tensor was written and flushed.

    The data section follows the safetensors rules that the reference library
    enforces: tensors are packed back to back (no gaps), and the header is
    padded with spaces so the data starts on a 64-byte boundary. Tensors are
    laid out by decreasing item size (stable), so every tensor starts at a
    multiple of its own item size and a memory map can read it aligned; the
    writer seeks, so callers still write in the order of ``specs``.
    """

    def __init__(
        self,
        path: str | Path,
        specs: Iterable[TensorSpec],
        metadata: Mapping[str, str] | None = None,
    ):
        self.path = Path(path)
        self.specs = list(specs)
        header: dict[str, Any] = {}
        if metadata:
            header["__metadata__"] = dict(metadata)
        for spec in self.specs:
            if spec.dtype not in DTYPES:
                raise CheckpointError(
                    f"cannot write tensor {spec.name!r}: unknown dtype {spec.dtype!r}"
                )
        self._offsets: dict[str, int] = {}
        offset = 0
        for spec in sorted(self.specs, key=lambda s: -DTYPES[s.dtype].itemsize):
            nbytes = _numel(spec.shape) * DTYPES[spec.dtype].itemsize
            header[spec.name] = {
                "dtype": spec.dtype,
                "shape": list(spec.shape),
                "data_offsets": [offset, offset + nbytes],
            }
            self._offsets[spec.name] = offset
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-(8 + len(raw)) % ALIGN)
        self._data_start = 8 + len(raw)
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        self._fh = open(self._tmp, "wb")  # noqa: SIM115
        self._fh.write(struct.pack("<Q", len(raw)) + raw)
        self._fh.truncate(self._data_start + offset)
        self._next = 0

    def write(self, name: str, array: np.ndarray) -> None:
        spec = self.specs[self._next]
        if name != spec.name:
            raise CheckpointError(f"writer expected tensor {spec.name!r} next, got {name!r}")
        array = np.asarray(array)
        if tuple(array.shape) != spec.shape or array.dtype != DTYPES[spec.dtype]:
            raise CheckpointError(
                f"tensor {name!r}: expected {spec.dtype} {list(spec.shape)}, got {array.dtype} "
                f"{list(array.shape)}"
            )
        self.write_parts(name, [array])

    def write_parts(self, name: str, parts: Iterable[np.ndarray]) -> None:
        """Write the next tensor as consecutive pieces of its row-major data.

        Each piece is an array of the tensor's dtype (any shape); together they
        must hold exactly the tensor's bytes. Only one piece is in memory at a
        time, so a tensor larger than memory can be produced chunk by chunk.
        """
        spec = self.specs[self._next]
        if name != spec.name:
            raise CheckpointError(f"writer expected tensor {spec.name!r} next, got {name!r}")
        dtype = DTYPES[spec.dtype]
        expected = _numel(spec.shape) * dtype.itemsize
        self._fh.seek(self._data_start + self._offsets[name])
        written = 0
        for part in parts:
            part = np.asarray(part)
            if part.dtype != dtype:
                raise CheckpointError(
                    f"tensor {name!r}: expected {spec.dtype} data, got a piece of {part.dtype}"
                )
            part = np.ascontiguousarray(part.astype(dtype.newbyteorder("<"), copy=False))
            written += part.nbytes
            if written > expected:
                break
            self._fh.write(memoryview(part.reshape(-1)).cast("B"))
        if written != expected:
            raise CheckpointError(
                f"tensor {name!r}: expected {expected} bytes ({spec.dtype} {list(spec.shape)}), "
                f"got {'more than ' if written > expected else ''}{written}"
            )
        self._next += 1

    def close(self) -> None:
        if self._next != len(self.specs):
            self.abort()
            missing = [s.name for s in self.specs[self._next :]]
            raise CheckpointError(
                f"{self.path}: not all tensors were written (missing {missing[:3]}...)"
            )
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._fh.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(self, exc_type, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_file(
    path: str | Path, tensors: Mapping[str, tuple[str, np.ndarray]] | Mapping[str, np.ndarray]
) -> None:
    """Write a small dict of tensors (``name -> array`` or ``name -> (dtype, array)``)."""
    items = []
    for name, value in tensors.items():
        if isinstance(value, tuple):
            dtype, array = value
        else:
            array = np.asarray(value)
            dtype = NUMPY_TO_DTYPE[array.dtype]
        items.append((TensorSpec(name, dtype, array.shape), array))
    with SafetensorsWriter(path, [s for s, _ in items]) as writer:
        for spec, array in items:
            writer.write(spec.name, array)
