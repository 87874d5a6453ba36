"""Configuration: model shape, runtime choices, sampling and logging.

A ``config.json`` is one flat JSON object for the model and runtime fields plus
two nested objects, ``sampling`` and ``logging``::

    {"hidden_size": 512, ..., "backend": "torch", "dtype": "float32",
     "sampling": {"temperature": 0.7, "top_p": 0.9}, "logging": {"log_level": "INFO"}}

Precedence, highest first: CLI flags > the ``--config`` file > the checkpoint's
own ``config.json`` > the defaults below. Every class is frozen; a bad value
raises :class:`~mind4_core.errors.ConfigError` naming the field, the value and
what is allowed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from . import checks
from .errors import ConfigError, SamplingError


def _fail(cls: str, field: str, value: Any, allowed: str, exc: type = ConfigError):
    raise exc(f"invalid {cls} field {field!r}: got {value!r}; {allowed}")


def _validator(check: checks.Check):
    """An attrs validator from a :mod:`mind4_core.checks` check: a misfit is a
    :class:`ConfigError` naming the class, the field and the value."""

    def validate(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        try:
            check(value)
        except ValueError as exc:
            _fail(type(instance).__name__, attribute.name, value, str(exc))

    return validate


_positive_int = _validator(checks.positive_int)
_non_negative_int = _validator(checks.non_negative_int)
_positive_float = _validator(checks.positive_number)


def _one_of(*choices: str | None):
    return _validator(checks.one_of(*choices))


@attrs.frozen(kw_only=True)
class ModelConfig:
    """The shape of a gpt-oss-architecture model (field names as in gpt-oss)."""

    hidden_size: int = attrs.field(validator=_positive_int)
    num_hidden_layers: int = attrs.field(validator=_positive_int)
    num_attention_heads: int = attrs.field(validator=_positive_int)
    num_key_value_heads: int = attrs.field(validator=_positive_int)
    head_dim: int = attrs.field(validator=_positive_int)
    intermediate_size: int = attrs.field(validator=_positive_int)
    vocab_size: int = attrs.field(validator=_positive_int)
    num_experts: int = attrs.field(validator=_positive_int)
    experts_per_token: int = attrs.field(validator=_positive_int)
    initial_context_length: int = attrs.field(default=4096, validator=_positive_int)
    max_context_length: int = attrs.field(default=4096, validator=_positive_int)
    #: window of the sliding-window layers (even layer indices); 0 disables it
    sliding_window: int = attrs.field(default=128, validator=_non_negative_int)
    rope_theta: float = attrs.field(default=150000.0, validator=_positive_float)
    rope_scaling_factor: float = attrs.field(default=1.0, validator=_positive_float)
    rope_ntk_alpha: float = attrs.field(default=1.0, validator=_positive_float)
    rope_ntk_beta: float = attrs.field(default=32.0, validator=_positive_float)
    swiglu_limit: float = attrs.field(default=7.0, validator=_positive_float)
    rms_norm_eps: float = attrs.field(default=1e-5, validator=_positive_float)

    def __attrs_post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            _fail(
                "ModelConfig",
                "num_key_value_heads",
                self.num_key_value_heads,
                f"must divide num_attention_heads ({self.num_attention_heads})",
            )
        if self.experts_per_token > self.num_experts:
            _fail(
                "ModelConfig",
                "experts_per_token",
                self.experts_per_token,
                f"must be <= num_experts ({self.num_experts})",
            )
        if self.head_dim % 2:
            _fail("ModelConfig", "head_dim", self.head_dim, "must be even (RoPE rotates pairs)")

    def window_of_layer(self, layer: int) -> int | None:
        """Sliding window of ``layer`` (even layers), or ``None`` for full attention."""
        return self.sliding_window if (layer % 2 == 0 and self.sliding_window > 0) else None

    @property
    def qkv_dim(self) -> int:
        return self.head_dim * (self.num_attention_heads + 2 * self.num_key_value_heads)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


_device = _validator(checks.device_name)
_optional_name = _validator(checks.optional(checks.non_empty_str))


@attrs.frozen(kw_only=True)
class RuntimeConfig:
    """Which backend runs the model, where, and in which precision."""

    backend: str = attrs.field(default="torch", validator=_optional_name)
    #: ``None`` lets the backend choose (float32 on CPU, bfloat16 on CUDA)
    dtype: str | None = attrs.field(
        default=None, validator=_one_of(None, "float32", "bfloat16", "float16")
    )
    device: str = attrs.field(default="auto", validator=_device)
    #: checkpoint directory; ``None`` is the embedded default model
    checkpoint: str | None = attrs.field(default=None, validator=_optional_name)
    #: a registered encoding name or a path to an encoding directory
    tokenizer: str | None = attrs.field(default=None, validator=_optional_name)
    #: component overrides by name (``None``: the backend's default)
    attention: str | None = attrs.field(default=None, validator=_optional_name)
    moe_routing: str | None = attrs.field(default=None, validator=_optional_name)
    sampler: str | None = attrs.field(default=None, validator=_optional_name)


@attrs.frozen(kw_only=True)
class SamplingParams:
    """How to pick the next token. Invalid values raise :class:`SamplingError`."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int | None = None

    def __attrs_post_init__(self) -> None:
        t, k, p = self.temperature, self.top_k, self.top_p
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            _fail(
                "sampling",
                "temperature",
                t,
                "expected a finite number >= 0 (0 = greedy)",
                SamplingError,
            )
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            _fail("sampling", "top_k", k, "expected an integer >= 0 (0 = off)", SamplingError)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not (0 < p <= 1):
            _fail("sampling", "top_p", p, "expected a number in (0, 1] (1 = off)", SamplingError)
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            _fail("sampling", "max_new_tokens", n, "expected an integer >= 0", SamplingError)
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            _fail("sampling", "seed", self.seed, "expected an integer or null", SamplingError)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@attrs.frozen(kw_only=True)
class LoggingConfig:
    log_level: str = attrs.field(
        default="WARNING", validator=_one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    )


