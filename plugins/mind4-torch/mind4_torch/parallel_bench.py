"""Tensor-parallel prefill and decode speed of a preset shape, random weights.

Each rank builds its slice directly on its device (no checkpoint: the 120b shape
needs no 65 GB file), wires the collectives and times a prefill of ``--prompt``
tokens and ``--decode`` greedy decode steps; rank 0 prints one JSON line.
Without torchrun it times one process (the baseline of the scaling efficiency)::

    python -m mind4_torch.parallel_bench --preset gpt-oss-120b --experts mxfp4
    NCCL_NVLS_ENABLE=0 torchrun --standalone --nproc-per-node 8 \\
        -m mind4_torch.parallel_bench --preset gpt-oss-120b --experts mxfp4

Scaling efficiency at N = (tokens/s at N) / (N x tokens/s at 1).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import zlib

import torch
import torch.distributed as dist
from torch import nn

from mind4_core.presets import get_preset

from .model import Transformer
from .moe import MXFP4Weight
from .parallel import (
    ShardPlan,
    init_distributed,
    parallelize,
    plan_shards,
    resolve_tp_device,
    world_from_env,
)
from .runtime import DTYPES, input_major, resolve_device

#: scale byte of the random MXFP4 blocks: 2^-8, values up to about ±0.023
MXFP4_SCALE = 127 - 8


@torch.no_grad()
def random_slice(
    plan: ShardPlan, *, device: torch.device, dtype: torch.dtype, experts: str, seed: int = 0
) -> Transformer:
    """This rank's slice with N(0, 0.02) weights (MXFP4 experts: random codes), laid out
    as :func:`mind4_torch.runtime.load_transformer` lays out inference weights. Seeds
    follow the tensor name, so the replicated tensors (embedding, router, norms) are the
    same on every rank."""
    gen = torch.Generator(device=device)
    with torch.device("meta"):
        model = Transformer(plan.local_config, init=False)
    modules = dict(model.named_modules())
    for name, meta in list(model.named_parameters()):
        owner_name, _, attr = name.rpartition(".")
        owner = modules[owner_name]
        shape = tuple(meta.shape)
        gen.manual_seed(zlib.crc32(f"{seed}:{name}".encode()))  # replicated tensors agree
        if name == "unembedding.weight" and plan.vocab_rows is not None:
            shape = (plan.vocab_rows, shape[1])
        if attr in ("mlp1_weight", "mlp2_weight") and experts == "mxfp4":
            E, rows, cols = shape
            blocks = torch.randint(
                0, 256, (E, rows, cols // 32, 16), dtype=torch.uint8, device=device, generator=gen
            )
            scales = torch.full(
                (E, rows, cols // 32), MXFP4_SCALE, dtype=torch.uint8, device=device
            )
            del owner._parameters[attr]
            setattr(owner, attr, MXFP4Weight(blocks, scales, dtype))
            continue
        if name.endswith("norm.scale"):
            value = torch.ones(shape, dtype=torch.float32, device=device)
        elif name.endswith("sinks"):
            value = torch.randn(shape, dtype=torch.float32, device=device, generator=gen)
        else:
            value = torch.empty(shape, dtype=dtype, device=device).normal_(0.0, 0.02, generator=gen)
            if value.dim() >= 2 and name != "embedding.weight":
                value = input_major(value)
        owner._parameters[attr] = nn.Parameter(value, requires_grad=False)
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if dist.is_initialized():
        dist.barrier()


@torch.inference_mode()
def bench(args) -> dict | None:
    rank, world, local_rank = world_from_env()
    config = get_preset(args.preset)
    if world > 1:
        device = resolve_tp_device(args.device, local_rank)
        init_distributed(device)
    else:
        device = resolve_device(args.device)
    dtype = DTYPES[args.dtype or ("bfloat16" if device.type == "cuda" else "float32")]
    plan = plan_shards(config, world, rank, mxfp4_mlp2=args.experts == "mxfp4")
    if world == 1:
        plan = plan_shards(config, 1, 0, mxfp4_mlp2=False, vocab_parallel=False)
    model = random_slice(plan, device=device, dtype=dtype, experts=args.experts, seed=args.seed)
    if world > 1:
        parallelize(model, plan)
    else:
        model.fast_decode = not args.no_fast_decode
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    B, P, n = args.batch, args.prompt, args.decode
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    prompt = torch.randint(0, config.vocab_size, (B, P), generator=gen).to(device)  # same on all
    cache = model.new_cache(B, P + n + 1)

    def prefill() -> torch.Tensor:
        logits = None
        for start in range(0, P, args.chunk):  # as the engine does: bounded activations
            logits = model(prompt[:, start : start + args.chunk], cache, start, last_only=True)
        return logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)

    def decode(token: torch.Tensor) -> None:
        for i in range(n):
            token = model(token, cache, P + i, last_only=True)[:, -1].argmax(-1, keepdim=True)

    times = {"prefill": [], "decode": []}
    for _ in range(args.repeat + 1):  # the first round warms up (kernels, allocator)
        sync(device)
        t0 = time.perf_counter()
        token = prefill()
        sync(device)
        t1 = time.perf_counter()
        decode(token)
        sync(device)
        t2 = time.perf_counter()
        times["prefill"].append(t1 - t0)
        times["decode"].append(t2 - t1)
    prefill_s = min(times["prefill"][1:])
    decode_s = min(times["decode"][1:])

    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    if world > 1:  # the busiest rank's memory
        t = torch.tensor([peak], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        peak = int(t.item())
    if rank != 0:
        return None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "preset": args.preset,
        "world_size": world,
        "device": f"{world} x {name}",
        "dtype": str(dtype).removeprefix("torch."),
        "experts": args.experts,
        "batch": B,
        "prompt_tokens": P,
        "decode_tokens": n,
        "prefill_s": round(prefill_s, 4),
        "prefill_tok_s": round(B * P / prefill_s, 1),
        "decode_ms_per_step": round(1000 * decode_s / n, 3),
        "decode_tok_s": round(B * n / decode_s, 2),
        "peak_gpu_memory_gib_per_rank": round(peak / 2**30, 2),
        "nccl_nvls_enable": os.environ.get("NCCL_NVLS_ENABLE"),
        "torch": torch.__version__,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="gpt-oss-120b")
    p.add_argument("--experts", choices=["mxfp4", "dense"], default="mxfp4")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt", type=int, default=2048, help="prefill tokens per row")
    p.add_argument("--chunk", type=int, default=512, help="prefill tokens per forward pass")
    p.add_argument("--decode", type=int, default=64, help="decode steps timed")
    p.add_argument("--repeat", type=int, default=2, help="timed rounds after one warm-up")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-fast-decode", action="store_true", help="one process: readable path")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    result = bench(parse_args(argv))
    if result is not None:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
