"""Tensor-parallel inference on torch.distributed (the ``torch-tp`` backend).

Run the same program in N processes (``torchrun --nproc-per-node N``); each one
holds a slice of every layer and the processes sum their partial results::

    rank r of N holds                                    then
    attention  query heads [r Hq/N, (r+1) Hq/N) and      all-reduce (sum) of the
               kv heads [r Hkv/N, (r+1) Hkv/N):          out-projection's output
               their qkv rows, sinks, out-proj columns
    MoE        the router (replicated: every rank        all-reduce (sum) of the
               routes every token the same way) and      gate-weighted expert output
               units [lo_r, hi_r) of every expert's
               intermediate dimension: mlp1 rows (the
               interleaved glu/linear pairs), mlp2 columns
    unembedding vocabulary rows [r Vp, (r+1) Vp),        all-gather of the logits
               Vp = ceil(V/N), zero-padded
    embedding, norms, rope: replicated; KV cache: the rank's own kv heads

Why these cuts: a query head only reads its own kv head (``h // (Hq/Hkv)``) and
an expert's SwiGLU acts unit by unit, so each slice computes exact partial sums
of the output projections (``out`` and ``mlp2``); biases of those projections
live on rank 0 only, so the sum adds them once. Splitting every expert's
intermediate dimension (rather than placing whole experts on ranks) keeps the
expert code of :mod:`mind4_torch.moe` unchanged (dense or MXFP4, prefill or
decode) and balances the work of every token over all ranks, which matters
for decode (a batch-1 token touches only k experts). For MXFP4 experts the
mlp2 columns are cut at 32-column block boundaries; when ``I/32`` is not a
multiple of N the ranks' shares differ by one block (gpt-oss-120b on 8 GPUs:
384 or 352 of 2880 units). Heads must divide evenly: ``Hkv % N == 0``.

All sums are done in float32 (partials of bfloat16 models are widened first):
the tensors are small (``B·T·H``) and the result is at least as accurate as one
device. Every rank ends with the same logits; the sampler draws on every rank
and rank 0's tokens are broadcast, so the ranks never diverge (unseeded
sampling included). Only rank 0 writes to stdout.

Entry points: the ``torch-tp`` backend record (:mod:`mind4_torch.parallel_plugin`),
``factory(checkpoint=, config=, components=)``. With ``WORLD_SIZE`` unset (one
process) it is the plain torch backend.
"""

from __future__ import annotations

import atexit
import math
import os
import sys
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import attrs
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from mind4_core.config import Config, ModelConfig
from mind4_core.errors import BackendUnavailableError, ConfigError

from .attention import TorchAttention
from .model import KVCache, Transformer
from .moe import TorchMoE
from .moe import experts as moe_experts
from .runtime import TorchRuntime, dtype_name, load_transformer, resolve_device, resolve_dtype

__all__ = [
    "BroadcastSampler",
    "ReducingMoE",
    "RowParallelLinear",
    "ShardPlan",
    "ShardedCheckpoint",
    "TensorParallelRuntime",
    "VocabParallelUnembedding",
    "factory",
    "init_distributed",
    "load_sharded_transformer",
    "parallelize",
    "plan_shards",
    "split_units",
]

#: MXFP4 packs 32 consecutive columns under one scale: mlp2 columns are cut at these
MXFP4_BLOCK = 32


# ----------------------------------------------------------------------------- the plan


def split_units(units: int, world: int, granule: int = 1) -> list[tuple[int, int]]:
    """Cut ``units`` into ``world`` contiguous ``[lo, hi)`` ranges at multiples of
    ``granule``, as even as possible (shares differ by at most one granule)."""
    if units % granule:
        raise ConfigError(f"{units} units cannot be cut in blocks of {granule}")
    blocks = units // granule
    base, extra = divmod(blocks, world)
    bounds, lo = [], 0
    for r in range(world):
        hi = lo + (base + (r < extra)) * granule
        bounds.append((lo, hi))
        lo = hi
    return bounds


def divisors(n: int) -> str:
    return ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)


@dataclass(frozen=True)
class ShardPlan:
    """What rank ``rank`` of ``world`` holds of a model with ``config``.

    ``q``/``kv``: head ranges; ``inter``: the expert intermediate units;
    ``vocab``: unembedding rows (``vocab_rows`` with padding, or ``None`` when the
    unembedding is replicated).
    """

    config: ModelConfig
    rank: int
    world: int
    q: tuple[int, int]
    kv: tuple[int, int]
    inter: tuple[int, int]
    vocab: tuple[int, int] | None
    vocab_rows: int | None

    @property
    def local_config(self) -> ModelConfig:
        """The config of this rank's slice (heads and intermediate size of the slice)."""
        return attrs.evolve(
            self.config,
            num_attention_heads=self.q[1] - self.q[0],
            num_key_value_heads=self.kv[1] - self.kv[0],
            intermediate_size=self.inter[1] - self.inter[0],
        )