MODEL_FIELDS = tuple(a.name for a in attrs.fields(ModelConfig))
RUNTIME_FIELDS = tuple(a.name for a in attrs.fields(RuntimeConfig))
SAMPLING_FIELDS = tuple(a.name for a in attrs.fields(SamplingParams))
LOGGING_FIELDS = tuple(a.name for a in attrs.fields(LoggingConfig))


@attrs.frozen(kw_only=True)
class Config:
    """Everything a run needs.

    ``model`` holds model fields set by a config file or flag; they override the
    checkpoint's own ``config.json`` (see :func:`apply_model_overrides`), so it
    is a partial mapping, validated when merged with a checkpoint's config.
    """

    model: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    runtime: RuntimeConfig = attrs.field(factory=RuntimeConfig)
    sampling: SamplingParams = attrs.field(factory=SamplingParams)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)
    #: ``"section.field" -> where it was set`` (for error messages)
    origin: dict[str, str] = attrs.field(factory=dict, converter=dict, eq=False)


#: model fields a config may change without changing any tensor's shape
NON_SHAPE_FIELDS = (
    "initial_context_length",
    "max_context_length",
    "sliding_window",
    "rope_theta",
    "rope_scaling_factor",
    "rope_ntk_alpha",
    "rope_ntk_beta",
    "swiglu_limit",
    "rms_norm_eps",
)


def apply_model_overrides(
    base: ModelConfig, config: Config, where: str = "checkpoint"
) -> ModelConfig:
    """``base`` (a checkpoint's config) with ``config.model`` applied on top.

    Fields that decide tensor shapes must agree with the checkpoint."""
    for key, value in config.model.items():
        if key not in NON_SHAPE_FIELDS and getattr(base, key) != value:
            src = config.origin.get(f"model.{key}", "config")
            raise ConfigError(
                f"{src}: field {key!r} = {value!r} disagrees with the {where} ({getattr(base, key)!r}); "
                f"it decides tensor shapes and cannot be overridden. Remove it from the config, or "
                f"use a matching checkpoint. Overridable fields: {', '.join(NON_SHAPE_FIELDS)}"
            )
    try:
        return attrs.evolve(base, **config.model)
    except ConfigError as exc:
        raise ConfigError(
            f"{', '.join(sorted(set(config.origin.values()))) or 'config'}: {exc}"
        ) from None


