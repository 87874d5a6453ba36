"""Training throughput: ``python -m mind4_torch.train.bench [CONFIG] [--set ...]``.

Runs ``warmup + steps`` real optimiser steps of the config (its data, model and
batch) into a temporary directory and reports tokens per second over the
timed steps, the model FLOPs per token, and (on a GPU with a known peak) the
model FLOPs utilisation::

    python -m mind4_torch.train.bench config/train.yaml --steps 20
    python -m mind4_torch.train.bench --set model.preset=small --set training.context_length=1024 \
        --set training.batch_size=32 --steps 30 --json

FLOPs per token follow the usual accounting (forward + backward = 3 x forward,
2 FLOPs per multiply-add): ``6 N`` for the matrices a token touches (attention
projections, router, its top-k experts, unembedding; not the embedding lookup)
plus ``12 · heads · head_dim · keys`` per layer for attention scores and values,
where ``keys`` is the mean number of keys a query sees (causal, windowed).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import click

from mind4_core.config import ModelConfig

#: dense bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name()
PEAK_BF16_TFLOPS = {
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.4,  # SXM (HBM3)
    "H200": 989.4,
    "A100": 312.0,
}


def mean_keys(context_length: int, window: int | None) -> float:
    """Mean number of keys a query attends to over a causal sequence of ``context_length``."""
    T = context_length
    if not window or window >= T:
        return (T + 1) / 2
    # queries 0..w-1 see t+1 keys, the rest see w
    return (window * (window + 1) / 2 + (T - window) * window) / T


def training_flops_per_token(cfg: ModelConfig, context_length: int) -> float:
    """Model FLOPs of one training token (forward + backward)."""
    H, E, k, I = cfg.hidden_size, cfg.num_experts, cfg.experts_per_token, cfg.intermediate_size  # noqa: E741
    attn_dim = cfg.num_attention_heads * cfg.head_dim
    per_layer = H * cfg.qkv_dim + attn_dim * H + H * E + k * (2 * I * H + H * I)
    n_matmul = cfg.num_hidden_layers * per_layer + cfg.vocab_size * H
    attention = sum(
        12 * attn_dim * mean_keys(context_length, cfg.window_of_layer(layer))
        for layer in range(cfg.num_hidden_layers)
    )
    return 6.0 * n_matmul + attention


def device_peak_tflops(device_name: str) -> float | None:
    """bf16 dense peak of a known GPU (TFLOP/s), else None (CPUs, unknown GPUs)."""
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in device_name:
            return value
    return None


@click.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE")
@click.option("--steps", default=20, show_default=True, help="Timed optimiser steps.")
@click.option("--warmup", default=3, show_default=True, help="Untimed steps first.")
@click.option("--peak-tflops", type=float, help="Peak FLOP/s of the device, for MFU.")
@click.option("--json", "as_json", is_flag=True)
def main(config, overrides, steps, warmup, peak_tflops, as_json) -> None:
    """Measure training tokens/s (and MFU on a GPU) for a training config."""
    import torch

    from .config import load_config
    from .loop import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        forced = [
            f"training.max_steps={warmup + steps}",
            "eval.interval=0",
            "eval.max_tokens=1",
            f"checkpoint.out_dir={tmp}/run",
            "log.progress=false",
        ]
        cfg = load_config(config, [*overrides, *forced])
        from rich.console import Console

        trainer = Trainer(cfg, progress=False, console=Console(quiet=True), save=False)
        rates: list[float] = []
        trainer.on_step = lambda step, row: rates.append(row["tokens_per_s"])
        trainer.run()
        timed = rates[warmup:]
        tokens_per_step = (
            cfg.training.batch_size
            * cfg.training.grad_accumulation
            * trainer.dist.world_size
            * cfg.training.context_length
        )
        seconds = sum(tokens_per_step / r for r in timed)
        tps = tokens_per_step * len(timed) / seconds
        mc = trainer.model_config
        flops = training_flops_per_token(mc, cfg.training.context_length)
        device = trainer.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        peak = peak_tflops or (device_peak_tflops(name) if device.type == "cuda" else None)
        result = {
            "config": cfg.source,
            "device": f"{device} ({name})",
            "threads": torch.get_num_threads(),
            "autocast": str(trainer.amp_dtype).replace("torch.", "")
            if trainer.amp_dtype
            else "off",
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "context_length": cfg.training.context_length,
            "tokens_per_step": tokens_per_step,
            "timed_steps": len(timed),
            "tokens_per_s": tps,
            "median_step_tokens_per_s": statistics.median(timed),
            "model_flops_per_token": flops,
            "model_tflops_per_s": tps * flops / 1e12,
            "peak_tflops": peak,
            "mfu": tps * flops / 1e12 / peak if peak else None,
        }
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            click.echo(
                f"{key:>26}: {value:,.4g}" if isinstance(value, float) else f"{key:>26}: {value}"
            )


if __name__ == "__main__":
    main()