def plan_shards(
    config: ModelConfig,
    world: int,
    rank: int,
    *,
    mxfp4_mlp2: bool = False,
    vocab_parallel: bool = True,
) -> ShardPlan:
    """The slice rank ``rank`` of ``world`` holds; a :class:`ConfigError` when the model
    cannot be cut into ``world`` pieces (kv heads not divisible, too few expert units)."""
    if not 0 <= rank < world:
        raise ConfigError(f"rank {rank} is outside the world of {world} processes")
    Hq, Hkv = config.num_attention_heads, config.num_key_value_heads
    if Hkv % world:
        raise ConfigError(
            f"tensor parallelism over {world} processes splits the attention heads evenly, but "
            f"the model has {Hkv} key/value heads ({Hq} query heads), not divisible by {world}; "
            f"run with a number of processes that divides {Hkv}: {divisors(Hkv)}"
        )
    hq, hkv = Hq // world, Hkv // world
    granule = MXFP4_BLOCK if mxfp4_mlp2 else 1
    I = config.intermediate_size  # noqa: E741
    if I // granule < world:
        unit = f"{granule}-column MXFP4 blocks" if granule > 1 else "units"
        raise ConfigError(
            f"tensor parallelism over {world} processes splits every expert's intermediate "
            f"dimension, but intermediate_size={I} has only {I // granule} {unit}; "
            f"run with at most {I // granule} processes"
        )
    vocab = rows = None
    if vocab_parallel:
        rows = math.ceil(config.vocab_size / world)
        vocab = (min(rank * rows, config.vocab_size), min((rank + 1) * rows, config.vocab_size))
    return ShardPlan(
        config=config,
        rank=rank,
        world=world,
        q=(rank * hq, (rank + 1) * hq),
        kv=(rank * hkv, (rank + 1) * hkv),
        inter=split_units(I, world, granule)[rank],
        vocab=vocab,
        vocab_rows=rows,
    )


def mlp2_is_mxfp4(checkpoint) -> bool:
    return any(n.endswith("mlp.mlp2_weight") and checkpoint.is_mxfp4(n) for n in checkpoint.names())


# ----------------------------------------------------------------------------- sliced checkpoint


