"""Checkpoints: a directory with ``config.json`` and ``*.safetensors`` files.

Tensor names are the canonical gpt-oss ones (``embedding.weight``,
``block.{n}.attn.qkv.weight``, ...; see :func:`expected_tensors`). Expert
weights may be stored in MXFP4 as ``<name>.blocks`` + ``<name>.scales``; a
:class:`Checkpoint` shows such a pair under its logical name.

Opening a checkpoint validates every tensor's presence, shape and dtype against
the config before anything uses it; arrays are memory-mapped, never copied.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from . import mxfp4
from .config import ModelConfig, model_config_from_dict, read_json
from .errors import CheckpointError, ConfigError
from .safetensors_io import (
    NUMPY_TO_DTYPE,
    SafetensorsFile,
    SafetensorsWriter,
    TensorInfo,
    TensorSpec,
)

FLOAT_DTYPES = ("F32", "BF16", "F16")
EXPERT_WEIGHTS = ("mlp1_weight", "mlp2_weight")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
INDEX_FILE = "model.safetensors.index.json"


# ----------------------------------------------------------------------------- bf16


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns (uint16), rounding to nearest even."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    out = (rounded >> 16).astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = 0x7FC0
    return out


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


@attrs.frozen
class BF16:
    """Marks a uint16 array as bfloat16 bits for :func:`write_checkpoint`."""

    bits: np.ndarray


# ----------------------------------------------------------------------------- layout


@attrs.frozen
class Expected:
    """One canonical tensor: its logical shape and whether MXFP4 is allowed."""

    name: str
    shape: tuple[int, ...]
    mxfp4_ok: bool = False


def expected_tensors(cfg: ModelConfig) -> list[Expected]:
    """Every tensor of the canonical layout, in file order."""
    h, v, e = cfg.hidden_size, cfg.vocab_size, cfg.num_experts
    nq, d, i = cfg.num_attention_heads, cfg.head_dim, cfg.intermediate_size
    out = [Expected("embedding.weight", (v, h))]
    for n in range(cfg.num_hidden_layers):
        b = f"block.{n}"
        out += [
            Expected(f"{b}.attn.norm.scale", (h,)),
            Expected(f"{b}.attn.qkv.weight", (cfg.qkv_dim, h)),
            Expected(f"{b}.attn.qkv.bias", (cfg.qkv_dim,)),
            Expected(f"{b}.attn.sinks", (nq,)),
            Expected(f"{b}.attn.out.weight", (h, nq * d)),
            Expected(f"{b}.attn.out.bias", (h,)),
            Expected(f"{b}.mlp.norm.scale", (h,)),
            Expected(f"{b}.mlp.gate.weight", (e, h)),
            Expected(f"{b}.mlp.gate.bias", (e,)),
            Expected(f"{b}.mlp.mlp1_weight", (e, 2 * i, h), mxfp4_ok=True),
            Expected(f"{b}.mlp.mlp1_bias", (e, 2 * i)),
            Expected(f"{b}.mlp.mlp2_weight", (e, h, i), mxfp4_ok=True),
            Expected(f"{b}.mlp.mlp2_bias", (e, h)),
        ]
    out += [Expected("norm.scale", (h,)), Expected("unembedding.weight", (v, h))]
    return out


# ----------------------------------------------------------------------------- reading


class Checkpoint:
    """A validated, memory-mapped checkpoint with canonical tensor names."""

    def __init__(
        self,
        path: Path,
        config: ModelConfig,
        tensors: dict[str, Any],
        *,
        format: str = "canonical",
        tokenizer: str | None = None,
        files: list[SafetensorsFile] | None = None,
    ):
        #: logical name -> TensorInfo, or (TensorInfo blocks, TensorInfo scales) for MXFP4
        self._tensors = tensors
        self._files = {f.path: f for f in (files or [])}
        self.path = path
        self.config = config
        self.format = format
        self.tokenizer = tokenizer
        self._arrays: dict[str, np.ndarray] = {}

    def names(self) -> list[str]:
        return list(self._tensors)

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def is_mxfp4(self, name: str) -> bool:
        return isinstance(self._entry(name), tuple)

    def dtype(self, name: str) -> str:
        entry = self._entry(name)
        return "MXFP4" if isinstance(entry, tuple) else entry.dtype

    def shape(self, name: str) -> tuple[int, ...]:
        entry = self._entry(name)
        if isinstance(entry, tuple):
            return mxfp4.logical_shape(entry[0].shape)
        return entry.shape

    def _entry(self, name: str):
        try:
            return self._tensors[name]
        except KeyError:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}") from None

    def _raw(self, info: TensorInfo) -> np.ndarray:
        return self._files[info.file].array(info.name)

    def tensor(self, name: str) -> np.ndarray:
        """Raw host array (memory-mapped); bfloat16 comes as uint16 bits."""
        entry = self._entry(name)
        if isinstance(entry, tuple):
            raise CheckpointError(f"{name!r} is MXFP4: use .mxfp4(name) or .float32(name)")
        return self._raw(entry)

    def mxfp4(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        entry = self._entry(name)
        if not isinstance(entry, tuple):
            raise CheckpointError(f"{name!r} is stored as {entry.dtype}, not MXFP4")
        return self._raw(entry[0]), self._raw(entry[1])

    def float32(self, name: str) -> np.ndarray:
        """The tensor decoded to float32 (a copy, except for float32 data)."""
        entry = self._entry(name)
        if isinstance(entry, tuple):
            return mxfp4.decode(*self.mxfp4(name))
        raw = self._raw(entry)
        if entry.dtype == "BF16":
            return bf16_bits_to_float32(raw)
        return raw.astype(np.float32, copy=False)

    def nbytes(self, name: str) -> int:
        entry = self._entry(name)
        return sum(t.nbytes for t in entry) if isinstance(entry, tuple) else entry.nbytes

    def release(self, name: str) -> None:
        """Let the OS drop the memory-mapped pages of ``name`` from this process.

        Streaming tools (``mind4 convert``) call it after each tensor so their
        resident memory stays near one tensor, not the whole file.
        """
        entry = self._entry(name)
        for info in entry if isinstance(entry, tuple) else (entry,):
            self._files[info.file].release(info.name)

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def __repr__(self) -> str:
        return (
            f"Checkpoint({str(self.path)!r}, format={self.format!r}, tensors={len(self._tensors)})"
        )


def _refuse_pickles(path: Path) -> None:
    pickles = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise CheckpointError(
            f"{path} holds pickle-based weights ({', '.join(pickles[:3])}) and no safetensors. "
            "Mind 4 never unpickles: loading a pickle can run arbitrary code. Convert it in a "
            "trusted environment, e.g. `torch.load(f, weights_only=True)` then "
            "`safetensors.torch.save_file(...)`, and point Mind 4 at the result."
        )


def safetensors_files(path: Path) -> list[Path]:
    """The checkpoint's data files: those named by an index, else every *.safetensors."""
    index = path / INDEX_FILE
    if index.exists():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            names = sorted(set(weight_map.values()))
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{index}: not a valid safetensors index ({exc})") from None
        missing = [n for n in names if not (path / n).is_file()]
        if missing:
            raise CheckpointError(
                f"{index} names shard(s) that are missing: {', '.join(missing)}. "
                "Copy every shard into the checkpoint directory."
            )
        return [path / n for n in names]
    return sorted(path.glob("*.safetensors"))


