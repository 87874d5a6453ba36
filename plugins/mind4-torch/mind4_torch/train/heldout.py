"""Held-out compression: a checkpoint's bits per byte on a config's validation split,
beside ``xz -9`` on the very same bytes.

    python -m mind4_torch.train.heldout mind4_core/default_model config/train.yaml

The model is loaded through the engine exactly as ``mind4 run`` loads it (MXFP4
experts included) and scores every validation token but the first, in windows
of ``training.context_length`` (see :func:`data.validation_windows`); its bits
are ``Σ -ln p(token) / ln 2`` over the text bytes those tokens decode to.
``xz -9`` compresses those same bytes (the ``xz`` program when present, else
Python's liblzma at preset 9, which is the same encoder).
"""

from __future__ import annotations

import json
import lzma
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click
import numpy as np


def xz_bits_per_byte(payload: bytes) -> tuple[float, str]:
    """Bits per byte of ``xz -9`` on ``payload`` and which encoder ran."""
    exe = shutil.which("xz")
    if exe:
        out = subprocess.run([exe, "-9", "-c"], input=payload, capture_output=True, check=True)
        size, how = len(out.stdout), "xz -9"
    else:
        size, how = len(lzma.compress(payload, preset=9)), "liblzma preset 9"
    return 8.0 * size / len(payload), how


def heldout(
    checkpoint: str | Path | None, config: Any, *, batch_size: int = 8, device: str = "cpu"
) -> dict[str, Any]:
    """Score ``checkpoint`` on ``config``'s validation split and compare with xz."""
    from mind4_core.engine import load, load_tokenizer

    from . import data as data_mod

    tok = load_tokenizer(config.encoding)
    cache = Path(config.data.cache_dir) if config.data.cache_dir else config.out_dir / "data"
    T = config.training.context_length
    data = data_mod.prepare(
        tok,
        config.data.sources,
        config.data.extensions,
        cache,
        context_length=T,
        validation_fraction=config.data.validation_fraction,
    )
    model = load(None if checkpoint is None else str(checkpoint), backend="torch", device=device)
    val = data.validation
    spans = data_mod.validation_windows(len(val), T)
    nll, n_tokens = 0.0, 0
    for i in range(0, len(spans), batch_size):
        group = spans[i : i + batch_size]
        for length in sorted({n for _, n in group}):
            starts = np.array([s for s, n in group if n == length])
            w = data_mod.windows(val, starts, length)  # (b, length)
            logits = model.logits(w[:, :-1]).astype(np.float64)  # (b, length-1, V)
            logits -= logits.max(-1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            targets = w[:, 1:]
            nll -= np.take_along_axis(logp, targets[..., None], -1).sum()
            n_tokens += targets.size
    payload = data_mod.validation_target_bytes(data, tok)
    xz_bpb, how = xz_bits_per_byte(payload)
    model_bpb = float(nll / math.log(2) / len(payload))
    return {
        "checkpoint": str(model.checkpoint.path),
        "encoding": config.encoding,
        "validation_tokens": n_tokens,
        "validation_bytes": len(payload),
        "val_loss": float(nll / n_tokens),
        "model_bits_per_byte": model_bpb,
        "xz_bits_per_byte": xz_bpb,
        "xz": how,
        "model_beats_xz": bool(model_bpb < xz_bpb),
    }


@click.command()
@click.argument("checkpoint", required=False)
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE")
@click.option("--device", default="cpu", show_default=True)
def main(checkpoint, config, overrides, device) -> None:
    """Bits per byte of CHECKPOINT (default: the embedded model) on CONFIG's validation
    split, beside xz -9 on the same bytes."""
    from .config import load_config

    cfg = load_config(config, list(overrides))
    click.echo(json.dumps(heldout(checkpoint, cfg, device=device), indent=2))


if __name__ == "__main__":
    main()
