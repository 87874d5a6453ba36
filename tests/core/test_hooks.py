"""Every hook is documented and tested: one test per hook, checked by a meta-test.

Each ``test_hook_<name>`` registers a throwaway plugin implementing that hook
and checks the core sees what it returns; ``test_every_hook_is_documented_and_tested``
fails when a hookspec lacks a docstring, a test here, or an entry in the
plugin-author documentation.
"""

import inspect
from pathlib import Path

import pytest

from mind4_core import hookimpl, hookspecs
from mind4_core.plugins import KIND_TO_HOOK, temporary_plugin
from mind4_core.records import (
    AttentionRecord,
    BackendRecord,
    CliCommandRecord,
    MoERoutingRecord,
    SamplerRecord,
    TokenizerRecord,
    WeightLoaderRecord,
)

ROOT = Path(__file__).resolve().parents[2]
HOOKS = sorted(n for n, f in vars(hookspecs).items() if n.startswith("mind4_") and callable(f))


def _roundtrip(hook_name, record):
    kind = {v: k for k, v in KIND_TO_HOOK.items()}[hook_name]
    plugin = type("P", (), {hook_name: staticmethod(hookimpl(lambda: [record]))})()
    with temporary_plugin(plugin, "hook-test") as manager:
        found = [r for r in manager.records(kind) if r.name == record.name]
    assert len(found) == 1
    assert found[0].plugin == "hook-test"
    return found[0]


def test_hook_mind4_tokenizers():
    r = _roundtrip(
        "mind4_tokenizers", TokenizerRecord(name="hook-enc", factory="mind4_tokenizer:get_encoding")
    )
    assert r.kind == "tokenizer"


def test_hook_mind4_attention():
    r = _roundtrip(
        "mind4_attention", AttentionRecord(name="hook-attn", factory="a.b:c", devices={"cuda"})
    )
    assert r.supports("cuda:1") and not r.supports("cpu")


def test_hook_mind4_moe_routing():
    r = _roundtrip(
        "mind4_moe_routing",
        MoERoutingRecord(name="hook-moe", factory="a.b:c", features={"experts"}),
    )
    assert "experts" in r.features


def test_hook_mind4_samplers():
    r = _roundtrip(
        "mind4_samplers",
        SamplerRecord(
            name="hook-s", factory="mind4_core.sampling:NumpySampler", array_type="numpy"
        ),
    )
    sampler = r.create(device="cpu", dtype="float32")
    assert hasattr(sampler, "sample") and hasattr(sampler, "generator")


def test_hook_mind4_weight_loaders():
    r = _roundtrip(
        "mind4_weight_loaders",
        WeightLoaderRecord(
            name="hook-w", factory="mind4_core.checkpoint:CanonicalLoader", priority=-1
        ),
    )
    assert (
        r.create().probe(ROOT) is not None
    )  # the repo root is no checkpoint: a reason, not a match


def test_hook_mind4_backends():
    r = _roundtrip(
        "mind4_backends",
        BackendRecord(
            name="hook-b", factory="a.b:c", tolerances={"float32": 1e-3}, xfail={"spec_x": "known"}
        ),
    )
    assert r.tolerances["float32"] == 1e-3 and r.xfail == {"spec_x": "known"}


def test_hook_mind4_cli_commands():
    import click
    from click.testing import CliRunner

    from mind4_core.cli import cli

    @click.command()
    def hello():
        """Say hello."""
        click.echo("hello from a plugin")

    record = CliCommandRecord(name="hook-hello", factory=hello, short_help="Say hello.")
    plugin = type("P", (), {"mind4_cli_commands": staticmethod(hookimpl(lambda: [record]))})()
    with temporary_plugin(plugin, "hook-test"):
        result = CliRunner().invoke(cli, ["hook-hello"])
        listing = CliRunner().invoke(cli, ["--help"])
    assert result.output.strip() == "hello from a plugin"
    assert "hook-hello" in listing.output


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_and_tested(hook):
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert len(doc) > 80, f"{hook} needs a docstring explaining what to return"
    assert f"test_hook_{hook}" in globals(), f"{hook} has no test_hook_{hook} in {__file__}"
    guide = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert f"`{hook}`" in guide, f"{hook} is missing from docs/plugins.md"
    assert hook in KIND_TO_HOOK.values()


def test_hook_records_table_is_complete():
    assert set(hookspecs.HOOK_RECORD_TYPES) == set(HOOKS)
