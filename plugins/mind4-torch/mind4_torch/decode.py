"""The decode fast path: one new token of one sequence, with the fewest operations.

Decoding a token at batch 1 reads every weight it uses once and does little
arithmetic, so on a CPU its time is the weight read plus the per-operation cost
of eager PyTorch (one to a few microseconds each, a few hundred per token). This
module computes exactly what :class:`mind4_torch.model.Transformer` computes for
``tokens (1, 1)`` with a KV cache, as a flat loop over pre-bound weights:

- no module calls, no shape checks, views instead of reshapes;
- RoPE as one ``(D, D)`` rotation matrix per token (``x @ rot = x * cos + roll(x, D/2) *
  sin``), applied to q and k heads together by one matmul per layer;
- attention on the visible cache slice only, no mask (a single query sees all of it),
  through views of the cache in the layouts the matmuls take, made once per cache;
- the ``k`` selected experts only.

**Both cores on every matrix-vector product** (CPU, float32). A ``(1, in) @ (in, out)``
product runs on one thread in PyTorch's BLAS whatever ``torch.set_num_threads`` says;
on the 2-core CPU box one thread streams 13-24 GB/s of weights (1-16 MiB matrices), two
25-35. So each product is a batched matmul of two halves, which the BLAS runs on two
threads:

- a linear layer splits its *input*: the weight is stored input-major (see
  :mod:`mind4_torch.runtime`), so its first and last ``in/2`` rows are two contiguous
  blocks, ``(2, in/2, out)`` as a view; the two partial products are summed;
- the ``k`` chosen experts go as one batch of strided views into the expert tensor
  (two at a time: a view needs one stride between them), one expert per thread.

Elsewhere (other devices and dtypes, packed MXFP4 experts, a weight not input-major)
each product is the plain ``F.linear`` (:func:`mind4_torch.moe.one_token` for experts).

Where every product splits, RMSNorm is folded into the product that follows it:
``rmsnorm(x) @ W = r · ((x ⊙ scale) @ W)`` with ``r = 1/rms(x)`` a host float passed as
the matmul's ``alpha`` (:meth:`DecodeStep.rms_norm`); eager ``torch.rms_norm`` costs
eight operations, this three. Results differ from the readable path by float32
rounding only (the tests bound it).

The model uses this path only with its own torch components and no hooks: a swapped-in
attention or MoE component, or a forward hook (the lab's capture installs both),
always goes through the readable path. The tests check that both paths agree.
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from .attention import TorchAttention
from .moe import TorchMoE, one_token
from .util import cast, float32


def split_pays(w: torch.Tensor) -> bool:
    """Whether ``w (out, in)`` gets the two-halves product: float32 on a CPU with more
    than one thread, stored input-major (``w.t()`` contiguous), ``in`` even."""
    return (
        w.device.type == "cpu"
        and w.dtype == torch.float32
        and torch.get_num_threads() > 1
        and w.shape[-1] % 2 == 0
        and w.transpose(-1, -2).is_contiguous()
    )


class MatVec:
    """``x (1, in) -> x Wᵀ + b (1, out)`` for ``W (out, in)``, ``b (out,)`` or None.

    Split (see the module docstring): ``W``'s input rows as two contiguous halves
    ``(2, in/2, out)``, ``x`` as ``(2, 1, in/2)``; each half adds ``b / 2``
    (``beta=0.5`` on the broadcast bias) and the two partial rows are summed.
    Holds views of ``W`` and ``b``: in-place updates are seen."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor | None, split: bool | None = None):
        self.w, self.b = w, b
        self.split = split_pays(w) if split is None else split
        if self.split:
            out, n = w.shape
            self.halves = w.t().view(2, n // 2, out)  # (2, in/2, out)
            self.half_bias = None if b is None else b.view(1, 1, out).expand(2, 1, out)
            self.ones = torch.ones(1, 2, dtype=w.dtype, device=w.device)  # sums the halves
            self.zero = torch.zeros((), dtype=w.dtype, device=w.device)  # beta=0's input

    def partial(self, x: torch.Tensor, alpha: float) -> torch.Tensor:
        """``(1, in) -> (2, 1, out)``, summing to ``alpha x Wᵀ + b``."""
        x2 = x.view(2, 1, -1)  # (2, 1, in/2)
        if self.half_bias is None:
            return torch.baddbmm(self.zero, x2, self.halves, beta=0, alpha=alpha)
        return torch.baddbmm(self.half_bias, x2, self.halves, beta=0.5, alpha=alpha)

    def __call__(self, x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
        """``alpha x Wᵀ + b`` (``alpha``: split products only)."""
        if not self.split:
            return F.linear(x, self.w, self.b)
        return self.partial(x, alpha).sum(0)  # (1, out)

    def add_to(self, residual: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``residual + x Wᵀ + b``: split, one ``addmm`` sums the halves onto the residual."""
        if not self.split:
            return residual + F.linear(x, self.w, self.b)
        return torch.addmm(residual, self.ones, self.partial(x, 1.0).view(2, -1))  # (1, out)


class Experts:
    """``x (1, H)`` through its chosen experts, weighted, added to ``residual (1, H)``.

    Split: the chosen experts, in ascending order, two at a time as one batch of views
    ``(n, H, 2I)`` (``n <= 2``; a view has one stride between its experts), one batched
    matmul for the first matrices, one for the second; the gates weight and sum the
    ``n`` outputs in one ``addmm`` that also adds the residual."""

    def __init__(self, w1, b1, w2, b2, limit: float, split: bool | None = None):
        self.limit = limit
        dense = all(isinstance(w, torch.Tensor) for w in (w1, w2))
        self.split = dense and (all(split_pays(w) for w in (w1, w2)) if split is None else split)
        if self.split:
            self.tensors = (w1, b1.unsqueeze(1), w2, b2.unsqueeze(1))  # biases (E, 1, out)
            E = len(b1)
            #: views per pair of experts, kept while there are few pairs (E = 8: 28)
            self.views: dict | None = {} if E * (E - 1) // 2 <= 1024 else None
            # SwiGLU's clamps as one: glu (even columns) <= limit, -limit <= lin (odd ones)
            I = b1.shape[-1] // 2  # noqa: E741
            bounds = dict(dtype=b1.dtype, device=b1.device)
            self.low = torch.tensor([-float("inf"), -limit], **bounds).repeat(I)  # (2I,)
            self.high = torch.full((2 * I,), limit, **bounds)  # (2I,)
        else:
            self.per_expert = tuple(per_expert(w) for w in (w1, b1, w2, b2))

    def batch(self, chosen: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
        """``w1ᵀ (n, H, 2I), b1 (n, 1, 2I), w2ᵀ (n, I, H), b2 (n, 1, H)`` of experts
        ``chosen`` (ascending, evenly spaced): views into the expert tensors, made once."""
        views = None if self.views is None else self.views.get(chosen)
        if views is None:
            n, first = len(chosen), chosen[0]
            step = chosen[1] - first if n > 1 else 1
            views = []
            for i, t in enumerate(self.tensors):  # (E, rows, cols) -> (n, rows, cols)
                s = t.stride()
                view = t.as_strided(
                    (n, *t.shape[1:]), (step * s[0], *s[1:]), t.storage_offset() + first * s[0]
                )
                views.append(view.transpose(1, 2) if i % 2 == 0 else view)  # weights: (n, in, out)
            views = tuple(views)
            if self.views is not None:
                self.views[chosen] = views
        return views

    def __call__(
        self, x, residual, chosen: list[int], gates: torch.Tensor, alpha: float = 1.0
    ) -> torch.Tensor:
        """``residual + Σ gates_j expert_{chosen_j}(alpha x)``; ``gates (1, k)``."""
        if not self.split:
            x = x if alpha == 1.0 else x * alpha
            return residual + one_token(
                x, chosen, gates.tolist()[0], *self.per_expert, self.limit
            )  # (1, H)
        order = sorted(range(len(chosen)), key=chosen.__getitem__)
        if order != list(range(len(chosen))):  # (1, k) in ascending expert order
            gates = gates.flip(1) if len(order) == 2 else gates[:, order]
            chosen = [chosen[i] for i in order]
        H = x.shape[-1]
        for j in range(0, len(chosen), 2):
            w1, b1, w2, b2 = self.batch(tuple(chosen[j : j + 2]))
            n = w1.shape[0]
            h = torch.baddbmm(b1, x.expand(n, 1, H), w1, alpha=alpha)  # (n, 1, 2I)
            h = h.clamp_(self.low, self.high)
            glu, lin = h[..., 0::2], h[..., 1::2]  # (n, 1, I) each, clamped
            a = glu * torch.sigmoid(1.702 * glu)
            y = torch.baddbmm(b2, torch.addcmul(a, a, lin), w2)  # (n, 1, H): SwiGLU, then mlp2
            g = gates if n == len(chosen) else gates[:, j : j + n]  # (1, n)
            residual = torch.addmm(residual, g, y.view(n, H))  # (1, H)
        return residual


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
        self.layers = [
            (
                block.attn.norm.scale,
                MatVec(block.attn.qkv.weight, block.attn.qkv.bias),
                block.attn.sinks.view(self.Hkv, self.Hq // self.Hkv, 1),  # (Hkv, G, 1)
                MatVec(block.attn.out.weight, block.attn.out.bias),
                block.attn.window,
                block.attn.sm_scale,
                block.mlp.norm.scale,
                block.mlp.gate.weight.t(),  # (H, E)
                block.mlp.gate.bias,
                Experts(
                    block.mlp.mlp1_weight,
                    block.mlp.mlp1_bias,
                    block.mlp.mlp2_weight,
                    block.mlp.mlp2_bias,
                    cfg.swiglu_limit,
                ),
            )
            for block in model.block
        ]
        self.unembedding = MatVec(model.unembedding.weight, None)
        self.zero = torch.zeros((), device=model.unembedding.weight.device)  # beta=0's input
        products = [self.unembedding] + [p for layer in self.layers for p in layer[1:4:2]]
        self.fold = all(p.split for p in products)  # RMSNorm into the products (rms_norm)
        self.modules = list(model.modules())
        self._cache_views = weakref.WeakKeyDictionary()  # KVCache -> its views, while it lives

    def cache_views(self, cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, row 0's keys as ``(Hkv, D, max_tokens)`` and values as
        ``(Hkv, max_tokens, D)``: the layouts the attention matmuls take, as views made
        once per cache (a decode step then only narrows them to the visible positions)."""
        views = self._cache_views.get(cache)
        if views is None:
            views = [(k.permute(1, 2, 0), v.transpose(0, 1)) for k, v in cache.rows()]
            self._cache_views[cache] = views
        return views

    def applies(self) -> bool:
        """True when the model is the standard one (see :func:`standard`) and no module
        has forward hooks (they must see every call)."""
        if not self.usable or _global_forward_hooks or _global_forward_pre_hooks:
            return False
        return not any(m._forward_hooks or m._forward_pre_hooks for m in self.modules)

    def rms_norm(self, x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, float]:
        """``rmsnorm(x) = (x ⊙ scale) · r``, ``r = 1 / sqrt(mean(x²) + eps)``, as ``(x ⊙ scale, r)``:
        the product that follows takes ``r`` as its ``alpha`` (three small operations instead
        of ``torch.rms_norm``'s eight). That needs ``r`` on the host, so only where every
        product splits (CPU, float32); elsewhere ``(rmsnorm(x), 1.0)``."""
        if self.fold:
            norm = torch.linalg.vector_norm(x).item()
            return x * scale, 1.0 / math.sqrt(norm * norm / self.H + self.eps)
        return cast(torch.rms_norm(float32(x), (self.H,), scale, self.eps), x.dtype), 1.0

    def __call__(self, token: torch.Tensor, cache, pos: int) -> torch.Tensor:
        model = self.model
        Hq, Hkv, D, k = self.Hq, self.Hkv, self.D, self.k
        G = Hq // Hkv
        cos, sin = model.rope.at(pos, token.device)  # (D,) each
        # RoPE as a matrix: x @ rot = x * cos + roll(x, D/2) * sin, shared by every layer
        rot = torch.diag(cos).add_(torch.diag(sin).roll(D // 2, 0))  # (D, D) float32
        x = model.embedding.weight[token.view(1)]  # (1, H)

        rows = cache.rows()  # per layer: keys, values of row 0, (max_tokens, Hkv, D) each
        for layer, (key_cache, value_cache), (keys_t, values_t) in zip(
            self.layers, rows, self.cache_views(cache), strict=True
        ):
            n1, qkv_proj, sinks, out_proj, window, sm_scale, n2, wg, bg, experts = layer
            # attention
            qkv = qkv_proj(*self.rms_norm(x, n1)).view(Hq + 2 * Hkv, D)  # (Hq + 2 Hkv, D)
            qk, v = qkv.split_with_sizes([Hq + Hkv, Hkv])  # (Hq + Hkv, D), (Hkv, D)
            qk = cast(torch.mm(float32(qk), rot), qkv.dtype)  # q and k heads rotated
            q, k_new = qk.split_with_sizes([Hq, Hkv])  # (Hq, D), (Hkv, D)
            key_cache[pos].copy_(k_new)
            value_cache[pos].copy_(v)
            start = max(0, pos - window + 1) if window else 0  # the visible keys: no mask needed
            keys = float32(keys_t.narrow(2, start, pos + 1 - start))  # (Hkv, D, S)
            values = float32(values_t.narrow(1, start, pos + 1 - start))  # (Hkv, S, D)
            scores = torch.baddbmm(
                self.zero, float32(q).view(Hkv, G, D), keys, beta=0, alpha=sm_scale
            )  # (Hkv, G, S) = q kᵀ · sm_scale
            scores = torch.cat([scores, sinks], dim=-1)  # the sink column
            probs = torch.softmax(scores, dim=-1)[..., :-1]  # (Hkv, G, S)
            o = torch.bmm(probs, values).view(1, Hq * D)  # (1, Hq D)
            x = out_proj.add_to(x, cast(o, x.dtype))  # (1, H)

            # mixture of experts
            t, r = self.rms_norm(x, n2)  # (1, H): rmsnorm(x) = r t
            logits = torch.addmm(bg, t, wg, alpha=r)  # (1, E) router
            top, idx = torch.topk(float32(logits), k, dim=-1)  # (1, k)
            gates = cast(torch.softmax(top, dim=-1), x.dtype)  # (1, k)
            x = experts(t, x, idx.tolist()[0], gates, alpha=r)  # (1, H)

        logits = self.unembedding(*self.rms_norm(x, model.norm.scale))  # (1, V)
        return logits.view(1, 1, -1)  # (1, 1, V)


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
