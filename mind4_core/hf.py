"""The Hugging Face ``GptOssForCausalLM`` layout, read as a canonical checkpoint.

A Hugging Face gpt-oss directory holds a ``config.json`` with
``model_type: gpt_oss`` and tensors named after the ``transformers`` modules::

    model.embed_tokens.weight                     -> embedding.weight
    model.layers.{n}.input_layernorm.weight       -> block.{n}.attn.norm.scale
    model.layers.{n}.self_attn.{q,k,v}_proj.*     -> block.{n}.attn.qkv.*  (rows q, k, v)
    model.layers.{n}.self_attn.o_proj.*           -> block.{n}.attn.out.*
    model.layers.{n}.self_attn.sinks              -> block.{n}.attn.sinks
    model.layers.{n}.post_attention_layernorm.weight -> block.{n}.mlp.norm.scale
    model.layers.{n}.mlp.router.*                 -> block.{n}.mlp.gate.*
    model.layers.{n}.mlp.experts.gate_up_proj     -> block.{n}.mlp.mlp1_weight  (transposed)
    model.layers.{n}.mlp.experts.down_proj        -> block.{n}.mlp.mlp2_weight  (transposed)
    model.layers.{n}.mlp.experts.*_bias           -> block.{n}.mlp.mlp{1,2}_bias
    model.norm.weight                             -> norm.scale
    lm_head.weight                                -> unembedding.weight

The expert matrices are stored input-major (``gate_up_proj [E, H, 2I]``), the
transpose of the canonical ``mlp1_weight [E, 2I, H]``. In the MXFP4 variant,
``gate_up_proj_blocks``/``_scales`` are already in the canonical row
orientation and are shown as the MXFP4 pair of ``mlp1_weight`` unchanged.

Nothing is copied when the checkpoint opens: :class:`HFCheckpoint` maps each
canonical name to the stored tensor(s) and builds the canonical array on
access (``qkv`` concatenates three small tensors; an expert matrix is a
transposed view of the memory map), so memory stays bounded by one tensor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from . import mxfp4
from .checkpoint import (
    FLOAT_DTYPES,
    Checkpoint,
    bf16_bits_to_float32,
    check_directory,
    check_single_layout,
    expected_tensors,
    read_tensor_table,
    safetensors_files,
)
from .config import ModelConfig
from .errors import CheckpointError, ConfigError
from .safetensors_io import DTYPES, TensorInfo

MODEL_TYPE = "gpt_oss"
ARCHITECTURE = "GptOssForCausalLM"
#: the sigmoid gain of gpt-oss's clamped SwiGLU (fixed in Mind 4)
SWIGLU_ALPHA = 1.702
#: what ``quantization_config.modules_to_not_convert`` lists in released MXFP4 checkpoints
MXFP4_NOT_CONVERTED = [
    "model.layers.*.self_attn",
    "model.layers.*.mlp.router",
    "model.embed_tokens",
    "lm_head",
]
#: the YaRN defaults of ``transformers``' GptOssConfig when a config names no RoPE at all
HF_DEFAULT_ROPE = {
    "rope_type": "yarn",
    "factor": 32.0,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "truncate": False,
    "original_max_position_embeddings": 4096,
}
#: tokenizer a vocabulary size implies when the config names none
VOCAB_TOKENIZERS = {201088: "o200k_harmony"}
HARMONY_TOKEN_IDS = {"bos_token_id": 199998, "eos_token_id": 200002, "pad_token_id": 199999}


# ----------------------------------------------------------------------------- config


@attrs.frozen
class HFConfig:
    """A Hugging Face gpt-oss config.json, mapped to Mind 4."""

    model: ModelConfig
    attention_bias: bool = True
    tie_word_embeddings: bool = False
    quantization: str | None = None  # "mxfp4" or None
    tokenizer: str | None = None


def _rope_parameters(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The one RoPE parameter dict of a config (v5 ``rope_parameters`` or v4 ``rope_scaling``)."""
    rope = data.get("rope_parameters") or data.get("rope_scaling")
    if rope is None:
        rope = dict(HF_DEFAULT_ROPE)
    if not isinstance(rope, Mapping):
        raise ConfigError(f"{where}: rope_parameters must be an object, got {rope!r}")
    rope = dict(rope)
    nested = [v for v in rope.values() if isinstance(v, Mapping)]
    if nested:  # per layer type: {"full_attention": {...}, "sliding_attention": {...}}
        if any(v != nested[0] for v in nested) or len(nested) != len(rope):
            raise ConfigError(
                f"{where}: rope_parameters differ between layer types ({sorted(rope)}); "
                "Mind 4 uses one RoPE for every layer, as gpt-oss does"
            )
        rope = dict(nested[0])
    rope.setdefault("rope_type", rope.pop("type", "default"))
    rope.setdefault("rope_theta", data.get("rope_theta", 150000.0))
    return rope


