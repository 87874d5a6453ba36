"""Plugin discovery and component selection.

Plugins are found through the entry-point group ``mind4``. Each entry point
loads on its own: one that raises on import, asks for a newer plugin API, or
returns malformed records becomes a warning and a failed row in
``mind4 plugins``; everything else keeps working.

Environment:

- ``MIND4_LOAD_PLUGINS=a,b`` loads only these entry points (the core's own always loads);
- ``MIND4_DISABLE_PLUGINS=a,b`` skips these;
- ``MIND4_STRICT_PLUGINS=1`` turns every plugin failure into a :class:`PluginError`
  and checks that every hook implementation matches a hookspec.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import PluginError
from .records import RECORD_TYPES

ENTRY_POINT_GROUP = "mind4"
BUILTIN = "mind4_core.builtin"
KIND_TO_HOOK = {
    "tokenizer": "mind4_tokenizers",
    "attention": "mind4_attention",
    "moe_routing": "mind4_moe_routing",
    "sampler": "mind4_samplers",
    "weight_loader": "mind4_weight_loaders",
    "backend": "mind4_backends",
    "cli_command": "mind4_cli_commands",
}


class PluginWarning(UserWarning):
    """A plugin failed; the rest of Mind 4 goes on without it."""


@attrs.frozen
class PluginInfo:
    """One row of ``mind4 plugins``."""

    name: str
    distribution: str | None
    version: str | None
    module: str
    status: str  # "ok" | "failed" | "disabled"
    error: str | None = None
    hooks: tuple[str, ...] = ()


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


def strict_mode() -> bool:
    return os.environ.get("MIND4_STRICT_PLUGINS", "") not in ("", "0", "false", "no")


class Manager:
    """The plugin manager: loads plugins once and answers "which records exist"."""

    def __init__(self, *, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._dist_of: dict[str, tuple[str | None, str | None]] = {}
        self._cache: dict[str, list[Any]] = {}
        self._register_module(
            importlib.import_module(BUILTIN), "core", ("mind4", _version("mind4"))
        )
        if load_entry_points:
            self._load_entry_points()
        if strict_mode():
            self.check_pending()

    # -- loading ---------------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        allow = _env_list("MIND4_LOAD_PLUGINS")
        deny = _env_list("MIND4_DISABLE_PLUGINS") or set()
        seen: set[str] = set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in seen or ep.value == BUILTIN:
                continue
            seen.add(ep.name)
            dist = (ep.dist.name, ep.dist.version) if ep.dist is not None else (None, None)
            if ep.name in deny or (allow is not None and ep.name not in allow):
                self.infos[ep.name] = PluginInfo(ep.name, dist[0], dist[1], ep.value, "disabled")
                continue
            try:
                module = ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break Mind 4
                self._fail(ep.name, dist, ep.value, f"import failed: {type(exc).__name__}: {exc}")
                continue
            self._register_module(module, ep.name, dist)

    def _register_module(self, module: Any, name: str, dist: tuple[str | None, str | None]) -> None:
        module_name = getattr(module, "__name__", repr(module))
        wanted = getattr(module, "MIND4_PLUGIN_API", hookspecs.PLUGIN_API_VERSION)
        if not isinstance(wanted, int) or wanted > hookspecs.PLUGIN_API_VERSION:
            self._fail(
                name,
                dist,
                module_name,
                f"needs plugin API {wanted!r}, this Mind 4 provides {hookspecs.PLUGIN_API_VERSION}; "
                "upgrade mind4",
            )
            return
        try:
            self.pm.register(module, name=name)
        except Exception as exc:  # noqa: BLE001 - pluggy validates hook signatures here
            self._fail(name, dist, module_name, f"registration failed: {exc}")
            return
        self._dist_of[name] = dist
        hooks = tuple(sorted(h.name for h in self.pm.get_hookcallers(module) or []))
        self.infos[name] = PluginInfo(name, dist[0], dist[1], module_name, "ok", hooks=hooks)
        self._cache.clear()

    def _fail(
        self, name: str, dist: tuple[str | None, str | None], module: str, error: str
    ) -> None:
        self.infos[name] = PluginInfo(name, dist[0], dist[1], module, "failed", error)
        message = f"mind4 plugin {name!r} ({module}) disabled: {error}"
        if strict_mode():
            raise PluginError(message)
        warnings.warn(message, PluginWarning, stacklevel=3)

    def register(self, obj: Any, name: str, distribution: str | None = None) -> None:
        """Register a plugin object by hand (tests, notebooks)."""
        self._register_module(obj, name, (distribution, None))

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.infos.pop(name, None)
        self._dist_of.pop(name, None)
        self._cache.clear()

    def check_pending(self) -> None:
        """Raise if a plugin implements a hook that no hookspec defines."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin implements an unknown hook: {exc}") from None

    @property
    def failures(self) -> list[PluginInfo]:
        return [i for i in self.infos.values() if i.status == "failed"]

    # -- records ---------------------------------------------------------------------------

    def records(self, kind: str) -> list[Any]:
        """Every record of ``kind``, best first (priority, then name)."""
        if kind not in KIND_TO_HOOK:
            raise PluginError(f"unknown component kind {kind!r}; kinds: {', '.join(KIND_TO_HOOK)}")
        if kind not in self._cache:
            self._cache[kind] = self._collect(kind)
        return list(self._cache[kind])

    def _collect(self, kind: str) -> list[Any]:
        hook_name = KIND_TO_HOOK[kind]
        record_type = RECORD_TYPES[kind]
        out: list[Any] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            plugin = impl.plugin_name
            try:
                result = impl.function()
            except Exception as exc:  # noqa: BLE001
                self._record_error(plugin, f"{hook_name}() raised {type(exc).__name__}: {exc}")
                continue
            items = (
                []
                if result is None
                else [result]
                if not isinstance(result, (list, tuple))
                else result
            )
            for item in items:
                if not isinstance(item, record_type):
                    self._record_error(
                        plugin,
                        f"{hook_name}() returned {type(item).__name__}, expected {record_type.__name__}",
                    )
                    continue
                dist = self._dist_of.get(plugin, (None, None))[0]
                out.append(attrs.evolve(item, plugin=dist or plugin))
        priority = (lambda r: 0) if kind == "cli_command" else (lambda r: -r.priority)
        return sorted(out, key=lambda r: (priority(r), r.name))

    def _record_error(self, plugin: str, error: str) -> None:
        info = self.infos.get(plugin)
        if info is not None:
            self.infos[plugin] = attrs.evolve(info, status="failed", error=error)
        message = f"mind4 plugin {plugin!r}: {error}"
        if strict_mode():
            raise PluginError(message)
        warnings.warn(message, PluginWarning, stacklevel=4)

    def names(self, kind: str) -> list[str]:
        return sorted({r.name for r in self.records(kind)})

    def component(
        self, kind: str, name: str, *, device: str | None = None, dtype: str | None = None
    ):
        """The best record of ``kind`` called ``name`` that supports ``device``/``dtype``."""
        candidates = [r for r in self.records(kind) if r.name == name]
        if not candidates:
            installed = ", ".join(self.names(kind)) or "none"
            raise PluginError(
                f"unknown {kind.replace('_', ' ')} {name!r}; installed: {installed}. "
                "Install the plugin that provides it (see `mind4 plugins`)."
            )
        for record in candidates:
            if kind == "cli_command" or record.supports(device, dtype):
                return record
        supported = "; ".join(
            f"devices {sorted(r.devices)}, dtypes {sorted(r.dtypes)}" for r in candidates
        )
        raise PluginError(
            f"{kind.replace('_', ' ')} {name!r} does not support device={device!r} dtype={dtype!r} "
            f"({supported})"
        )

    def backend(self, name: str):
        return self.component("backend", name)


_manager: Manager | None = None


def get_manager() -> Manager:
    """The process-wide manager (created on first use)."""
    global _manager
    if _manager is None:
        _manager = Manager()
    return _manager


def reset_manager() -> None:
    """Forget the process-wide manager (the next call rediscovers plugins)."""
    global _manager
    _manager = None


@contextlib.contextmanager
def temporary_plugin(obj: Any, name: str = "temporary") -> Iterator[Manager]:
    """Register ``obj`` as a plugin for the duration of a ``with`` block."""
    manager = get_manager()
    manager.register(obj, name)
    try:
        yield manager
    finally:
        manager.unregister(name)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
