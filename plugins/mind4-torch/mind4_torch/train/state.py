"""Checkpoints of a training run, written atomically.

    <out_dir>/checkpoint/                 the latest complete checkpoint
        config.json, model.safetensors    canonical layout, float32 (loads with `mind4 run`)
        train_state/optimizer.safetensors AdamW moments: <name>.exp_avg, <name>.exp_avg_sq
        train_state/state.json            step, AdamW step counts, the training config, ...
    <out_dir>/model/                      the exported model (bf16 dense, MXFP4 experts)

A checkpoint is written into ``checkpoint.tmp/``, flushed to disk, then swapped
in by two renames (``checkpoint -> checkpoint.prev``, ``checkpoint.tmp ->
checkpoint``) before ``checkpoint.prev`` is deleted. A kill or a full disk at
any moment leaves either the old or the new checkpoint complete;
:func:`recover` puts ``checkpoint.prev`` back if a kill fell between the two
renames. Nothing is pickled: tensors are safetensors, the rest is JSON.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mind4_core.checkpoint import BF16, open_checkpoint, to_bf16_bits, write_checkpoint
from mind4_core.config import ModelConfig
from mind4_core.errors import CheckpointError
from mind4_core.safetensors_io import SafetensorsFile, SafetensorsWriter, TensorSpec

STATE_DIR = "train_state"
STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
STATE_FORMAT = "mind4-train-state"
STATE_VERSION = 1


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(target: Path) -> None:
    """Undo a swap a kill interrupted, and drop a half-written ``.tmp``."""
    prev = target.with_name(target.name + ".prev")
    tmp = target.with_name(target.name + ".tmp")
    if not target.exists() and prev.exists():
        os.rename(prev, target)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(prev, ignore_errors=True)


def atomic_directory(target: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_dir)``, then swap ``tmp_dir`` in place of ``target``.

    On any failure (full disk, Ctrl-C) the temporary directory is removed and
    ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = target.with_name(target.name + ".tmp")
    prev = target.with_name(target.name + ".prev")
    try:
        tmp.mkdir()
        write(tmp)
        _fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        os.rename(target, prev)
    os.rename(tmp, target)
    shutil.rmtree(prev, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- writing


def save_checkpoint(
    target: Path,
    model_config: ModelConfig,
    tensors: dict[str, np.ndarray],
    optimizer_tensors: dict[str, np.ndarray],
    state: dict[str, Any],
    *,
    tokenizer: str | None,
) -> Path:
    """Write the float32 model, the optimiser moments and ``state`` atomically."""

    def write(tmp: Path) -> None:
        write_checkpoint(tmp, model_config, tensors.items(), tokenizer=tokenizer)
        sd = tmp / STATE_DIR
        sd.mkdir()
        specs = [TensorSpec(n, "F32", a.shape) for n, a in optimizer_tensors.items()]
        with SafetensorsWriter(sd / OPTIMIZER_FILE, specs, metadata={"format": STATE_FORMAT}) as w:
            for name, array in optimizer_tensors.items():
                w.write(name, np.ascontiguousarray(array, dtype=np.float32))
        body = {"format": STATE_FORMAT, "version": STATE_VERSION, **state}
        (sd / STATE_FILE).write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")

    return atomic_directory(target, write)


def export_model(
    target: Path,
    model_config: ModelConfig,
    tensors: dict[str, np.ndarray],
    *,
    experts: str,
    dtype: str,
    tokenizer: str | None,
) -> Path:
    """Write the compact inference checkpoint: norm scales float32, other tensors
    bf16 (or float32), expert matrices MXFP4, bf16 or float32."""
    from mind4_core import mxfp4

    def items():
        for name, value in tensors.items():
            is_expert = name.endswith(("mlp1_weight", "mlp2_weight"))
            if is_expert and experts == "mxfp4":
                blocks, scales = mxfp4.encode(np.asarray(value, dtype=np.float32))
                yield f"{name}.blocks", blocks
                yield f"{name}.scales", scales
            elif name.endswith("norm.scale") or (is_expert and experts == "float32"):
                yield name, np.asarray(value, dtype=np.float32)
            elif is_expert or dtype == "bfloat16":
                yield name, BF16(to_bf16_bits(value))
            else:
                yield name, np.asarray(value, dtype=np.float32)

    return atomic_directory(
        target, lambda tmp: write_checkpoint(tmp, model_config, items(), tokenizer=tokenizer)
    )


# ----------------------------------------------------------------------------- reading


def has_checkpoint(target: Path) -> bool:
    recover(Path(target))
    return (Path(target) / STATE_DIR / STATE_FILE).is_file()


def read_state(target: Path) -> dict[str, Any]:
    path = Path(target) / STATE_DIR / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"no training state at {path}: {target} is not a checkpoint written by `mind4 train`"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if state.get("format") != STATE_FORMAT or state.get("version") != STATE_VERSION:
        raise CheckpointError(
            f"{path}: unknown training-state format {state.get('format')!r} version "
            f"{state.get('version')!r} (this mind4 writes {STATE_FORMAT} v{STATE_VERSION})"
        )
    return state


def load_checkpoint(target: Path) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """``(Checkpoint, optimizer tensors, state)`` of a training checkpoint."""
    target = Path(target)
    state = read_state(target)
    ckpt = open_checkpoint(target)
    opt_path = target / STATE_DIR / OPTIMIZER_FILE
    try:
        f = SafetensorsFile(opt_path)
    except FileNotFoundError:
        raise CheckpointError(f"missing optimiser state {opt_path}") from None
    try:
        optimizer = {name: np.array(f.array(name)) for name in f.tensors}
    finally:
        f.close()
    return ckpt, optimizer, state