class ShardedCheckpoint:
    """A checkpoint seen through a :class:`ShardPlan`: same names, each tensor cut to
    the rank's slice (memory-mapped arrays are sliced before they are copied, so a
    rank reads only its share of the expert weights).

    It is what :func:`mind4_torch.runtime.load_transformer` reads, with ``config``
    the slice's config."""

    def __init__(self, checkpoint, plan: ShardPlan):
        self.checkpoint = checkpoint
        self.plan = plan
        self.config = plan.local_config

    def __getattr__(self, name: str) -> Any:  # path, format, tokenizer, ...
        if name == "checkpoint":
            raise AttributeError(name)
        return getattr(self.checkpoint, name)

    def names(self) -> list[str]:
        return self.checkpoint.names()

    def is_mxfp4(self, name: str) -> bool:
        return self.checkpoint.is_mxfp4(name)

    def dtype(self, name: str) -> str:
        return self.checkpoint.dtype(name)

    def shape(self, name: str) -> tuple[int, ...]:
        """The slice's logical shape (expert weights: views of the map, nothing read)."""
        if self.is_mxfp4(name):
            blocks, _ = self.mxfp4(name)
            return (*blocks.shape[:-2], blocks.shape[-2] * MXFP4_BLOCK)
        if name.endswith("attn.qkv.weight") or name.endswith("attn.qkv.bias"):
            local = self.config.qkv_dim
            return (local, *self.checkpoint.shape(name)[1:])
        return tuple(self.tensor(name).shape)

    def tensor(self, name: str) -> np.ndarray:
        return self._slice(name, self.checkpoint.tensor(name), packed=False)

    def mxfp4(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        blocks, scales = self.checkpoint.mxfp4(name)
        return self._slice(name, blocks, packed=True), self._slice(name, scales, packed=True)

    def float32(self, name: str) -> np.ndarray:
        """The slice decoded to float32 (bf16 widened, MXFP4 dequantised)."""
        from mind4_core import mxfp4
        from mind4_core.checkpoint import bf16_bits_to_float32

        if self.is_mxfp4(name):
            return mxfp4.decode(*self.mxfp4(name))
        a = self.tensor(name)
        return bf16_bits_to_float32(a) if self.dtype(name) == "BF16" else a.astype(np.float32)

    def _slice(self, name: str, a: np.ndarray, *, packed: bool) -> np.ndarray:
        p, D = self.plan, self.plan.config.head_dim
        Hq, Hkv = p.config.num_attention_heads, p.config.num_key_value_heads
        (q0, q1), (k0, k1), (i0, i1) = p.q, p.kv, p.inter
        suffix = name.rpartition(".attn.")[2] if ".attn." in name else None
        if suffix in ("qkv.weight", "qkv.bias"):  # rows: [q heads | k heads | v heads]
            return np.concatenate(
                [
                    a[q0 * D : q1 * D],
                    a[(Hq + k0) * D : (Hq + k1) * D],
                    a[(Hq + Hkv + k0) * D : (Hq + Hkv + k1) * D],
                ]
            )
        if suffix == "sinks":  # (Hq,)
            return a[q0:q1]
        if suffix == "out.weight":  # (H, Hq D): the rank's heads' columns
            return a[:, q0 * D : q1 * D]
        if suffix == "out.bias" or name.endswith("mlp.mlp2_bias"):  # added once, by rank 0
            return a if p.rank == 0 else np.zeros_like(a)
        if name.endswith("mlp.mlp1_weight") or name.endswith("mlp.mlp1_bias"):
            return a[:, 2 * i0 : 2 * i1]  # (E, 2I, ...): unit i is rows 2i (glu), 2i+1 (linear)
        if name.endswith("mlp.mlp2_weight"):  # (E, H, I) or packed (E, H, I/32[, 16])
            if packed:
                return a[:, :, i0 // MXFP4_BLOCK : i1 // MXFP4_BLOCK]
            return a[:, :, i0:i1]
        if name == "unembedding.weight" and p.vocab is not None:  # (V, H) -> (Vp, H)
            rows = a[p.vocab[0] : p.vocab[1]]
            if rows.shape[0] < p.vocab_rows:
                pad = np.zeros((p.vocab_rows - rows.shape[0], *rows.shape[1:]), dtype=a.dtype)
                rows = np.concatenate([rows, pad])
            return rows
        return a


# ----------------------------------------------------------------------------- collectives


def all_reduce_sum(x: torch.Tensor, group=None) -> torch.Tensor:
    """Sum of ``x`` over the ranks, in float32, returned in ``x``'s dtype (may reuse ``x``)."""
    if x.dtype == torch.float32:
        dist.all_reduce(x, group=group)
        return x
    wide = x.float()
    dist.all_reduce(wide, group=group)
    return wide.to(x.dtype)


_gather_single = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


class RowParallelLinear(nn.Linear):
    """``all_reduce(x_r @ W_rᵀ + b_r)``: a linear whose input features are split over
    the ranks (the attention out-projection; ``b`` is zero except on rank 0)."""

    group = None

    @classmethod
    def wrap(cls, linear: nn.Linear, group=None) -> RowParallelLinear:
        with torch.device("meta"):
            new = cls(1, 1, bias=linear.bias is not None)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new.weight, new.bias = linear.weight, linear.bias  # the same parameters, no copy
        new.group = group
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., in/N) -> (..., out)
        return all_reduce_sum(super().forward(x), self.group)


class ReducingMoE:
    """A MoE component whose expert output is summed over the ranks: routing is the
    wrapped component's (computed identically on every rank from the replicated
    router), experts run on the rank's slice of the intermediate dimension."""

    def __init__(self, inner, group=None):
        self.inner = inner
        self.group = group

    def route(self, router_logits: torch.Tensor, k: int):
        return self.inner.route(router_logits, k)

    def experts(
        self, x, indices, weights, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, swiglu_limit
    ) -> torch.Tensor:  # (N, H) partial -> (N, H) summed
        run = getattr(self.inner, "experts", None) or moe_experts
        y = run(x, indices, weights, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, swiglu_limit)
        return all_reduce_sum(y, self.group)


class VocabParallelUnembedding(nn.Module):
    """Logits of the rank's vocabulary rows, all-gathered: ``(..., H) -> (..., V)``."""

    def __init__(self, weight: nn.Parameter, vocab_size: int, world: int, group=None):
        super().__init__()
        self.weight = weight  # (Vp, H), rows past the vocabulary are zero
        self.vocab_size, self.world, self.group = vocab_size, world, group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = F.linear(x, self.weight).contiguous()  # (B, T, Vp)
        gathered = local.new_empty((self.world * local.shape[0], *local.shape[1:]))  # (N B, T, Vp)
        _gather_single(gathered, local, group=self.group)
        full = gathered.view(self.world, *local.shape).movedim(0, -2)  # (B, T, N, Vp)
        return full.flatten(-2)[..., : self.vocab_size]  # (B, T, V)


class BroadcastSampler:
    """Every rank samples, rank 0's tokens win: ranks stay in lock-step (same stop
    decisions, same cache contents) even when sampling is unseeded."""

    def __init__(self, inner, device: torch.device, group=None):
        self.inner, self.device, self.group = inner, device, group

    def __getattr__(self, name: str) -> Any:  # probabilities, ...
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def generator(self, seed):
        return self.inner.generator(seed)

    def sample(self, logits, params, generator) -> np.ndarray:
        tokens = np.asarray(self.inner.sample(logits, params, generator), dtype=np.int64)  # (B,)
        t = torch.from_numpy(tokens).to(self.device)
        src = 0 if self.group is None else dist.get_global_rank(self.group, 0)
        dist.broadcast(t, src=src, group=self.group)
        return t.cpu().numpy()


# ----------------------------------------------------------------------------- loading


def load_sharded_transformer(
    checkpoint,
    plan: ShardPlan,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    attention=None,
    moe=None,
    experts: str = "auto",
    group=None,
) -> Transformer:
    """This rank's slice of the model, wired with the collectives (a process group
    must be initialised when ``plan.world > 1``)."""
    moe = moe if moe is not None else TorchMoE()
    model = load_transformer(
        ShardedCheckpoint(checkpoint, plan),
        device=device,
        dtype=dtype,
        config=plan.local_config,
        attention=attention,
        moe=moe,
        experts=experts,
    )
    return parallelize(model, plan, group)


def parallelize(model: Transformer, plan: ShardPlan, group=None) -> Transformer:
    """Wire a slice's modules with the collectives, in place: the attention
    out-projection and the experts sum over the ranks, the unembedding gathers."""
    for block in model.block:
        block.attn.out = RowParallelLinear.wrap(block.attn.out, group)
        block.mlp.moe = ReducingMoE(block.mlp.moe, group)
    if plan.vocab is not None:
        model.unembedding = VocabParallelUnembedding(
            model.unembedding.weight, plan.config.vocab_size, plan.world, group
        )
    model.fast_decode = False  # the flat decode step has no collectives
    return model


# ----------------------------------------------------------------------------- runtime


class TensorParallelRuntime(TorchRuntime):
    """One rank's :class:`TorchRuntime`: the engine sees the whole model's config and
    full logits; the KV cache holds only this rank's kv heads."""

    def __init__(
        self, model: Transformer, *, plan: ShardPlan, device: torch.device, dtype: torch.dtype
    ):
        super().__init__(model, device=device, dtype=dtype)
        self.plan = plan
        self.model_config = plan.config
        self.local_config = plan.local_config
        self.rank, self.world_size = plan.rank, plan.world

    def new_cache(self, batch_size: int, max_tokens: int) -> KVCache:
        return KVCache(
            self.local_config, batch_size, max_tokens, device=self._device, dtype=self._dtype
        )


def world_from_env() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's variables (or the live group)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def local_gpu(local_rank: int) -> int:
    """The CUDA index of this process: ``LOCAL_RANK``, or 0 when the launcher made one GPU
    visible per process (``CUDA_VISIBLE_DEVICES``)."""
    count = torch.cuda.device_count()
    if local_rank < count:
        return local_rank
    if count == 1:
        return 0
    raise BackendUnavailableError(
        f"the process with LOCAL_RANK={local_rank} needs a GPU of its own, but only {count} "
        "GPU(s) are visible; start at most that many processes per node"
    )


def resolve_tp_device(name: str | None, local_rank: int | None = None) -> torch.device:
    """``auto``/``cuda`` -> this process's GPU (``cuda:LOCAL_RANK``), ``cpu`` -> ``cpu``."""
    if local_rank is None:
        local_rank = world_from_env()[2]
    name = name or "auto"
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"invalid device {name!r}; allowed: auto, cpu, cuda") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(
            f"tensor parallelism runs on cuda (NCCL) or cpu (gloo), not {device.type!r}"
        )
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "device 'cuda' asked for, but this PyTorch build sees no CUDA GPU; use --device cpu"
        )
    index = local_gpu(local_rank)
    if device.index is not None and device.index != index:
        raise ConfigError(
            f"device {name!r}: under torchrun each process uses its own GPU (cuda:{index} "
            f"for LOCAL_RANK={local_rank}); pass --device cuda"
        )
    return torch.device("cuda", index)


