"""The plugin manager: discovery, isolation of broken plugins, environment switches."""

import sys
import types
import warnings
from importlib import metadata

import pytest

from mind4_core import hookimpl
from mind4_core.errors import PluginError
from mind4_core.plugins import Manager, PluginWarning, get_manager, temporary_plugin
from mind4_core.records import BackendRecord, SamplerRecord


class FakeEntryPoint:
    """An installed plugin whose module source runs only when loaded (like an import)."""

    def __init__(self, name, source):
        self.name, self.value, self.dist, self.source = name, f"fake_plugin_{name}", None, source

    def load(self):
        module = types.ModuleType(self.value)
        exec(self.source, module.__dict__)
        sys.modules[self.value] = module
        return module


@pytest.fixture
def entry_points(monkeypatch):
    """Pretend these modules are installed plugins (name -> module source)."""
    installed = []

    def install(name, source):
        installed.append(FakeEntryPoint(name, source))

    def fake_entry_points(group):
        assert group == "mind4"
        return list(installed)

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    yield install
    for ep in installed:
        sys.modules.pop(ep.value, None)


GOOD = """
from mind4_core import hookimpl
from mind4_core.records import SamplerRecord
@hookimpl
def mind4_samplers():
    return [SamplerRecord(name="good", factory="mind4_core.sampling:NumpySampler", array_type="numpy")]
"""


def test_broken_plugin_becomes_a_warning_and_a_failed_row(entry_points):
    entry_points("good", GOOD)
    entry_points("broken", "raise RuntimeError('boom at import')")
    with pytest.warns(PluginWarning, match="'broken'.*boom at import"):
        manager = Manager()
    assert manager.infos["broken"].status == "failed"
    assert "boom at import" in manager.infos["broken"].error
    assert [r.name for r in manager.records("sampler") if r.name == "good"] == ["good"]


def test_hook_that_raises_or_returns_garbage_is_isolated(entry_points):
    entry_points("good", GOOD)
    entry_points(
        "raiser",
        "from mind4_core import hookimpl\n@hookimpl\ndef mind4_samplers():\n    raise ValueError('nope')",
    )
    entry_points(
        "garbage",
        "from mind4_core import hookimpl\n@hookimpl\ndef mind4_samplers():\n    return ['not a record']",
    )
    manager = Manager()
    with pytest.warns(PluginWarning):
        names = manager.names("sampler")
    assert "good" in names
    assert manager.infos["raiser"].status == "failed" and "nope" in manager.infos["raiser"].error
    assert "expected SamplerRecord" in manager.infos["garbage"].error


def test_strict_mode_raises(entry_points, monkeypatch):
    entry_points("broken", "raise ImportError('missing dependency xyz')")
    monkeypatch.setenv("MIND4_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="missing dependency xyz"):
        Manager()


def test_strict_mode_checks_pending_hooks(entry_points, monkeypatch):
    entry_points(
        "typo", "from mind4_core import hookimpl\n@hookimpl\ndef mind4_sampler():\n    return []"
    )
    monkeypatch.setenv("MIND4_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="unknown hook"):
        Manager()


def test_allow_and_deny_lists(entry_points, monkeypatch):
    entry_points("good", GOOD)
    entry_points("other", GOOD.replace('"good"', '"other"'))
    monkeypatch.setenv("MIND4_DISABLE_PLUGINS", "other")
    manager = Manager()
    assert manager.infos["other"].status == "disabled"
    assert "other" not in manager.names("sampler")
    monkeypatch.delenv("MIND4_DISABLE_PLUGINS")
    monkeypatch.setenv("MIND4_LOAD_PLUGINS", "other")
    manager = Manager()
    assert manager.infos["good"].status == "disabled"
    assert "other" in manager.names("sampler") and "numpy" in manager.names(
        "sampler"
    )  # core always loads


def test_newer_plugin_api_is_refused(entry_points):
    entry_points("future", "MIND4_PLUGIN_API = 99\n" + GOOD)
    with pytest.warns(PluginWarning, match="needs plugin API 99"):
        manager = Manager()
    assert manager.infos["future"].status == "failed"


def test_discovery_imports_no_heavy_library():
    import subprocess

    code = (
        "import sys, mind4_core.plugins as p\n"
        "m = p.get_manager()\n"
        "[m.records(k) for k in p.KIND_TO_HOOK]\n"
        "print(sorted(x for x in ('torch', 'triton', '_cffi_backend') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_priority_orders_records_and_unknown_names_list_installed():
    class Low:
        @hookimpl
        def mind4_backends(self):
            return [
                BackendRecord(name="zz", factory="x.y:z", priority=-5),
                BackendRecord(name="aa", factory="x.y:z", priority=5),
            ]

    with temporary_plugin(Low(), "low") as manager:
        names = [r.name for r in manager.records("backend")]
        assert names.index("aa") < names.index("zz")
        with pytest.raises(PluginError, match="unknown backend 'nope'; installed: .*aa"):
            manager.backend("nope")
    assert "aa" not in get_manager().names("backend")


def test_records_validate_their_factory_reference():
    with pytest.raises(PluginError, match="module:attribute"):
        SamplerRecord(name="x", factory="no_colon_here")
    record = SamplerRecord(name="x", factory="mind4_core.nonexistent:Thing")
    with pytest.raises(PluginError, match="cannot load 'mind4_core.nonexistent:Thing'"):
        record.load()


def test_component_capability_filter():
    manager = get_manager()
    with pytest.raises(PluginError, match="does not support device='cuda'"):
        manager.component("sampler", "numpy", device="cuda")
    assert manager.component("sampler", "numpy", device="cpu").name == "numpy"


def test_warnings_do_not_escape_as_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        get_manager().records("weight_loader")
