"""A small, throwaway torch backend for testing the specs themselves.

It is correct by default; each classic defect can be switched on by name, so
the tests can show that the specs catch it. It is not shipped: the real torch
backend lives in ``plugins/mind4-torch``.

Defects (names used by ``tests/specs/test_catches_defects.py``):

- ``offset_ignored``: attention places queries at positions ``0..T-1`` whatever the offset;
- ``no_sinks``: attention leaves the sink logit out of the softmax;
- ``window_off_by_one``: a query sees ``window + 1`` keys;
- ``temperature_inverted``: the sampler multiplies logits by the temperature;
- ``top_p_one_too_few``: top-p drops the token that crosses ``top_p``;
- ``rope_interleaved``: RoPE rotates adjacent pairs instead of the half-split pairs;
- ``softmax_all_experts``: gate weights are a softmax over every expert, not the selected k.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from mind4_core import hookimpl
from mind4_core.records import AttentionRecord, BackendRecord, MoERoutingRecord, SamplerRecord

DEFECTS = frozenset(
    {
        "offset_ignored",
        "no_sinks",
        "window_off_by_one",
        "temperature_inverted",
        "top_p_one_too_few",
        "rope_interleaved",
        "softmax_all_experts",
    }
)


# ----------------------------------------------------------------------------- components


class Attention:
    def __init__(self, device: str = "cpu", dtype: str = "float32", defects=frozenset()):
        self.device, self.defects = device, defects

    def __call__(self, q, k, v, sinks, *, sm_scale, window, offset):
        B, T, Hq, D = q.shape
        S, Hkv = k.shape[1], k.shape[2]
        k = k.repeat_interleave(Hq // Hkv, dim=2)  # (B, S, Hq, D)
        v = v.repeat_interleave(Hq // Hkv, dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q.float(), k.float()) * sm_scale
        if "offset_ignored" in self.defects:
            offset = 0
        off = torch.as_tensor(offset, device=q.device).reshape(-1, 1).expand(B, 1)
        q_pos = off + torch.arange(T, device=q.device)  # (B, T)
        k_pos = torch.arange(S, device=q.device)
        visible = k_pos[None, None, :] <= q_pos[:, :, None]
        if window:
            if "window_off_by_one" in self.defects:
                visible &= k_pos[None, None, :] >= q_pos[:, :, None] - window
            else:
                visible &= k_pos[None, None, :] > q_pos[:, :, None] - window
        scores = scores.masked_fill(~visible[:, None], float("-inf"))  # (B, Hq, T, S)
        if "no_sinks" in self.defects:
            probs = torch.softmax(scores, dim=-1)
        else:
            sink = sinks.float().reshape(1, Hq, 1, 1).expand(B, Hq, T, 1)
            probs = torch.softmax(torch.cat([scores, sink], dim=-1), dim=-1)[..., :-1]
        return torch.einsum("bhts,bshd->bthd", probs, v.float()).to(q.dtype)


class Routing:
    def __init__(self, device: str = "cpu", dtype: str = "float32", defects=frozenset()):
        self.defects = defects

    def route(self, router_logits, k):
        logits = router_logits.float()
        top, indices = torch.topk(logits, k, dim=-1)  # (N, k), descending
        if "softmax_all_experts" in self.defects:
            weights = torch.softmax(logits, dim=-1).gather(-1, indices)
        else:
            weights = torch.softmax(top, dim=-1)
        return indices, weights

    def experts(
        self, x, indices, weights, mlp1_weight, mlp1_bias, mlp2_weight, mlp2_bias, swiglu_limit
    ):
        h = torch.einsum("nkoh,nh->nko", mlp1_weight[indices].float(), x.float())
        h = h + mlp1_bias[indices].float()  # (N, k, 2I)
        glu, lin = (
            h[..., ::2].clamp(max=swiglu_limit),
            h[..., 1::2].clamp(-swiglu_limit, swiglu_limit),
        )
        a = glu * torch.sigmoid(1.702 * glu) * (lin + 1)  # (N, k, I)
        y = (
            torch.einsum("nkhi,nki->nkh", mlp2_weight[indices].float(), a)
            + mlp2_bias[indices].float()
        )
        return torch.einsum("nk,nkh->nh", weights.float(), y).to(x.dtype)


class Sampler:
    def __init__(self, device: str = "cpu", dtype: str = "float32", defects=frozenset()):
        self.defects = defects

    def generator(self, seed):
        g = torch.Generator()
        g.manual_seed(seed if seed is not None else int(np.random.SeedSequence().entropy % 2**63))
        return g

    def probabilities(self, logits, params):
        logits = logits.float().reshape(-1, logits.shape[-1])
        if params.temperature == 0:
            return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
        if "temperature_inverted" in self.defects:
            p = torch.softmax(logits * params.temperature, dim=-1)
        else:
            p = torch.softmax(logits / params.temperature, dim=-1)
        sorted_p, order = torch.sort(p, dim=-1, descending=True, stable=True)
        keep = torch.ones_like(sorted_p, dtype=torch.bool)
        if params.top_k > 0:
            keep[:, params.top_k :] = False
            sorted_p = torch.where(keep, sorted_p, 0.0)
            sorted_p = sorted_p / sorted_p.sum(-1, keepdim=True)
        if params.top_p < 1:
            mass = torch.cumsum(sorted_p, dim=-1)
            if "top_p_one_too_few" in self.defects:
                keep &= mass < params.top_p
                keep[:, 0] = True
            else:
                keep &= (mass - sorted_p) < params.top_p
            sorted_p = torch.where(keep, sorted_p, 0.0)
            sorted_p = sorted_p / sorted_p.sum(-1, keepdim=True)
        return torch.zeros_like(p).scatter(-1, order, sorted_p)

    def sample(self, logits, params, generator):
        if params.temperature == 0:
            return logits.float().reshape(-1, logits.shape[-1]).argmax(-1).numpy().astype(np.int64)
        p = self.probabilities(logits, params)
        return torch.multinomial(p, 1, generator=generator)[:, 0].numpy().astype(np.int64)


# ----------------------------------------------------------------------------- runtime


def rope_tables(cfg, positions: torch.Tensor):
    """cos, sin (..., D/2) for integer positions, YaRN as in REFERENCE.md."""
    d, theta, f = cfg.head_dim, cfg.rope_theta, cfg.rope_scaling_factor
    freq = theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    if f > 1:
        low = (
            d
            / 2
            * math.log(cfg.initial_context_length / (cfg.rope_ntk_beta * 2 * math.pi))
            / math.log(theta)
        )
        high = (
            d
            / 2
            * math.log(cfg.initial_context_length / (cfg.rope_ntk_alpha * 2 * math.pi))
            / math.log(theta)
        )
        low, high = max(low, 0.0), min(high, d - 1.0)
        ramp = ((torch.arange(d // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
        inv_freq = ramp / (f * freq) + (1 - ramp) / freq
        conc = 0.1 * math.log(f) + 1
    else:
        inv_freq, conc = 1 / freq, 1.0
    angles = positions.double()[..., None] * inv_freq
    return (angles.cos() * conc).float(), (angles.sin() * conc).float()


def apply_rope(x, cos, sin, interleaved: bool):
    """x (B, T, H, D); cos, sin (B, T, D/2)."""
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    xf = x.float()
    if interleaved:
        x1, x2 = xf[..., 0::2], xf[..., 1::2]
        out = torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2)
    else:
        half = x.shape[-1] // 2
        x1, x2 = xf[..., :half], xf[..., half:]
        out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)
    return out.to(x.dtype)


class Runtime:
    def __init__(self, *, checkpoint, config, components, dtype="float32", defects=frozenset()):
        self.model_config = cfg = checkpoint.config
        self.device = "cpu"
        self.dtype = (config.runtime.dtype if config is not None else None) or dtype
        self.tdtype = getattr(torch, self.dtype)
        self.defects = defects
        self.attention = components.get("attention") or Attention(defects=defects)
        self.routing = components.get("moe_routing") or Routing(defects=defects)
        self.w = {
            name: torch.from_numpy(np.array(checkpoint.float32(name))).to(
                torch.float32
                if name.endswith("norm.scale") or name.endswith("sinks")
                else self.tdtype
            )
            for name in checkpoint.names()
        }
        self.cfg = cfg

    def new_cache(self, batch_size, max_tokens):
        c = self.cfg
        shape = (batch_size, max_tokens, c.num_key_value_heads, c.head_dim)
        return [
            (torch.zeros(shape, dtype=self.tdtype), torch.zeros(shape, dtype=self.tdtype))
            for _ in range(c.num_hidden_layers)
        ]

    def _norm(self, x, scale):
        xf = x.float()
        return (
            xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.cfg.rms_norm_eps) * scale
        ).to(x.dtype)

    def forward(self, tokens, cache, offset=0, *, last_only=True):
        c, w = self.cfg, self.w
        tokens = torch.as_tensor(np.asarray(tokens, np.int64))
        B, T = tokens.shape
        off = torch.as_tensor(np.broadcast_to(np.asarray(offset, np.int64), (B,)).copy())
        positions = off[:, None] + torch.arange(T)  # (B, T)
        cos, sin = rope_tables(c, positions)
        Hq, Hkv, D = c.num_attention_heads, c.num_key_value_heads, c.head_dim
        x = w["embedding.weight"][tokens]  # (B, T, H)
        for n in range(c.num_hidden_layers):
            a, m = f"block.{n}.attn.", f"block.{n}.mlp."
            h = self._norm(x, w[a + "norm.scale"])
            qkv = torch.nn.functional.linear(h, w[a + "qkv.weight"], w[a + "qkv.bias"])
            q = qkv[..., : Hq * D].reshape(B, T, Hq, D)
            k = qkv[..., Hq * D : (Hq + Hkv) * D].reshape(B, T, Hkv, D)
            v = qkv[..., (Hq + Hkv) * D :].reshape(B, T, Hkv, D)
            interleaved = "rope_interleaved" in self.defects
            q, k = apply_rope(q, cos, sin, interleaved), apply_rope(k, cos, sin, interleaved)
            if cache is None:
                keys, values, attn_offset = k, v, 0
            else:
                ck, cv = cache[n]
                for b in range(B):
                    ck[b, off[b] : off[b] + T] = k[b]
                    cv[b, off[b] : off[b] + T] = v[b]
                keys, values, attn_offset = ck, cv, off
            o = self.attention(
                q, keys, values, w[a + "sinks"], sm_scale=1 / math.sqrt(D),
                window=c.window_of_layer(n), offset=attn_offset,
            )  # fmt: skip
            x = x + torch.nn.functional.linear(
                o.reshape(B, T, Hq * D), w[a + "out.weight"], w[a + "out.bias"]
            )
            h = self._norm(x, w[m + "norm.scale"]).reshape(B * T, -1)
            router = torch.nn.functional.linear(h, w[m + "gate.weight"], w[m + "gate.bias"])
            indices, weights = self.routing.route(router, c.experts_per_token)
            y = self.routing.experts(
                h, indices, weights, w[m + "mlp1_weight"], w[m + "mlp1_bias"],
                w[m + "mlp2_weight"], w[m + "mlp2_bias"], c.swiglu_limit,
            )  # fmt: skip
            x = x + y.reshape(B, T, -1)
        if last_only:
            x = x[:, -1:]
        logits = torch.nn.functional.linear(
            self._norm(x, w["norm.scale"]), w["unembedding.weight"]
        ).float()
        return logits[:, -1] if last_only else logits

    def to_numpy(self, x):
        x = x.detach().cpu()
        return x.float().numpy() if x.is_floating_point() else x.numpy()


# ----------------------------------------------------------------------------- the plugin


class ReferencePlugin:
    """A plugin object: register with ``mind4_core.plugins.temporary_plugin(obj, name)``."""

    def __init__(self, name: str = "ref", defects=frozenset(), xfail: dict[str, str] | None = None):
        unknown = set(defects) - DEFECTS
        assert not unknown, f"unknown defects {unknown}"
        self.name, self.defects, self.xfail = name, frozenset(defects), xfail or {}

    def _part(self, cls):
        return functools.partial(cls, defects=self.defects)

    @hookimpl
    def mind4_attention(self):
        return [
            AttentionRecord(
                name=self.name, factory=self._part(Attention), dtypes={"float32", "bfloat16"}
            )
        ]

    @hookimpl
    def mind4_moe_routing(self):
        return [
            MoERoutingRecord(
                name=self.name,
                factory=self._part(Routing),
                dtypes={"float32", "bfloat16"},
                features={"experts"},
            )
        ]

    @hookimpl
    def mind4_samplers(self):
        return [
            SamplerRecord(
                name=self.name,
                factory=self._part(Sampler),
                dtypes={"float32", "bfloat16"},
                features={"temperature", "top_k", "top_p", "probabilities"},
            )
        ]

    @hookimpl
    def mind4_backends(self):
        return [
            BackendRecord(
                name=self.name,
                factory=self._part(Runtime),
                devices={"cpu"},
                dtypes={"float32", "bfloat16"},
                components={"attention": self.name, "moe_routing": self.name, "sampler": self.name},
                tolerances={"float32": 1e-4, "bfloat16": 3e-2},
                xfail=self.xfail,
            )
        ]
