"""The plugin author's manual: every hook Mind 4 calls.

A plugin is a module (or object) with functions named like the hooks below,
decorated with :data:`hookimpl`, and registered through the entry-point group
``mind4``::

    # pyproject.toml of your distribution
    [project.entry-points.mind4]
    my_sampler = "my_package.plugin"

    # my_package/plugin.py
    from mind4_core import hookimpl
    from mind4_core.records import SamplerRecord

    @hookimpl
    def mind4_samplers():
        return [SamplerRecord(name="min_p", factory="my_package.sampler:MinPSampler",
                              devices={"cpu"}, dtypes={"float32"},
                              features={"temperature", "probabilities"})]

Every component hook takes no arguments and returns a list of records (or one
record, or ``None``). Records are plain data with a *lazy* factory string, so
returning them must not import heavy libraries: import torch inside the
factory, never at the top of the plugin module.

Compatibility: hooks and records are versioned by :data:`PLUGIN_API_VERSION`.
New hooks and new optional record fields may be added in a minor version;
existing hooks never change signature. A plugin may declare the API version it
was written for with a module attribute ``MIND4_PLUGIN_API = 1``; the manager
refuses a plugin that asks for a newer major version than the core provides.
"""

from __future__ import annotations

import pluggy

from .records import (
    AttentionRecord,
    BackendRecord,
    CliCommandRecord,
    MoERoutingRecord,
    SamplerRecord,
    TokenizerRecord,
    WeightLoaderRecord,
)

PROJECT_NAME = "mind4"

#: Version of the hook contract. Bump on any incompatible change.
PLUGIN_API_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def mind4_tokenizers() -> list[TokenizerRecord]:
    """Return the encodings this plugin provides.

    Each :class:`~mind4_core.records.TokenizerRecord` names an encoding (for
    example ``mind4-8k`` or ``o200k_harmony``). ``factory()`` returns an object
    following :class:`mind4_core.protocols.Tokenizer`: ``encode`` (ordinary text,
    never special tokens), ``decode``, ``n_vocab`` and ``special_tokens``. The
    harmony special tokens (``<|start|>``, ``<|message|>``, ``<|end|>``,
    ``<|return|>``, ...) must exist in every encoding used for chat.
    """


@hookspec
def mind4_attention() -> list[AttentionRecord]:
    """Return attention implementations.

    ``factory(device=..., dtype=...)`` returns a callable
    ``attention(q, k, v, sinks, *, sm_scale, window, offset) -> out`` computing
    causal grouped-query attention with one learned sink logit per query head,
    an optional sliding window and a cache offset. Shapes and masking rules are
    in :class:`mind4_core.protocols.Attention`.
    """


@hookspec
def mind4_moe_routing() -> list[MoERoutingRecord]:
    """Return mixture-of-experts routing implementations.

    ``factory(device=..., dtype=...)`` returns an object with
    ``route(router_logits, k) -> (expert_indices, gate_weights)``: the top-k
    experts per token and a softmax over **those k logits only**. A record whose
    features include ``"experts"`` also computes the experts
    (``experts(x, indices, weights, mlp1_weight, mlp1_bias, mlp2_weight,
    mlp2_bias, swiglu_limit)``) so a backend can fuse them; see
    :class:`mind4_core.protocols.MoERouting`.
    """


@hookspec
def mind4_samplers() -> list[SamplerRecord]:
    """Return samplers.

    ``factory(device=..., dtype=...)`` returns a
    :class:`mind4_core.protocols.Sampler`: ``generator(seed)`` makes seeded
    random state; ``sample(logits, params, generator)`` draws one token per row
    with temperature, top-k and top-p (temperature 0 is greedy argmax); with
    the ``"probabilities"`` feature, ``probabilities(logits, params)`` returns
    the exact distribution it draws from, which the conformance specs check.
    """


@hookspec
def mind4_weight_loaders() -> list[WeightLoaderRecord]:
    """Return checkpoint formats this plugin can read.

    ``factory()`` returns a :class:`mind4_core.protocols.WeightLoader`:
    ``probe(path)`` answers ``None`` when it can read the directory or a
    sentence saying why not; ``open(path)`` returns a
    :class:`mind4_core.checkpoint.Checkpoint` whose tensors carry canonical
    gpt-oss names. The core tries loaders by priority and, when none match,
    reports every loader's reason.
    """


@hookspec
def mind4_backends() -> list[BackendRecord]:
    """Return complete model runtimes.

    ``factory(checkpoint=..., config=..., components=...)`` returns a
    :class:`mind4_core.protocols.Runtime`: it owns the weights on its device,
    allocates KV caches and runs the forward pass. The record declares its
    devices, dtypes, default component names, conformance tolerances per dtype
    and known spec failures (``xfail``), and an ``availability`` check that
    explains what is missing (no GPU, no Triton) without a traceback.
    """


@hookspec
def mind4_cli_commands() -> list[CliCommandRecord]:
    """Return extra ``mind4`` sub-commands (for example ``mind4 train``).

    The command object is imported only when a user runs it, so ``mind4 --help``
    stays fast. A name that collides with a built-in command is refused with a
    warning.
    """


#: hook name -> record type it must return (the manager validates this).
HOOK_RECORD_TYPES: dict[str, type] = {
    "mind4_tokenizers": TokenizerRecord,
    "mind4_attention": AttentionRecord,
    "mind4_moe_routing": MoERoutingRecord,
    "mind4_samplers": SamplerRecord,
    "mind4_weight_loaders": WeightLoaderRecord,
    "mind4_backends": BackendRecord,
    "mind4_cli_commands": CliCommandRecord,
}