def read_tensor_table(path: Path) -> tuple[dict[str, TensorInfo], list[SafetensorsFile]]:
    """Open every data file of ``path`` and gather its tensors (names must be unique).

    With an index, every tensor it names must be in the shard it names."""
    files = [SafetensorsFile(p) for p in safetensors_files(path)]
    table: dict[str, TensorInfo] = {}
    try:
        for f in files:
            for name, info in f.tensors.items():
                if name in table:
                    raise CheckpointError(
                        f"tensor {name!r} appears in both {table[name].file.name} and {f.path.name}"
                    )
                table[name] = info
        index = path / INDEX_FILE
        if index.exists():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            for name, shard in weight_map.items():
                if name not in table or table[name].file.name != shard:
                    found = (
                        f"it is in {table[name].file.name}" if name in table else "no shard has it"
                    )
                    raise CheckpointError(
                        f"{index} puts tensor {name!r} in {shard}, but {found}. The index and the "
                        "shards disagree: re-create the index or copy the right shards."
                    )
    except BaseException:
        for f in files:
            f.close()
        raise
    return table, files


def check_directory(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint directory not found: {path}")
    if not path.is_dir():
        raise CheckpointError(
            f"a checkpoint is a directory (config.json + *.safetensors), got file {path}"
        )
    return path


def _is_canonical_name(name: str) -> bool:
    return name.startswith(("block.", "embedding.", "unembedding.")) or name == "norm.scale"


def check_single_layout(path: Path, table: Mapping[str, TensorInfo]) -> None:
    """Refuse a checkpoint that mixes canonical and Hugging Face tensor names."""
    canonical = sorted(n for n in table if _is_canonical_name(n))
    hf = sorted(n for n in table if n.startswith(("model.", "lm_head.")))
    if canonical and hf:
        raise CheckpointError(
            f"{path} mixes layouts: {len(hf)} tensor(s) use Hugging Face names (e.g. {hf[0]!r}) "
            f"and {len(canonical)} use canonical gpt-oss names (e.g. {canonical[0]!r}). Keep one "
            "layout per directory; `mind4 convert` writes either from the other."
        )


def validate_tensors(
    path: Path, cfg: ModelConfig, table: dict[str, TensorInfo]
) -> dict[str, TensorInfo | tuple[TensorInfo, TensorInfo]]:
    """Match ``table`` against the canonical layout; return logical name -> entry."""
    check_single_layout(path, table)
    logical: dict[str, Any] = {}
    used: set[str] = set()
    for exp in expected_tensors(cfg):
        if exp.name in table:
            info = table[exp.name]
            used.add(exp.name)
            if info.dtype not in FLOAT_DTYPES:
                raise CheckpointError(
                    f"{info.file}: tensor {exp.name!r} has dtype {info.dtype}; expected one of "
                    f"{', '.join(FLOAT_DTYPES)}"
                )
            if info.shape != exp.shape:
                raise CheckpointError(
                    f"{info.file}: tensor {exp.name!r} has shape {list(info.shape)} but config.json "
                    f"implies {list(exp.shape)}. The checkpoint and its config disagree."
                )
            logical[exp.name] = info
        elif exp.mxfp4_ok and f"{exp.name}.blocks" in table and f"{exp.name}.scales" in table:
            blocks, scales = table[f"{exp.name}.blocks"], table[f"{exp.name}.scales"]
            used |= {f"{exp.name}.blocks", f"{exp.name}.scales"}
            for part in (blocks, scales):
                if part.dtype != "U8":
                    raise CheckpointError(
                        f"{part.file}: MXFP4 tensor {part.name!r} must be U8, got {part.dtype}"
                    )
            mxfp4.check_pair(blocks.shape, scales.shape, exp.name)
            if mxfp4.logical_shape(blocks.shape) != exp.shape:
                raise CheckpointError(
                    f"{blocks.file}: MXFP4 tensor {exp.name!r} decodes to shape "
                    f"{list(mxfp4.logical_shape(blocks.shape))} but config.json implies {list(exp.shape)}"
                )
            logical[exp.name] = (blocks, scales)
        else:
            hint = " (or its .blocks/.scales MXFP4 pair)" if exp.mxfp4_ok else ""
            raise CheckpointError(
                f"{path}: missing tensor {exp.name!r}{hint}. The checkpoint is incomplete or "
                "not in the canonical gpt-oss layout."
            )
    extra = sorted(set(table) - used)
    if extra:
        raise CheckpointError(
            f"{path}: unexpected tensor(s) {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''} "
            "for this config (wrong num_hidden_layers, or a different layout?)"
        )
    return logical


def read_model_config(path: Path) -> tuple[ModelConfig, str | None]:
    """A canonical checkpoint's config.json -> (ModelConfig, tokenizer name)."""
    cfg_path = path / "config.json"
    data = read_json(cfg_path)
    if not isinstance(data, dict):
        raise ConfigError(f"{cfg_path}: expected a JSON object")
    tokenizer = data.get("tokenizer")
    model_data = {
        k: v
        for k, v in data.items()
        if k
        not in (
            "tokenizer",
            "backend",
            "dtype",
            "device",
            "checkpoint",
            "sampling",
            "logging",
            "attention",
            "moe_routing",
            "sampler",
        )
    }
    if "max_context_length" not in model_data and "initial_context_length" in model_data:
        model_data["max_context_length"] = int(
            model_data["initial_context_length"] * model_data.get("rope_scaling_factor", 1.0)
        )
    return model_config_from_dict(model_data, str(cfg_path)), tokenizer


class CanonicalLoader:
    """The original gpt-oss layout (bf16/f32/f16, experts optionally MXFP4)."""

    name = "canonical"

    def probe(self, path: Path) -> str | None:
        path = Path(path)
        if not (path / "config.json").is_file():
            return "no config.json"
        if not safetensors_files(path):
            return "no *.safetensors files"
        try:
            data = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            return f"config.json unreadable ({exc})"
        if not isinstance(data, dict) or "num_experts" not in data:
            return "config.json has no 'num_experts' (not the canonical gpt-oss config)"
        return None

    def open(self, path: Path) -> Checkpoint:
        path = check_directory(path)
        config, tokenizer = read_model_config(path)
        table, files = read_tensor_table(path)
        try:
            logical = validate_tensors(path, config, table)
        except BaseException:
            for f in files:
                f.close()
            raise
        return Checkpoint(path, config, logical, format=self.name, tokenizer=tokenizer, files=files)


def open_checkpoint(path: str | Path) -> Checkpoint:
    """Open ``path`` with the first weight loader (by priority) that can read it."""
    from .plugins import get_manager

    path = check_directory(path)
    reasons = []
    for record in get_manager().records("weight_loader"):
        loader = record.create()
        reason = loader.probe(path)
        if reason is None:
            return loader.open(path)
        reasons.append(f"  - {record.name}: {reason}")
    _refuse_pickles(path)
    raise CheckpointError(
        f"no weight loader can read {path}. Tried:\n" + "\n".join(reasons) + "\n"
        "A checkpoint is a directory with config.json and *.safetensors in a known layout."
    )


# ----------------------------------------------------------------------------- writing


def _as_storage(name: str, value: Any) -> tuple[str, np.ndarray]:
    if isinstance(value, BF16):
        return "BF16", np.asarray(value.bits, dtype=np.uint16)
    array = np.asarray(value)
    if array.dtype not in NUMPY_TO_DTYPE:
        raise CheckpointError(f"cannot store tensor {name!r} of dtype {array.dtype}")
    return NUMPY_TO_DTYPE[array.dtype], array


def write_checkpoint(
    path: str | Path,
    config: ModelConfig,
    tensors: Iterable[tuple[str, Any]],
    *,
    specs: list[TensorSpec] | None = None,
    tokenizer: str | None = None,
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """Write ``config.json`` + ``model.safetensors`` into directory ``path``.

    ``tensors`` yields ``(name, array)`` with arrays as NumPy (float32/float16/
    uint8) or :class:`BF16`. Without ``specs`` the iterable is materialised
    first; pass ``specs`` (name, dtype, shape in the same order) to stream with
    one tensor in memory at a time.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if specs is None:
        items = [(name, *_as_storage(name, value)) for name, value in tensors]
        specs = [TensorSpec(name, dtype, array.shape) for name, dtype, array in items]
        stream: Iterator[tuple[str, Any]] = ((name, array) for name, _, array in items)
    else:
        stream = ((name, _as_storage(name, value)[1]) for name, value in tensors)
    with SafetensorsWriter(
        path / "model.safetensors", specs, metadata={"format": "mind4-canonical"}
    ) as w:
        for name, array in stream:
            w.write(name, array)
    data = config.to_dict()
    if tokenizer is not None:
        data["tokenizer"] = tokenizer
    data.update(extra_config or {})
    tmp = path / "config.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path / "config.json")
    return path