def _rope_fields(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """RoPE/YaRN fields of :class:`ModelConfig` from a Hugging Face config."""
    rope = _rope_parameters(data, where)
    kind = rope["rope_type"]
    max_positions = data.get("max_position_embeddings", 131072)
    theta = rope["rope_theta"]
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise ConfigError(
            f"{where}: partial_rotary_factor={rope['partial_rotary_factor']!r} is not supported "
            "(gpt-oss rotates the whole head)"
        )
    if kind == "default":
        return {
            "rope_theta": theta,
            "rope_scaling_factor": 1.0,
            "initial_context_length": max_positions,
            "max_context_length": max_positions,
        }
    if kind != "yarn":
        raise ConfigError(
            f"{where}: rope_type {kind!r} is not supported; Mind 4 implements gpt-oss's RoPE "
            "('default', or 'yarn' with factor, beta_fast, beta_slow)"
        )
    original = rope.get("original_max_position_embeddings") or data.get(
        "original_max_position_embeddings", max_positions
    )
    factor = rope.get("factor")
    if factor is None:
        factor = max_positions / original
    if factor < 1.0:
        raise ConfigError(f"{where}: YaRN factor {factor!r} < 1 is not supported")
    concentration = 0.1 * math.log(factor) + 1.0
    if rope.get("mscale") and rope.get("mscale_all_dim"):
        raise ConfigError(
            f"{where}: YaRN mscale/mscale_all_dim are not supported (gpt-oss uses the "
            "concentration 0.1·ln(factor) + 1)"
        )
    attention_factor = rope.get("attention_factor")
    if attention_factor is not None and not math.isclose(attention_factor, concentration):
        raise ConfigError(
            f"{where}: YaRN attention_factor={attention_factor!r} differs from gpt-oss's "
            f"0.1·ln(factor) + 1 = {concentration!r}; not supported"
        )
    if factor > 1.0 and rope.get("truncate", True):
        raise ConfigError(
            f"{where}: YaRN with truncate=true (the transformers default when the key is absent) "
            'rounds the ramp ends; gpt-oss does not. Set "truncate": false in rope_parameters '
            "(the released gpt-oss configs do) to load it in Mind 4."
        )
    return {
        "rope_theta": theta,
        "rope_scaling_factor": float(factor),
        # transformers: `beta_fast or 32`, `beta_slow or 1`
        "rope_ntk_beta": float(rope.get("beta_fast") or 32.0),
        "rope_ntk_alpha": float(rope.get("beta_slow") or 1.0),
        "initial_context_length": int(original),
        "max_context_length": int(max_positions),
    }


def _sliding_window(data: Mapping[str, Any], n_layers: int, where: str) -> int:
    """Mind 4's ``sliding_window`` (0 = none) from ``layer_types`` and ``sliding_window``."""
    window = data.get("sliding_window") or 0
    types = data.get("layer_types")
    if types is None:  # transformers' default: sliding on even layers
        types = ["sliding_attention" if n % 2 == 0 else "full_attention" for n in range(n_layers)]
    if not isinstance(types, list) or len(types) != n_layers:
        raise ConfigError(
            f"{where}: layer_types must list one entry per layer ({n_layers}), got {types!r}"
        )
    unknown = sorted(set(types) - {"sliding_attention", "full_attention"})
    if unknown:
        raise ConfigError(
            f"{where}: layer_types has {unknown}; allowed: 'sliding_attention', 'full_attention'"
        )
    if all(t == "full_attention" for t in types) or not window:
        return 0
    gpt_oss = ["sliding_attention" if n % 2 == 0 else "full_attention" for n in range(n_layers)]
    if types != gpt_oss:
        raise ConfigError(
            f"{where}: layer_types {types} is not gpt-oss's pattern (sliding on even layers, full "
            "on odd ones, or full everywhere); Mind 4 supports only those"
        )
    return int(window)


def model_config_from_hf(data: Mapping[str, Any], where: str = "config.json") -> HFConfig:
    """Map a Hugging Face gpt-oss ``config.json`` object to an :class:`HFConfig`."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a JSON object")
    required = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "vocab_size",
        "num_experts_per_tok",
    )
    missing = [k for k in required if k not in data]
    if "num_local_experts" not in data and "num_experts" not in data:
        missing.append("num_local_experts")
    if missing:
        raise ConfigError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")
    alpha = data.get("swiglu_alpha", SWIGLU_ALPHA)
    if not math.isclose(alpha, SWIGLU_ALPHA):
        raise ConfigError(
            f"{where}: swiglu_alpha={alpha!r} is not supported; gpt-oss (and Mind 4) use 1.702"
        )
    layers = data["num_hidden_layers"]
    heads = data["num_attention_heads"]
    fields: dict[str, Any] = {
        "hidden_size": data["hidden_size"],
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": data.get("num_key_value_heads") or heads,
        "head_dim": data.get("head_dim") or data["hidden_size"] // heads,
        "intermediate_size": data["intermediate_size"],
        "vocab_size": data["vocab_size"],
        "num_experts": data.get("num_local_experts", data.get("num_experts")),
        "experts_per_token": data["num_experts_per_tok"],
        "sliding_window": _sliding_window(data, layers, where),
        "swiglu_limit": data.get("swiglu_limit", 7.0),
        "rms_norm_eps": data.get("rms_norm_eps", 1e-5),
        **_rope_fields(data, where),
    }
    try:
        model = ModelConfig(**fields)
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    quant = data.get("quantization_config") or {}
    method = quant.get("quant_method") if isinstance(quant, Mapping) else None
    if method not in (None, "mxfp4"):
        raise ConfigError(
            f"{where}: quantization method {method!r} is not supported (only 'mxfp4' experts)"
        )
    tokenizer = data.get("mind4_tokenizer") or VOCAB_TOKENIZERS.get(model.vocab_size)
    return HFConfig(
        model=model,
        attention_bias=bool(data.get("attention_bias", True)),
        tie_word_embeddings=bool(data.get("tie_word_embeddings", False)),
        quantization=method,
        tokenizer=tokenizer,
    )


def hf_config(
    cfg: ModelConfig, *, dtype: str = "bfloat16", mxfp4: bool = False, tokenizer: str | None = None
) -> dict[str, Any]:
    """A ``config.json`` that ``transformers`` (v4 and v5) reads as the same model.

    RoPE goes both ways ``transformers`` reads it: v5's ``rope_parameters`` and
    v4's ``rope_theta`` + ``rope_scaling``.
    """
    if cfg.rope_scaling_factor > 1.0:
        rope = {
            "rope_type": "yarn",
            "factor": cfg.rope_scaling_factor,
            "beta_fast": cfg.rope_ntk_beta,
            "beta_slow": cfg.rope_ntk_alpha,
            "truncate": False,
            "original_max_position_embeddings": cfg.initial_context_length,
        }
    else:
        rope = {"rope_type": "default"}
    types = [
        "sliding_attention" if cfg.window_of_layer(n) else "full_attention"
        for n in range(cfg.num_hidden_layers)
    ]
    data: dict[str, Any] = {
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_key_value_heads": cfg.num_key_value_heads,
        "head_dim": cfg.head_dim,
        "num_local_experts": cfg.num_experts,
        "num_experts_per_tok": cfg.experts_per_token,
        "sliding_window": cfg.sliding_window or None,
        "layer_types": types,
        "max_position_embeddings": cfg.max_context_length,
        "rope_theta": cfg.rope_theta,
        "rope_scaling": rope,
        "rope_parameters": {**rope, "rope_theta": cfg.rope_theta},
        "rms_norm_eps": cfg.rms_norm_eps,
        "swiglu_limit": cfg.swiglu_limit,
        "swiglu_alpha": SWIGLU_ALPHA,
        "attention_bias": True,
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "tie_word_embeddings": False,
        "use_cache": True,
        "dtype": dtype,
        "torch_dtype": dtype,
    }
    if tokenizer is not None:
        data["mind4_tokenizer"] = tokenizer
        if tokenizer == "o200k_harmony":
            data.update(HARMONY_TOKEN_IDS)
    if mxfp4:
        data["quantization_config"] = {
            "quant_method": "mxfp4",
            "modules_to_not_convert": list(MXFP4_NOT_CONVERTED),
        }
    return data


def read_hf_config(path: Path) -> HFConfig:
    cfg_path = path / "config.json"
    try:
        data = json.loads(cfg_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {cfg_path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{cfg_path}: cannot read it as JSON ({exc})") from None
    return model_config_from_hf(data, str(cfg_path))


# ----------------------------------------------------------------------------- names


@attrs.frozen
class Link:
    """How a canonical tensor is stored in the Hugging Face layout.

    ``kind``: ``same`` (one tensor, same shape), ``concat`` (rows of ``q``,
    ``k``, ``v``), ``transpose`` (last two axes swapped), ``mxfp4`` (the
    ``_blocks``/``_scales`` pair, canonical orientation), ``zeros`` (absent:
    a model without attention biases).
    """

    canonical: str
    kind: str
    hf: tuple[str, ...]


EXPERT_LINKS = {"mlp.mlp1_weight": "gate_up_proj", "mlp.mlp2_weight": "down_proj"}


def hf_links(
    cfg: ModelConfig,
    *,
    experts: Mapping[str, str] | str = "dense",
    attention_bias: bool = True,
    tie_word_embeddings: bool = False,
) -> list[Link]:
    """Every canonical tensor with where it lives in the Hugging Face layout.

    ``experts`` is ``"dense"`` or ``"mxfp4"``, or a mapping from each canonical
    expert weight name to one of those."""

    def storage(name: str) -> str:
        return experts if isinstance(experts, str) else experts.get(name, "dense")

    out = []
    for exp in expected_tensors(cfg):
        name = exp.name
        if name == "embedding.weight":
            out.append(Link(name, "same", ("model.embed_tokens.weight",)))
        elif name == "unembedding.weight":
            hf = "model.embed_tokens.weight" if tie_word_embeddings else "lm_head.weight"
            out.append(Link(name, "same", (hf,)))
        elif name == "norm.scale":
            out.append(Link(name, "same", ("model.norm.weight",)))
        else:
            _, n, *rest = name.split(".")
            part = ".".join(rest)
            layer = f"model.layers.{n}"
            out.append(Link(name, *_layer_link(layer, part, storage(name), attention_bias)))
    return out


def _layer_link(layer: str, part: str, storage: str, bias: bool) -> tuple[str, tuple[str, ...]]:
    attn, mlp = f"{layer}.self_attn", f"{layer}.mlp"
    if part in ("attn.qkv.weight", "attn.qkv.bias"):
        suffix = part.rsplit(".", 1)[1]
        if suffix == "bias" and not bias:
            return "zeros", ()
        return "concat", tuple(f"{attn}.{p}_proj.{suffix}" for p in "qkv")
    if part in ("attn.out.bias",) and not bias:
        return "zeros", ()
    if part in EXPERT_LINKS:
        base = f"{mlp}.experts.{EXPERT_LINKS[part]}"
        if storage == "mxfp4":
            return "mxfp4", (f"{base}_blocks", f"{base}_scales")
        return "transpose", (base,)
    simple = {
        "attn.norm.scale": f"{layer}.input_layernorm.weight",
        "attn.sinks": f"{attn}.sinks",
        "attn.out.weight": f"{attn}.o_proj.weight",
        "attn.out.bias": f"{attn}.o_proj.bias",
        "mlp.norm.scale": f"{layer}.post_attention_layernorm.weight",
        "mlp.gate.weight": f"{mlp}.router.weight",
        "mlp.gate.bias": f"{mlp}.router.bias",
        "mlp.mlp1_bias": f"{mlp}.experts.gate_up_proj_bias",
        "mlp.mlp2_bias": f"{mlp}.experts.down_proj_bias",
    }
    return "same", (simple[part],)


def hf_shapes(link: Link, shape: tuple[int, ...], cfg: ModelConfig) -> list[tuple[int, ...]]:
    """Shapes of the Hugging Face tensors of ``link`` for canonical shape ``shape``."""
    if link.kind == "same":
        return [shape]
    if link.kind == "concat":
        d = cfg.head_dim
        rows = (
            cfg.num_attention_heads * d,
            cfg.num_key_value_heads * d,
            cfg.num_key_value_heads * d,
        )
        return [(r, *shape[1:]) for r in rows]
    if link.kind == "transpose":
        return [(*shape[:-2], shape[-1], shape[-2])]
    if link.kind == "mxfp4":
        *lead, rows, cols = shape
        groups = cols // mxfp4.BLOCK
        return [(*lead, rows, groups, mxfp4.BLOCK // 2), (*lead, rows, groups)]
    return []


def split_rows(cfg: ModelConfig) -> list[tuple[int, int]]:
    """Row ranges of q, k and v inside the canonical ``qkv``."""
    d = cfg.head_dim
    q, kv = cfg.num_attention_heads * d, cfg.num_key_value_heads * d
    return [(0, q), (q, q + kv), (q + kv, q + 2 * kv)]


# ----------------------------------------------------------------------------- checkpoint


@attrs.frozen
class Derived:
    """A canonical tensor built on access from stored tensor(s) (see :class:`Link`)."""

    kind: str  # "concat" | "transpose" | "zeros"
    parts: tuple[TensorInfo, ...]
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)


class HFCheckpoint(Checkpoint):
    """A Hugging Face gpt-oss checkpoint seen through canonical tensor names.

    ``tensor(name)`` of a transposed expert matrix is a non-contiguous view of
    the memory map (``np.ascontiguousarray`` it if you need C order); ``qkv``
    is a concatenated copy (small)."""

    def __init__(self, *args: Any, sources: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._sources = sources or {}

    def source(self, name: str) -> str:
        """Where ``name`` is stored, in the file's own names."""
        self._entry(name)
        return self._sources.get(name, name)

    def tensor(self, name: str) -> np.ndarray:
        entry = self._entry(name)
        if not isinstance(entry, Derived):
            return super().tensor(name)
        if entry.kind == "concat":
            return np.concatenate([self._raw(p) for p in entry.parts], axis=0)
        if entry.kind == "transpose":
            return np.swapaxes(self._raw(entry.parts[0]), -1, -2)
        return np.zeros(entry.shape, dtype=DTYPES[entry.dtype])

    def float32(self, name: str) -> np.ndarray:
        entry = self._entry(name)
        if not isinstance(entry, Derived):
            return super().float32(name)
        raw = self.tensor(name)
        if entry.dtype == "BF16":
            return bf16_bits_to_float32(raw)
        return raw.astype(np.float32, copy=False)

    def release(self, name: str) -> None:
        entry = self._entry(name)
        if not isinstance(entry, Derived):
            return super().release(name)
        for info in entry.parts:
            self._files[info.file].release(info.name)


def _expert_storage(path: Path, table: Mapping[str, TensorInfo], link: Link) -> str:
    """``dense`` or ``mxfp4`` for one expert weight, from the tensors present."""
    dense = link.hf[0].replace("_blocks", "")
    blocks, scales = f"{dense}_blocks", f"{dense}_scales"
    has = {n: n in table for n in (dense, blocks, scales)}
    if has[dense] and (has[blocks] or has[scales]):
        raise CheckpointError(
            f"{path}: both {dense!r} and its MXFP4 {blocks!r}/{scales!r} are present; keep one"
        )
    if has[blocks] != has[scales]:
        present, absent = (blocks, scales) if has[blocks] else (scales, blocks)
        raise CheckpointError(
            f"{path}: MXFP4 tensor {present!r} has no partner {absent!r}; the checkpoint is "
            "incomplete"
        )
    return "mxfp4" if has[blocks] else "dense"


def _check_info(
    path: Path, info: TensorInfo | None, name: str, shape: tuple[int, ...], dtypes: tuple[str, ...]
) -> TensorInfo:
    if info is None:
        raise CheckpointError(
            f"{path}: missing tensor {name!r}. The checkpoint is incomplete or not in the "
            "Hugging Face GptOssForCausalLM layout."
        )
    if info.dtype not in dtypes:
        raise CheckpointError(
            f"{info.file}: tensor {name!r} has dtype {info.dtype}; expected {' or '.join(dtypes)}"
        )
    if info.shape != shape:
        raise CheckpointError(
            f"{info.file}: tensor {name!r} has shape {list(info.shape)} but config.json implies "
            f"{list(shape)}. The checkpoint and its config disagree."
        )
    return info


def _mxfp4_part(path: Path, info: TensorInfo | None, name: str) -> TensorInfo:
    if info is None:
        raise CheckpointError(f"{path}: missing MXFP4 tensor {name!r}")
    if info.dtype != "U8":
        raise CheckpointError(f"{info.file}: MXFP4 tensor {name!r} must be U8, got {info.dtype}")
    return info


def match_tensors(
    path: Path, hf: HFConfig, table: Mapping[str, TensorInfo]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Canonical name -> entry (TensorInfo, MXFP4 pair or :class:`Derived`), and its source."""
    cfg = hf.model
    check_single_layout(path, table)
    dense = hf_links(
        cfg, attention_bias=hf.attention_bias, tie_word_embeddings=hf.tie_word_embeddings
    )
    storage = {}
    for link in dense:
        if link.kind == "transpose":
            storage[link.canonical] = _expert_storage(path, table, link)
    links = hf_links(
        cfg,
        experts=storage,
        attention_bias=hf.attention_bias,
        tie_word_embeddings=hf.tie_word_embeddings,
    )
    shapes = {e.name: e.shape for e in expected_tensors(cfg)}
    entries: dict[str, Any] = {}
    sources: dict[str, str] = {}
    used: set[str] = set()
    for link in links:
        shape = shapes[link.canonical]
        parts_shapes = hf_shapes(link, shape, cfg)
        if link.kind == "mxfp4":
            blocks, scales = (_mxfp4_part(path, table.get(n), n) for n in link.hf)
            mxfp4.check_pair(blocks.shape, scales.shape, link.hf[0].removesuffix("_blocks"))
            if blocks.shape != parts_shapes[0]:
                raise CheckpointError(
                    f"{blocks.file}: MXFP4 tensor {blocks.name!r} has shape {list(blocks.shape)} "
                    f"(a matrix of {list(mxfp4.logical_shape(blocks.shape))}) but config.json "
                    f"implies {list(parts_shapes[0])} ({list(shape)}). The checkpoint and its "
                    "config disagree."
                )
            entries[link.canonical] = (blocks, scales)
        elif link.kind == "zeros":
            entries[link.canonical] = Derived("zeros", (), "F32", shape)
        else:
            parts = tuple(
                _check_info(path, table.get(n), n, s, FLOAT_DTYPES)
                for n, s in zip(link.hf, parts_shapes)
            )
            if len({p.dtype for p in parts}) > 1:
                raise CheckpointError(
                    f"{path}: {', '.join(p.name for p in parts)} have different dtypes "
                    f"({', '.join(p.dtype for p in parts)}); they must match to form "
                    f"{link.canonical!r}"
                )
            if link.kind == "same":
                entries[link.canonical] = parts[0]
            else:
                entries[link.canonical] = Derived(link.kind, parts, parts[0].dtype, shape)
        used.update(link.hf)
        sources[link.canonical] = _describe(link)
    extra = sorted(set(table) - used)
    if extra:
        raise CheckpointError(
            f"{path}: unexpected tensor(s) {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''} "
            "for this config.json (wrong num_hidden_layers, or another architecture?)"
        )
    return entries, sources


def _describe(link: Link) -> str:
    if link.kind == "same":
        return link.hf[0]
    if link.kind == "concat":
        first = link.hf[0]
        return first.replace(".q_proj.", ".{q,k,v}_proj.") + " (rows concatenated)"
    if link.kind == "transpose":
        return f"{link.hf[0]} (transposed)"
    if link.kind == "mxfp4":
        return link.hf[0].replace("_blocks", "_{blocks,scales}")
    return "(absent: zeros)"


class HFLoader:
    """Weight loader for the Hugging Face ``GptOssForCausalLM`` layout."""

    name = "hf"

    def probe(self, path: Path) -> str | None:
        path = Path(path)
        if not (path / "config.json").is_file():
            return "no config.json"
        try:
            data = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            return f"config.json unreadable ({exc})"
        if not isinstance(data, dict):
            return "config.json is not a JSON object"
        architectures = data.get("architectures") or []
        if data.get("model_type") != MODEL_TYPE and ARCHITECTURE not in architectures:
            found = data.get("model_type")
            return (
                f"config.json has model_type {found!r}, not {MODEL_TYPE!r}"
                if found
                else f"config.json has no model_type {MODEL_TYPE!r} nor architecture {ARCHITECTURE}"
            )
        try:
            files = safetensors_files(path)
        except CheckpointError as exc:
            return str(exc)
        if not files:
            return "no *.safetensors files"
        return None

    def open(self, path: Path) -> HFCheckpoint:
        path = check_directory(path)
        hf = read_hf_config(path)
        table, files = read_tensor_table(path)
        try:
            entries, sources = match_tensors(path, hf, table)
        except BaseException:
            for f in files:
                f.close()
            raise
        return HFCheckpoint(
            path,
            hf.model,
            entries,
            format=self.name,
            tokenizer=hf.tokenizer,
            files=files,
            sources=sources,
        )