def _check_known(where: str, data: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(map(repr, unknown))}; "
            f"allowed fields: {', '.join(allowed)}"
        )


def _build(cls: type, where: str, data: Mapping[str, Any]):
    try:
        return cls(**data)
    except ConfigError as exc:
        raise type(exc)(f"{where}: {exc}") from None
    except SamplingError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except TypeError as exc:  # a missing required field
        missing = [
            a.name for a in attrs.fields(cls) if a.default is attrs.NOTHING and a.name not in data
        ]
        raise ConfigError(
            f"{where}: missing required field(s) {', '.join(map(repr, missing))} ({exc})"
        ) from None


def split_sections(data: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Split a flat config.json object into its sections, rejecting unknown keys."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a JSON object, got {type(data).__name__}")
    sections: dict[str, dict[str, Any]] = {
        "model": {},
        "runtime": {},
        "sampling": {},
        "logging": {},
    }
    for key, value in data.items():
        if key in ("sampling", "logging"):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}: field {key!r} must be an object, got {value!r}")
            fields = SAMPLING_FIELDS if key == "sampling" else LOGGING_FIELDS
            _check_known(f"{where} [{key}]", value, fields)
            sections[key].update(value)
        elif key in MODEL_FIELDS:
            sections["model"][key] = value
        elif key in RUNTIME_FIELDS:
            sections["runtime"][key] = value
        else:
            raise ConfigError(
                f"{where}: unknown field {key!r}; allowed fields: "
                f"{', '.join(MODEL_FIELDS + RUNTIME_FIELDS)}, sampling.{{{', '.join(SAMPLING_FIELDS)}}}, "
                f"logging.{{{', '.join(LOGGING_FIELDS)}}}"
            )
    return sections


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None


def model_config_from_dict(data: Mapping[str, Any], where: str = "config") -> ModelConfig:
    """A :class:`ModelConfig` from a checkpoint's config.json (runtime keys ignored)."""
    sections = split_sections(data, where)
    return _build(ModelConfig, where, sections["model"])


def resolve_config(
    *layers: tuple[str, Mapping[str, Any] | None],
) -> Config:
    """Merge config layers, lowest precedence first, into a validated :class:`Config`.

    Each layer is ``(where, flat_dict)`` with the same shape as config.json
    (``None`` values in a layer mean "not set" and do not override).
    """
    merged: dict[str, dict[str, Any]] = {"model": {}, "runtime": {}, "sampling": {}, "logging": {}}
    origin: dict[str, str] = {}
    for where, data in layers:
        if not data:
            continue
        for section, values in split_sections(data, where).items():
            for key, value in values.items():
                if value is None and section != "runtime":
                    continue
                if value is None and key in merged[section]:
                    continue
                merged[section][key] = value
                origin[f"{section}.{key}"] = where

    def where_of(section: str) -> str:
        places = sorted({w for k, w in origin.items() if k.startswith(section + ".")})
        return ", ".join(places) or "defaults"

    if merged["model"]:
        # validate types now (a full config validates everything, a partial one field by field)
        for key, value in merged["model"].items():
            probe = attrs.fields_dict(ModelConfig)[key]
            for validator in _validators(probe):
                try:
                    validator(_PROBE_MODEL, probe, value)
                except ConfigError as exc:
                    raise ConfigError(f"{origin[f'model.{key}']}: {exc}") from None
    return Config(
        model=merged["model"],
        runtime=_build(RuntimeConfig, where_of("runtime"), merged["runtime"]),
        sampling=_build(SamplingParams, where_of("sampling"), merged["sampling"]),
        logging=_build(LoggingConfig, where_of("logging"), merged["logging"]),
        origin=origin,
    )


#: stands in for a ModelConfig instance when validating one field alone
_PROBE_MODEL = type("ModelConfig", (), {})()


def _validators(attribute: attrs.Attribute) -> list:
    v = attribute.validator
    if v is None:
        return []
    inner = getattr(v, "_validators", None)
    return list(inner) if inner else [v]
