"""The torch backend: a checkpoint becomes a :class:`Transformer` on a device,
wrapped as a :class:`mind4_core.protocols.Runtime` the core's engine drives.

``factory(checkpoint=, config=, components=)`` is what the backend record names.

Weights for inference are stored *input-major*: a linear weight keeps its
canonical logical shape ``(out, in)`` but lives in memory as ``(in, out)``
(a transposed view). For one token, ``x @ W`` then streams the weight
row by row, which on CPU reads memory faster than ``W @ x``, and the first and
last halves of the input rows are two contiguous blocks the decode fast path
multiplies on two threads (:mod:`mind4_torch.decode`); decode is bound by that
read. ``state_dict()`` names and shapes are unchanged.

On the CPU the weights are copied once, straight from the checkpoint's memory map,
into one block of anonymous memory aligned to 2 MiB and backed by transparent huge
pages where Linux offers them (:class:`WeightArena`): streaming a weight then crosses
a page boundary every 2 MiB instead of every 4 KiB, which measured ~10% faster
matrix-vector products on the 2-core CPU box.

MXFP4 expert weights are dequantised at load when the dense experts fit
comfortably in memory (fastest on CPU), else kept packed and dequantised per
selected expert (``MIND4_TORCH_EXPERTS=dense|mxfp4|auto`` overrides the choice).
"""

from __future__ import annotations

import mmap
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mind4_core.config import Config, ModelConfig
from mind4_core.errors import BackendUnavailableError, ConfigError, PluginError

from .attention import TorchAttention
from .errors import InputError
from .model import KVCache, Transformer
from .moe import MXFP4Weight, TorchMoE, dequantize_mxfp4

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_DTYPE = {"cpu": "float32", "cuda": "bfloat16", "mps": "float16"}
#: tensors kept in float32 whatever the model dtype (as in the checkpoint)
FLOAT32_SUFFIXES = ("norm.scale", "sinks")
EXPERT_WEIGHTS = ("mlp1_weight", "mlp2_weight")


# ----------------------------------------------------------------------------- device, dtype


