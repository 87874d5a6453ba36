"""The core's own plugin: the canonical weight loader, the NumPy sampler, and
the tokenizers of ``mind4_tokenizer`` (shipped in the same distribution).

It is registered before any entry point, so Mind 4 works even when no plugin
is installed (without a backend it can inspect, convert and tokenize)."""

from __future__ import annotations

from .hookspecs import hookimpl
from .records import SamplerRecord, WeightLoaderRecord


@hookimpl
def mind4_weight_loaders():
    return [
        WeightLoaderRecord(
            name="canonical",
            factory="mind4_core.checkpoint:CanonicalLoader",
            priority=10,
            features={"bf16", "float32", "float16", "mxfp4", "sharded"},
            description="original gpt-oss layout: config.json + *.safetensors (MXFP4 experts optional)",
        ),
        WeightLoaderRecord(
            name="hf",
            factory="mind4_core.hf:HFLoader",
            priority=5,
            features={"bf16", "float32", "float16", "mxfp4", "sharded"},
            description="Hugging Face GptOssForCausalLM layout (bf16 or MXFP4 _blocks/_scales experts)",
        ),
    ]


@hookimpl
def mind4_samplers():
    return [
        SamplerRecord(
            name="numpy",
            factory="mind4_core.sampling:NumpySampler",
            array_type="numpy",
            devices={"cpu"},
            dtypes={"float32", "bfloat16", "float16"},
            features={"temperature", "top_k", "top_p", "probabilities"},
            description="reference sampler on host arrays",
        )
    ]


@hookimpl
def mind4_tokenizers():
    try:
        from mind4_tokenizer.plugin import tokenizer_records
    except (
        ImportError
    ):  # the tokenizer package is part of this distribution; absent only in odd installs
        return []
    return tokenizer_records()
