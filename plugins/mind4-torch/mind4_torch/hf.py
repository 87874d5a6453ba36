"""Cross-checks against ``transformers``' ``GptOssForCausalLM`` (an optional dependency).

:func:`to_transformers` builds the Hugging Face model with a Mind 4 model's exact
weights (the layout mapping of REFERENCE.md), so both can be compared logit for
logit or timed on the same work (``bench_decode.py --transformers``).
"""

from __future__ import annotations

import torch


def to_transformers(model):
    """``transformers``' ``GptOssForCausalLM`` holding ``model``'s exact weights, in float32.

    ``model`` is a :class:`mind4_torch.model.Transformer` (or a runtime holding one)."""
    from transformers import GptOssConfig, GptOssForCausalLM

    from mind4_core.hf import hf_config as export_config

    model = getattr(model, "model", model)
    cfg = model.config
    # the same config.json `mind4 convert --to hf` writes (the RoPE mapping lives there)
    data = export_config(cfg, dtype="float32")
    hf_config = GptOssConfig.from_dict(data)
    got = getattr(hf_config, "rope_parameters", None) or getattr(hf_config, "rope_scaling", None)
    want = data["rope_parameters"]["rope_type"]
    if got is not None and dict(got).get("rope_type", "default") != want:
        raise RuntimeError(f"transformers ignored the RoPE settings: {got}")
    hf_model = GptOssForCausalLM(hf_config).eval().float()
    w = {k: torch.from_numpy(v) for k, v in model.to_checkpoint_tensors().items()}
    Hq, Hkv, D = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    hf = {
        "model.embed_tokens.weight": w["embedding.weight"],
        "lm_head.weight": w["unembedding.weight"],
        "model.norm.weight": w["norm.scale"],
    }
    for n in range(cfg.num_hidden_layers):
        a, m, p = f"block.{n}.attn.", f"block.{n}.mlp.", f"model.layers.{n}."
        for part, (lo, hi) in {
            "q": (0, Hq * D),
            "k": (Hq * D, (Hq + Hkv) * D),
            "v": ((Hq + Hkv) * D, (Hq + 2 * Hkv) * D),
        }.items():
            hf[f"{p}self_attn.{part}_proj.weight"] = w[a + "qkv.weight"][lo:hi]
            hf[f"{p}self_attn.{part}_proj.bias"] = w[a + "qkv.bias"][lo:hi]
        hf[p + "self_attn.o_proj.weight"], hf[p + "self_attn.o_proj.bias"] = (
            w[a + "out.weight"],
            w[a + "out.bias"],
        )
        hf[p + "self_attn.sinks"] = w[a + "sinks"]
        hf[p + "input_layernorm.weight"], hf[p + "post_attention_layernorm.weight"] = (
            w[a + "norm.scale"],
            w[m + "norm.scale"],
        )
        hf[p + "mlp.router.weight"], hf[p + "mlp.router.bias"] = (
            w[m + "gate.weight"],
            w[m + "gate.bias"],
        )
        hf[p + "mlp.experts.gate_up_proj"] = w[m + "mlp1_weight"].transpose(1, 2)
        hf[p + "mlp.experts.gate_up_proj_bias"] = w[m + "mlp1_bias"]
        hf[p + "mlp.experts.down_proj"] = w[m + "mlp2_weight"].transpose(1, 2)
        hf[p + "mlp.experts.down_proj_bias"] = w[m + "mlp2_bias"]
    missing, unexpected = hf_model.load_state_dict(
        {k: v.contiguous() for k, v in hf.items()}, strict=False
    )
    if missing or unexpected:
        raise RuntimeError(f"weight mapping incomplete: missing {missing}, unexpected {unexpected}")
    return hf_model