def resolve_device(name: str | None = "auto") -> torch.device:
    """``auto`` -> cuda, else mps, else cpu; an explicit device must exist."""
    name = name or "auto"
    mps = getattr(torch.backends, "mps", None)
    mps_ok = mps is not None and mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"invalid device {name!r}; allowed: auto, cpu, cuda, cuda:N, mps"
        ) from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "device 'cuda' asked for, but this PyTorch build sees no CUDA GPU "
                f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BackendUnavailableError(
                f"device {name!r} asked for, but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif device.type == "mps" and not mps_ok:
        raise BackendUnavailableError(
            "device 'mps' asked for, but MPS is not available on this machine"
        )
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"the torch backend runs on cpu, cuda or mps, not {device.type!r}")
    return device


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    name = name or DEFAULT_DTYPE[device.type]
    if name not in DTYPES:
        raise ConfigError(f"invalid dtype {name!r}; allowed: {', '.join(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


# ----------------------------------------------------------------------------- weights


def host_tensor(checkpoint, name: str) -> torch.Tensor:
    """A checkpoint tensor as a CPU torch tensor (memory-mapped where possible)."""
    stored = checkpoint.dtype(name)
    array = checkpoint.tensor(name)
    with warnings.catch_warnings():  # memory-mapped arrays are read-only; we never write them
        warnings.simplefilter("ignore", UserWarning)
        t = torch.from_numpy(np.ascontiguousarray(array))
    if stored == "BF16":
        t = t.view(torch.bfloat16)
    return t


def input_major(t: torch.Tensor) -> torch.Tensor:
    """Same values and logical shape, memory laid out with the last two dims swapped."""
    return t.transpose(-1, -2).contiguous().transpose(-1, -2)


class WeightArena:
    """One block of host memory that every weight of a model is carved from.

    2 MiB-aligned, private anonymous memory marked ``MADV_HUGEPAGE`` (Linux), so the
    kernel backs it with transparent huge pages when it faults in; elsewhere an
    ordinary torch allocation. Tensors from :meth:`take` are views that keep the
    block alive; it is unmapped when the last of them goes.
    """

    HUGE_PAGE = 2 << 20
    ALIGN = 64  # bytes between tensors: a cache line

    def __init__(self, nbytes: int):
        self.block = self._allocate(max(nbytes, 1))  # uint8
        self.used = 0

    @classmethod
    def _allocate(cls, nbytes: int) -> torch.Tensor:
        advice = getattr(mmap, "MADV_HUGEPAGE", None)
        flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
        if advice is None or not flags:
            return torch.empty(nbytes, dtype=torch.uint8)
        try:
            region = mmap.mmap(-1, nbytes + cls.HUGE_PAGE, flags=flags)
            region.madvise(advice)
        except (OSError, ValueError):  # no such mapping or advice here: plain memory
            return torch.empty(nbytes, dtype=torch.uint8)
        whole = torch.frombuffer(region, dtype=torch.uint8)  # holds the mapping
        start = -whole.data_ptr() % cls.HUGE_PAGE
        return whole[start : start + nbytes]

    @classmethod
    def size_of(cls, tensors: Sequence[tuple[Sequence[int], torch.dtype]]) -> int:
        return sum(
            -(-int(np.prod(shape)) * dtype.itemsize // cls.ALIGN) * cls.ALIGN
            for shape, dtype in tensors
        )

    def take(self, shape: Sequence[int], dtype: torch.dtype, input_major: bool) -> torch.Tensor:
        """An uninitialised tensor of logical ``shape``, laid out input-major if asked
        (the last two dims swapped in memory, as :func:`input_major` does)."""
        n = int(np.prod(shape)) * dtype.itemsize
        flat = self.block[self.used : self.used + n].view(dtype)
        self.used += -(-n // self.ALIGN) * self.ALIGN
        if input_major:
            stored = (*shape[:-2], shape[-1], shape[-2])
            return flat.view(stored).transpose(-1, -2)
        return flat.view(tuple(shape))


def keep_experts_packed(checkpoint, device: torch.device, dtype: torch.dtype, moe) -> bool:
    """Whether MXFP4 expert weights stay packed (see the module docstring)."""
    names = [n for n in checkpoint.names() if n.endswith(EXPERT_WEIGHTS) and checkpoint.is_mxfp4(n)]
    if not names:
        return False
    choice = os.environ.get("MIND4_TORCH_EXPERTS", "auto")
    if choice not in ("auto", "dense", "mxfp4"):
        raise ConfigError(f"MIND4_TORCH_EXPERTS={choice!r}; allowed: auto, dense, mxfp4")
    if not isinstance(moe, TorchMoE):
        return False  # other components take dense arrays (protocols.MoERouting)
    if choice != "auto":
        return choice == "mxfp4"
    if device.type != "cpu":
        return True  # GPU memory is scarce and dequantising there is cheap
    dense = sum(int(np.prod(checkpoint_shape(checkpoint, n))) for n in names) * dtype.itemsize
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 16 << 30
    return dense > memory // 3


def checkpoint_shape(checkpoint, name: str) -> tuple[int, ...]:
    if hasattr(checkpoint, "shape"):
        return tuple(checkpoint.shape(name))
    if not checkpoint.is_mxfp4(name):
        return tuple(checkpoint.tensor(name).shape)  # a memory map: no data read
    blocks, _ = checkpoint.mxfp4(name)
    return (*blocks.shape[:-2], blocks.shape[-2] * 32)


def load_transformer(
    checkpoint,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    config: ModelConfig | None = None,
    attention=None,
    moe=None,
    experts: str = "auto",
    fast_layout: bool = True,
) -> Transformer:
    """Build a :class:`Transformer` from a :class:`mind4_core.checkpoint.Checkpoint`.

    ``experts``: ``"auto"`` (see :func:`keep_experts_packed`), ``"dense"`` or ``"mxfp4"``.
    ``fast_layout`` stores weights input-major for decoding (see the module docstring).
    The result holds no gradients; for training load with ``requires_grad_()``.
    """
    device = torch.device(device)
    config = config or checkpoint.config
    moe = moe if moe is not None else TorchMoE()
    if experts == "auto":
        packed = keep_experts_packed(checkpoint, device, dtype, moe)
    elif experts in ("dense", "mxfp4"):
        packed = experts == "mxfp4"
    else:
        raise ConfigError(f"experts={experts!r}; allowed: auto, dense, mxfp4")
    with torch.device("meta"):
        model = Transformer(config, attention=attention, moe=moe, init=False)
    modules = dict(model.named_modules())
    transposable = fast_layout and isinstance(moe, TorchMoE)

    def target_dtype(name: str) -> torch.dtype:
        return torch.float32 if name.endswith(FLOAT32_SUFFIXES) else dtype

    def packed_expert(name: str) -> bool:
        return name.rpartition(".")[2] in EXPERT_WEIGHTS and checkpoint.is_mxfp4(name) and packed

    shapes = {name: checkpoint_shape(checkpoint, name) for name, _ in model.named_parameters()}

    def lay_out_input_major(name: str) -> bool:
        is_expert = name.rpartition(".")[2] in EXPERT_WEIGHTS
        return (
            fast_layout
            and len(shapes[name]) >= 2
            and name != "embedding.weight"
            and (transposable or not is_expert)
        )

    arena = None
    if fast_layout and device.type == "cpu":  # inference on the host: one huge-page block
        arena = WeightArena(
            WeightArena.size_of(
                [
                    (shape, target_dtype(name))
                    for name, shape in shapes.items()
                    if not packed_expert(name)
                ]
            )
        )
    for name in shapes:
        owner_name, _, attr = name.rpartition(".")
        owner = modules[owner_name]
        if packed_expert(name):
            blocks, scales = (
                torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in checkpoint.mxfp4(name)
            )
            del owner._parameters[attr]
            setattr(owner, attr, MXFP4Weight(blocks, scales, dtype))
            continue
        if attr in EXPERT_WEIGHTS and checkpoint.is_mxfp4(name):
            blocks, scales = (
                torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in checkpoint.mxfp4(name)
            )
            source = torch.stack(
                [dequantize_mxfp4(blocks[e], scales[e], dtype) for e in range(len(blocks))]
            )
            mapped = False
        else:
            source, mapped = host_tensor(checkpoint, name), True
        transpose = lay_out_input_major(name)
        if arena is not None:  # one copy, from the map (or dequantised) into the arena
            value = arena.take(shapes[name], target_dtype(name), transpose)
            value.copy_(source)
        else:
            value = source.to(device=device, dtype=target_dtype(name))
            if mapped and value.data_ptr() == source.data_ptr():
                value = value.clone()  # own the memory: the checkpoint's map may close
            if transpose:
                value = input_major(value)
        owner._parameters[attr] = nn.Parameter(value, requires_grad=False)
    return model.eval()


# ----------------------------------------------------------------------------- runtime


class TorchRuntime:
    """A :class:`Transformer` on a device, driven by the engine (protocols.Runtime)."""

    def __init__(self, model: Transformer, *, device: torch.device, dtype: torch.dtype):
        self.model = model
        self.model_config: ModelConfig = model.config
        self._device = device
        self._dtype = dtype
        self.device = str(device)
        self.dtype = dtype_name(dtype)

    def new_cache(self, batch_size: int, max_tokens: int) -> KVCache:
        return KVCache(
            self.model_config, batch_size, max_tokens, device=self._device, dtype=self._dtype
        )

    def _tokens(self, tokens) -> torch.Tensor:
        """Validate ``tokens (B, T)`` (on the host, where it is cheap) and move them."""
        if isinstance(tokens, torch.Tensor):
            if tokens.is_floating_point() or tokens.dtype == torch.bool:
                raise InputError(f"tokens must be integers, got {tokens.dtype}")
            array = tokens.detach().cpu().numpy()
        else:
            array = np.asarray(tokens)
            if array.dtype.kind not in "iu":
                raise InputError(f"tokens must be integers, got dtype {array.dtype}")
        if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
            raise InputError(f"tokens must have shape (B, T) with B, T >= 1, got {array.shape}")
        V = self.model_config.vocab_size
        lo, hi = int(array.min()), int(array.max())
        if lo < 0 or hi >= V:
            raise InputError(
                f"token id {lo if lo < 0 else hi} is outside the vocabulary 0..{V - 1}"
            )
        t = torch.from_numpy(array.astype(np.int64, copy=False))
        return t if self._device.type == "cpu" else t.to(self._device)

    @torch.inference_mode()
    def forward(
        self,
        tokens: np.ndarray,
        cache: KVCache | None,
        offset: int | Sequence[int] = 0,
        *,
        last_only: bool = True,
    ) -> torch.Tensor:
        """``tokens (B, T)`` -> float32 logits ``(B, V)`` (``last_only``) or ``(B, T, V)``."""
        logits = self.model(self._tokens(tokens), cache, offset, last_only=last_only)  # (B, T|1, V)
        return (logits[:, -1] if last_only else logits).float()

    def to_numpy(self, x) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            x = x.detach()
            x = x.long() if not x.is_floating_point() else x.float()
            return x.cpu().numpy()
        return np.asarray(x)


def _component(kind: str, value: Any, device: torch.device, dtype: torch.dtype, default):
    """A component object from what the core passed: an object, a name, or nothing."""
    if value is None or value == "torch":
        return default()
    if isinstance(value, str):
        from mind4_core.plugins import get_manager

        record = get_manager().component(kind, value, device=device.type, dtype=dtype_name(dtype))
        if getattr(record, "array_type", "torch") != "torch":
            raise PluginError(
                f"{kind} {value!r} works on {record.array_type} arrays; the torch backend needs torch"
            )
        return record.create(device=str(device), dtype=dtype_name(dtype))
    return value


def factory(
    *, checkpoint, config: Config | None = None, components: Mapping[str, Any] | None = None
) -> TorchRuntime:
    """The torch backend's factory (``BackendRecord.factory``).

    Under ``torchrun`` with several processes (``WORLD_SIZE > 1``) it hands over to
    tensor parallelism (:func:`mind4_torch.parallel.factory`, the ``torch-tp`` backend)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from .parallel import factory as tensor_parallel

        return tensor_parallel(checkpoint=checkpoint, config=config, components=components)
    runtime_config = getattr(config, "runtime", None)
    device = resolve_device(getattr(runtime_config, "device", "auto"))
    dtype = resolve_dtype(getattr(runtime_config, "dtype", None), device)
    components = dict(components or {})
    attention = _component("attention", components.get("attention"), device, dtype, TorchAttention)
    moe = _component("moe_routing", components.get("moe_routing"), device, dtype, TorchMoE)
    model_config = checkpoint.config
    if config is not None and getattr(config, "model", None):
        from mind4_core import config as core_config

        apply = getattr(core_config, "apply_model_overrides", None)
        if apply is not None and isinstance(config.model, Mapping):
            model_config = apply(checkpoint.config, config)
    model = load_transformer(
        checkpoint, device=device, dtype=dtype, config=model_config, attention=attention, moe=moe
    )
    return TorchRuntime(model, device=device, dtype=dtype)


def _resolve_device_name(name: str = "auto") -> str:
    """What ``device="auto"`` (or a name) means here, as a string; the engine asks this
    before it creates the components, so they land on the backend's device."""
    return str(resolve_device(name))


factory.resolve_device = _resolve_device_name