def bind_local_gpu() -> None:
    """Under torchrun, make this process's GPU the current one before anything touches
    CUDA, so components the engine creates for ``"cuda"`` land there, not on cuda:0."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        torch.cuda.set_device(local_gpu(int(os.environ.get("LOCAL_RANK", "0"))))


def _destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group torchrun described (NCCL for CUDA, gloo for CPU;
    ``MIND4_DIST_BACKEND`` overrides); ``(rank, world_size)``. An existing group is kept."""
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    # NVLink SHARP (multicast) can take a shared host's GPUs out of service: off unless asked
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    backend = os.environ.get("MIND4_DIST_BACKEND") or ("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        try:  # eager NCCL communicator on this GPU (torch >= 2.3)
            dist.init_process_group(backend=backend, device_id=device)
        except TypeError:
            dist.init_process_group(backend=backend)
    else:
        dist.init_process_group(backend=backend)
    atexit.register(_destroy_process_group)
    return dist.get_rank(), dist.get_world_size()


def quiet_stdout() -> None:
    """Send this process's stdout to /dev/null (ranks > 0: only rank 0 prints).
    ``MIND4_TP_PRINT=all`` keeps every rank's output."""
    if os.environ.get("MIND4_TP_PRINT", "") == "all":
        return
    sys.stdout.flush()
    sys.stdout = open(os.devnull, "w")  # for the life of the process


def factory(
    *, checkpoint, config: Config | None = None, components: Mapping[str, Any] | None = None
) -> TorchRuntime:
    """The ``torch-tp`` backend's factory. Under torchrun (``WORLD_SIZE`` > 1) each
    process loads its slice and joins the process group; alone it is the torch backend.

    The engine's ``components["sampler"]`` is replaced in place by a
    :class:`BroadcastSampler` (the engine reads the mapping after this call)."""
    rank, world, local_rank = world_from_env()
    if world == 1:
        from .runtime import factory as single_process

        return single_process(checkpoint=checkpoint, config=config, components=components)
    runtime_config = getattr(config, "runtime", None)
    device = resolve_tp_device(getattr(runtime_config, "device", "auto"), local_rank)
    dtype = resolve_dtype(getattr(runtime_config, "dtype", None), device)
    # plan (and refuse) before joining the group: every rank fails alike, nobody waits
    plan = plan_shards(checkpoint.config, world, rank, mxfp4_mlp2=mlp2_is_mxfp4(checkpoint))
    joined = init_distributed(device)
    if joined != (rank, world):
        raise ConfigError(
            f"the process group has rank {joined[0]} of {joined[1]}, but the environment says "
            f"rank {rank} of {world} (RANK/WORLD_SIZE)"
        )
    components = components if components is not None else {}
    attention = component("attention", components.get("attention"), device, dtype, TorchAttention)
    moe = component("moe_routing", components.get("moe_routing"), device, dtype, TorchMoE)
    model = load_sharded_transformer(
        checkpoint, plan, device=device, dtype=dtype, attention=attention, moe=moe
    )
    if isinstance(components, MutableMapping) and components.get("sampler") is not None:
        components["sampler"] = BroadcastSampler(components["sampler"], device)
    if rank != 0:
        quiet_stdout()
    return TensorParallelRuntime(model, plan=plan, device=device, dtype=dtype)


def component(kind: str, value: Any, device: torch.device, dtype: torch.dtype, default):
    """A component object from what the caller passed: an object, a name, or nothing
    (the engine passes objects; a direct caller may pass a registered name)."""
    if value is None or value == "torch":
        return default()
    if isinstance(value, str):
        from mind4_core.plugins import get_manager

        record = get_manager().component(kind, value, device=device.type, dtype=dtype_name(dtype))
        return record.create(device=str(device), dtype=dtype_name(dtype))
    return value


def _resolve_device_name(name: str = "auto") -> str:
    """What ``device="auto"`` means for the engine (component creation, default dtype)."""
    if world_from_env()[1] == 1:
        return str(resolve_device(name))
    return str(resolve_tp_device(name))


factory.resolve_device = _resolve_device_name  # type: ignore[attr-defined] - read by the engine

bind_local_gpu()  # the engine imports this module before it creates the components
