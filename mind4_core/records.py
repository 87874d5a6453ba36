"""Typed records that plugins return from their hooks.

A record *describes* a component (its name, where it runs, what it can do, how
much to prefer it) and holds a **lazy** factory: a ``"package.module:attribute"``
string resolved only when the component is actually used. Discovery therefore
never imports torch, triton or a compiled extension.

What each factory must return is specified in :mod:`mind4_core.protocols`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from .errors import PluginError

KNOWN_DEVICES = frozenset({"cpu", "cuda", "mps"})
KNOWN_DTYPES = frozenset({"float32", "bfloat16", "float16"})


def _frozen_set(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset({value})
    return frozenset(value)


def _check_ref(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if callable(value):
        return
    if not isinstance(value, str) or value.count(":") != 1 or not all(value.split(":")):
        raise PluginError(
            f"{type(instance).__name__}.{attribute.name} must be a callable or a "
            f"'package.module:attribute' string, got {value!r}"
        )


def resolve(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """Import and return the object a ``"module:attr"`` reference names."""
    if callable(ref):
        return ref
    module_name, _, attr_path = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's
        raise PluginError(
            f"cannot load {ref!r}: {type(exc).__name__}: {exc}. "
            "Is the plugin that provides it installed with all its dependencies?"
        ) from exc
    return obj


@attrs.frozen(kw_only=True)
class ComponentRecord:
    """Common fields of every component record.

    ``factory`` is called with keyword arguments ``device`` and ``dtype`` (plus
    kind-specific ones documented on each hook) and returns the component.
    """

    kind: ClassVar[str] = "component"

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    factory: str | Callable[..., Any] = attrs.field(validator=_check_ref)
    priority: int = 0
    devices: frozenset[str] = attrs.field(default=frozenset({"cpu"}), converter=_frozen_set)
    dtypes: frozenset[str] = attrs.field(default=frozenset({"float32"}), converter=_frozen_set)
    features: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen_set)
    description: str = ""
    #: the distribution that registered the record; set by the plugin manager
    plugin: str | None = None

    def load(self) -> Callable[..., Any]:
        """Import the factory (this is where heavy imports happen)."""
        return resolve(self.factory)

    def create(self, **kwargs: Any) -> Any:
        """Load the factory and call it."""
        return self.load()(**kwargs)

    def supports(self, device: str | None = None, dtype: str | None = None) -> bool:
        device_kind = None if device is None else device.split(":")[0]
        return (device_kind is None or device_kind in self.devices) and (
            dtype is None or dtype in self.dtypes
        )


@attrs.frozen(kw_only=True)
class TokenizerRecord(ComponentRecord):
    """A named encoding. ``factory()`` takes no arguments and returns a
    :class:`mind4_core.protocols.Tokenizer`."""

    kind: ClassVar[str] = "tokenizer"
    devices: frozenset[str] = attrs.field(default=KNOWN_DEVICES, converter=_frozen_set)
    dtypes: frozenset[str] = attrs.field(default=KNOWN_DTYPES, converter=_frozen_set)


@attrs.frozen(kw_only=True)
class AttentionRecord(ComponentRecord):
    """Causal GQA attention with sinks, sliding window and cache offset.
    ``factory(device=, dtype=)`` returns a :class:`mind4_core.protocols.Attention`."""

    kind: ClassVar[str] = "attention"
    #: array library the component consumes, e.g. ``"torch"``; the core only
    #: combines a component with a backend whose ``array_type`` matches.
    array_type: str = "torch"


@attrs.frozen(kw_only=True)
class MoERoutingRecord(ComponentRecord):
    """Top-k expert routing (+ expert compute when ``"experts"`` is in features).
    ``factory(device=, dtype=)`` returns a :class:`mind4_core.protocols.MoERouting`."""

    kind: ClassVar[str] = "moe_routing"
    array_type: str = "torch"


@attrs.frozen(kw_only=True)
class SamplerRecord(ComponentRecord):
    """Token sampling over logits. ``factory(device=, dtype=)`` returns a
    :class:`mind4_core.protocols.Sampler`. Features name what it honours:
    ``temperature``, ``top_k``, ``top_p``, ``probabilities``."""

    kind: ClassVar[str] = "sampler"
    array_type: str = "torch"


@attrs.frozen(kw_only=True)
class WeightLoaderRecord(ComponentRecord):
    """A checkpoint format. ``factory()`` returns a
    :class:`mind4_core.protocols.WeightLoader`; loaders produce host arrays
    (NumPy, memory-mapped where possible) so any backend can use them."""

    kind: ClassVar[str] = "weight_loader"
    devices: frozenset[str] = attrs.field(default=KNOWN_DEVICES, converter=_frozen_set)
    dtypes: frozenset[str] = attrs.field(default=KNOWN_DTYPES, converter=_frozen_set)


@attrs.frozen(kw_only=True)
class BackendRecord(ComponentRecord):
    """A complete model runtime.

    ``factory(checkpoint=, config=, components=)`` returns a
    :class:`mind4_core.protocols.Runtime`. ``components`` maps a component kind
    (``attention``, ``moe_routing``, ``sampler``) to the component name the
    backend uses by default; the user may override one where ``array_type``
    matches. ``tolerances`` maps a dtype to the relative error
    (‖out−ref‖/‖ref‖) the conformance specs allow; ``xfail`` maps a spec id to
    the reason it is a known failure of this backend.
    """

    kind: ClassVar[str] = "backend"
    array_type: str = "torch"
    components: Mapping[str, str] = attrs.field(factory=dict, converter=dict)
    default_dtype: Mapping[str, str] = attrs.field(
        factory=lambda: {"cpu": "float32", "cuda": "bfloat16", "mps": "float16"}, converter=dict
    )
    tolerances: Mapping[str, float] = attrs.field(
        factory=lambda: {"float32": 1e-4, "bfloat16": 3e-2, "float16": 1e-2}, converter=dict
    )
    xfail: Mapping[str, str] = attrs.field(factory=dict, converter=dict)
    #: ``"module:function"`` returning ``None`` when the backend can run here,
    #: else a sentence saying what is missing (checked before the factory runs).
    availability: str | Callable[..., Any] | None = None

    def unavailable_reason(self) -> str | None:
        if self.availability is None:
            return None
        return resolve(self.availability)()


@attrs.frozen(kw_only=True)
class CliCommandRecord:
    """A ``mind4`` sub-command contributed by a plugin.

    ``factory`` resolves to a :class:`click.Command`; it is imported only when the
    command runs, so ``mind4 --help`` shows ``short_help`` without importing it.
    """

    kind: ClassVar[str] = "cli_command"

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    factory: str | Callable[..., Any] = attrs.field(validator=_check_ref)
    short_help: str = ""
    plugin: str | None = None

    def load(self) -> Any:
        return resolve(self.factory)


RECORD_TYPES: dict[str, type] = {
    cls.kind: cls
    for cls in (
        TokenizerRecord,
        AttentionRecord,
        MoERoutingRecord,
        SamplerRecord,
        WeightLoaderRecord,
        BackendRecord,
        CliCommandRecord,
    )
}
