"""The decode fast path: one new token of one sequence, with the fewest operations.

Decoding a token at batch 1 reads every weight it uses once and does little
arithmetic, so on a CPU its time is the weight read plus the per-operation cost
of eager PyTorch (a few microseconds each, hundreds per token). This module
computes exactly what :class:`mind4_torch.model.Transformer` computes for
``tokens (1, 1)`` with a KV cache, as a flat loop over pre-bound weights:

- no module calls, no shape checks, views instead of reshapes;
- RoPE as ``x * cos + roll(x, D/2) * sin`` on q and k heads together;
- attention on the visible cache slice only, no mask (a single query sees all of it);
- the ``k`` selected experts only, one matrix-vector product per expert matrix
  (:func:`mind4_torch.moe.one_token`, shared with the readable path).

The model uses it only with its own torch components and no hooks: a swapped-in
attention or MoE component, or a forward hook (the lab's capture installs both),
always goes through the readable path. The tests check that both paths agree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from .attention import TorchAttention
from .moe import TorchMoE, one_token
from .util import cast, float32


class DecodeStep:
    """``step(token, cache, pos) -> logits (1, 1, V)`` for a :class:`Transformer`.

    Holds references to the model's parameters (not copies): in-place updates are
    seen; replacing parameters needs a new plan (the model drops its plan on ``.to()``).
    """

    def __init__(self, model):
        from .model import Structure

        cfg = model.config
        self.model = model
        self.version = Structure.version
        self.usable = standard(model)
        self.eps = cfg.rms_norm_eps
        self.H, self.Hq, self.Hkv, self.D = (
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        self.k = cfg.experts_per_token
        self.limit = cfg.swiglu_limit
        self.layers = [
            (
                block.attn.norm.scale,
                block.attn.qkv.weight,
                block.attn.qkv.bias,
                block.attn.sinks,
                block.attn.out.weight,
                block.attn.out.bias,
                block.attn.window,
                block.attn.sm_scale,
                block.mlp.norm.scale,
                block.mlp.gate.weight,
                block.mlp.gate.bias,
                tuple(
                    per_expert(w)
                    for w in (
                        block.mlp.mlp1_weight,
                        block.mlp.mlp1_bias,
                        block.mlp.mlp2_weight,
                        block.mlp.mlp2_bias,
                    )
                ),
            )
            for block in model.block
        ]
        self.modules = list(model.modules())

    def applies(self) -> bool:
        """True when the model is the standard one (see :func:`standard`) and no module
        has forward hooks (they must see every call)."""
        if not self.usable or _global_forward_hooks or _global_forward_pre_hooks:
            return False
        return not any(m._forward_hooks or m._forward_pre_hooks for m in self.modules)

    def rms_norm(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return cast(torch.rms_norm(float32(x), (self.H,), scale, self.eps), x.dtype)

    def __call__(self, token: torch.Tensor, cache, pos: int) -> torch.Tensor:
        model = self.model
        Hq, Hkv, D, k = self.Hq, self.Hkv, self.D, self.k
        G = Hq // Hkv
        cos, sin = model.rope.at(pos, token.device)  # (D,) each
        x = model.embedding.weight[token.view(1)]  # (1, H)

        rows = cache.rows()  # per layer: keys, values of row 0, (max_tokens, Hkv, D) each
        for layer, (key_cache, value_cache) in zip(self.layers, rows, strict=True):
            n1, wqkv, bqkv, sinks, wout, bout, window, sm_scale, n2, wg, bg, mlp = layer
            # attention
            qkv = F.linear(self.rms_norm(x, n1), wqkv, bqkv).view(Hq + 2 * Hkv, D)
            qk, v = qkv.split_with_sizes([Hq + Hkv, Hkv])  # (Hq + Hkv, D), (Hkv, D)
            qk32 = float32(qk)
            qk = cast(torch.addcmul(qk32 * cos, qk32.roll(D // 2, -1), sin), qk.dtype)  # RoPE
            q, k_new = qk.split_with_sizes([Hq, Hkv])  # (Hq, D), (Hkv, D)
            key_cache[pos].copy_(k_new)
            value_cache[pos].copy_(v)
            start = max(0, pos - window + 1) if window else 0  # the visible keys: no mask needed
            keys = float32(key_cache[start : pos + 1])  # (S, Hkv, D)
            values = float32(value_cache[start : pos + 1])  # (S, Hkv, D)
            scores = torch.matmul(float32(q).view(Hkv, G, D), keys.permute(1, 2, 0))  # (Hkv, G, S)
            scores.mul_(sm_scale)
            scores = torch.cat([scores, sinks.view(Hkv, G, 1)], dim=-1)  # the sink column
            probs = torch.softmax(scores, dim=-1)[..., :-1]  # (Hkv, G, S)
            o = torch.matmul(probs, values.transpose(0, 1)).view(1, Hq * D)  # (1, Hq D)
            x = x + F.linear(cast(o, x.dtype), wout, bout)  # (1, H)

            # mixture of experts
            t = self.rms_norm(x, n2)  # (1, H)
            top, idx = torch.topk(float32(F.linear(t, wg, bg)), k, dim=-1)  # (1, k)
            gates = torch.softmax(top, dim=-1)  # (1, k) float32
            x = x + one_token(t, idx.tolist()[0], gates.tolist()[0], *mlp, self.limit)  # (1, H)

        return model.unembedding(self.rms_norm(x, model.norm.scale)).view(1, 1, -1)  # (1, 1, V)


def per_expert(w):
    """Expert ``e``'s slice of ``w (E, ...)`` by ``w[e]``: a list of views made once (a
    list lookup instead of a tensor ``select`` per use); packed weights stay as they are."""
    return list(w.unbind(0)) if isinstance(w, torch.Tensor) else w


def standard(model) -> bool:
    """Whether ``model`` is exactly the readable model this path reproduces: its own module
    classes, the torch attention and MoE components, every head of the config (a tensor-
    parallel shard, a wrapped linear or an observer component is not)."""
    from . import model as m

    cfg = model.config
    expected = {
        "embedding": m.Embedding,
        "norm": m.RMSNorm,
        "unembedding": m.Linear,
    }
    if any(type(getattr(model, name)) is not cls for name, cls in expected.items()):
        return False
    for block in model.block:
        attn, mlp = block.attn, block.mlp
        kinds = (
            (block, m.TransformerBlock),
            (attn, m.AttentionBlock),
            (mlp, m.MLPBlock),
            (attn.norm, m.RMSNorm),
            (mlp.norm, m.RMSNorm),
            (attn.qkv, m.Linear),
            (attn.out, m.Linear),
            (mlp.gate, m.Linear),
            (attn.attention, TorchAttention),
            (mlp.moe, TorchMoE),
        )
        if any(type(obj) is not cls for obj, cls in kinds):
            return False
        heads = (attn.n_heads, attn.n_kv_heads, attn.head_dim)
        if heads != (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim):
            return False
        if tuple(attn.qkv.weight.shape) != (cfg.qkv_dim, cfg.hidden_size):
            return False
    return True
