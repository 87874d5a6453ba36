"""The training configuration: ``config/train.yaml``, validated strictly.

A training config is a YAML mapping of sections::

    encoding: mind4-8k
    model:      {preset: null, hidden_size: 160, ...}     # a preset and/or ModelConfig fields
    data:       {sources: [], validation_fraction: 0.05, ...}
    training:   {context_length: 256, batch_size: 16, grad_accumulation: 1, max_steps: ..., seed: 0}
    optimizer:  {lr: 3.0e-3, min_lr: ..., warmup_steps: ..., weight_decay: 0.1, ...}
    moe:        {aux_loss_coef: 0.01}
    eval:       {interval: 100, max_tokens: null, batch_size: 16}
    checkpoint: {out_dir: runs/default, interval: 100, export_experts: mxfp4, ...}
    log:        {progress: true, print_interval: 25}

Every field of every section is documented in ``config/train.yaml`` itself; a
missing field takes the default below, so :func:`default_config` and that file
agree (a test pins it). Unknown keys and wrong types raise
:class:`~mind4_core.errors.ConfigError` naming the key (``optimizer.lr``) and
the line of the file. No torch here: the CLI validates a config before it
imports anything heavy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from mind4_core import checks
from mind4_core.checks import (
    boolean,
    device_name,
    is_number,
    non_empty_str,
    non_negative_int,
    non_negative_number,
    number_in,
    one_of,
    optional,
    positive_int,
    positive_number,
    str_list,
)
from mind4_core.config import MODEL_FIELDS, ModelConfig
from mind4_core.errors import ConfigError

# ----------------------------------------------------------------------------- checks
# The checks are the core's (mind4_core.checks); a check takes a value and raises
# ValueError("expected ...") when it does not fit. The training-only one is below.

Check = checks.Check


def betas(value: Any) -> None:
    if not (isinstance(value, list) and len(value) == 2 and all(is_number(b) for b in value)):
        raise ValueError("expected a list of two numbers, e.g. [0.9, 0.95]")
    if not all(0 <= b < 1 for b in value):
        raise ValueError("expected both betas in [0, 1)")


def _field(default: Any, check: Check, **kwargs: Any) -> Any:
    def validator(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        try:
            check(value)
        except ValueError as exc:
            raise ConfigError(
                f"{instance.SECTION}.{attribute.name}: {exc}, got {value!r}"
                f"{'' if value is None else f' ({type(value).__name__})'}"
            ) from None

    if isinstance(default, list):
        return attrs.field(factory=lambda: list(default), validator=validator, **kwargs)
    return attrs.field(default=default, validator=validator, **kwargs)


# ----------------------------------------------------------------------------- sections


@attrs.frozen(kw_only=True)
class DataConfig:
    SECTION = "data"

    #: text files or folders; empty = the default corpus (Python's own documentation)
    sources: list[str] = _field([], str_list)
    #: file name endings read inside folders given in ``sources``
    extensions: list[str] = _field([".txt", ".md", ".rst"], str_list)
    #: share of the token stream (its tail) held out for validation
    validation_fraction: float = _field(0.05, number_in(0, 0.5, lo_open=True))
    #: where the memory-mapped token file is kept; null = ``<out_dir>/data``
    cache_dir: str | None = _field(None, optional(non_empty_str))


@attrs.frozen(kw_only=True)
class TrainingConfig:
    SECTION = "training"

    #: tokens per training sequence (the model predicts each from the ones before it)
    context_length: int = _field(256, positive_int)
    #: sequences per micro-batch, per process
    batch_size: int = _field(8, positive_int)
    #: micro-batches whose gradients are summed before one optimiser step
    grad_accumulation: int = _field(1, positive_int)
    #: optimiser steps in the whole run
    max_steps: int = _field(800, positive_int)
    #: seeds the initial weights and the order of training batches
    seed: int = _field(0, non_negative_int)
    #: auto = cuda if present (one GPU per process under torchrun), else cpu
    device: str = _field("auto", device_name)
    #: mixed precision: auto = bf16 autocast on CUDA, off elsewhere
    autocast: str = _field("auto", one_of("auto", "bfloat16", "float16", "off"))
    #: CPU threads for torch; null = torch's default (all cores)
    threads: int | None = _field(None, optional(positive_int))


@attrs.frozen(kw_only=True)
class OptimizerConfig:
    SECTION = "optimizer"

    #: peak learning rate (reached at the end of warm-up)
    lr: float = _field(3.0e-3, positive_number)
    #: learning rate at the end of the cosine decay
    min_lr: float = _field(3.0e-4, non_negative_number)
    #: steps of linear warm-up from 0 to ``lr``
    warmup_steps: int = _field(50, non_negative_int)
    #: AdamW decoupled weight decay, applied to matrices (not biases, norms, sinks)
    weight_decay: float = _field(0.1, non_negative_number)
    #: AdamW (beta1, beta2)
    betas: list[float] = _field([0.9, 0.95], betas)
    #: AdamW epsilon
    eps: float = _field(1.0e-8, positive_number)
    #: clip the global gradient norm to this (0 = no clipping)
    grad_clip: float = _field(1.0, non_negative_number)

    def __attrs_post_init__(self) -> None:
        if self.min_lr > self.lr:
            raise ConfigError(
                f"optimizer.min_lr: {self.min_lr} is larger than optimizer.lr ({self.lr}); "
                "the cosine schedule decays from lr down to min_lr"
            )


@attrs.frozen(kw_only=True)
class MoEConfig:
    SECTION = "moe"

    #: weight of the load-balancing loss E·Σ f_e·P_e (mean over layers); 0 = off
    aux_loss_coef: float = _field(0.01, non_negative_number)


@attrs.frozen(kw_only=True)
class EvalConfig:
    SECTION = "eval"

    #: steps between validation passes (also run at the end); 0 = only at the end
    interval: int = _field(100, non_negative_int)
    #: validation tokens scored per pass; null = the whole validation split
    max_tokens: int | None = _field(None, optional(positive_int))
    #: sequences per validation forward pass
    batch_size: int = _field(16, positive_int)


@attrs.frozen(kw_only=True)
class CheckpointConfig:
    SECTION = "checkpoint"

    #: run directory: checkpoint/, model/, log.csv, log.jsonl, loss.png
    out_dir: str = _field("runs/default", non_empty_str)
    #: steps between checkpoints (also written at the end and on Ctrl-C); 0 = only then
    interval: int = _field(100, non_negative_int)
    #: storage of the expert matrices in the exported model/ (checkpoint/ is float32)
    export_experts: str = _field("mxfp4", one_of("mxfp4", "bf16", "float32"))
    #: storage of the other matrices in model/ (norm scales stay float32)
    export_dtype: str = _field("bfloat16", one_of("bfloat16", "float32"))


@attrs.frozen(kw_only=True)
class LogConfig:
    SECTION = "log"

    #: show a rich progress bar (a plain line per ``print_interval`` when not a terminal)
    progress: bool = _field(True, boolean)
    #: steps between plain progress lines when output is not a terminal
    print_interval: int = _field(25, positive_int)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "training": TrainingConfig,
    "optimizer": OptimizerConfig,
    "moe": MoEConfig,
    "eval": EvalConfig,
    "checkpoint": CheckpointConfig,
    "log": LogConfig,
}

#: model settings that are not ModelConfig fields
MODEL_EXTRA = ("preset",)

#: keys a ``--resume`` may change: they do not alter the computation
RESUMABLE_CHANGES = (
    "training.max_steps",
    "training.device",
    "training.threads",
    "eval.interval",
    "eval.max_tokens",
    "eval.batch_size",
    "checkpoint.interval",
    "checkpoint.out_dir",
    "checkpoint.export_experts",
    "checkpoint.export_dtype",
    "data.cache_dir",
    "log.progress",
    "log.print_interval",
)


@attrs.frozen(kw_only=True)
class TrainConfig:
    """A whole training run. ``model`` holds ``preset`` and/or ModelConfig fields."""

    encoding: str = "mind4-8k"
    model: dict[str, Any] = attrs.field(factory=dict, converter=dict)
    data: DataConfig = attrs.field(factory=DataConfig)
    training: TrainingConfig = attrs.field(factory=TrainingConfig)
    optimizer: OptimizerConfig = attrs.field(factory=OptimizerConfig)
    moe: MoEConfig = attrs.field(factory=MoEConfig)
    eval: EvalConfig = attrs.field(factory=EvalConfig)
    checkpoint: CheckpointConfig = attrs.field(factory=CheckpointConfig)
    log: LogConfig = attrs.field(factory=LogConfig)
    #: where the config came from (a file path or "defaults"), for messages
    source: str = attrs.field(default="defaults", eq=False)
    #: the YAML file it was read from (None: the defaults) and the --set overrides
    path: str | None = attrs.field(default=None, eq=False)
    overrides: tuple[str, ...] = attrs.field(default=(), eq=False, converter=tuple)

    @property
    def out_dir(self) -> Path:
        return Path(self.checkpoint.out_dir)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"encoding": self.encoding, "model": dict(self.model)}
        for name in SECTIONS:
            out[name] = attrs.asdict(getattr(self, name))
        return out

    def flat(self) -> dict[str, Any]:
        """``"section.key" -> value`` for every setting (model fields as ``model.x``)."""
        out = {"encoding": self.encoding}
        for section, values in self.to_dict().items():
            if isinstance(values, dict):
                out.update({f"{section}.{k}": v for k, v in values.items()})
        return out

    def model_config(self, n_vocab: int | None = None) -> ModelConfig:
        """The ModelConfig: ``model.preset`` (if any) with the other model fields on top;
        ``vocab_size`` defaults to the encoding's ``n_vocab``."""
        from mind4_core.presets import get_preset

        fields = {k: v for k, v in self.model.items() if k not in MODEL_EXTRA}
        preset = self.model.get("preset")
        base = get_preset(preset).to_dict() if preset else {}
        base.update(fields)
        if "vocab_size" not in base and n_vocab is not None:
            base["vocab_size"] = n_vocab
        missing = [
            a.name
            for a in attrs.fields(ModelConfig)
            if a.default is attrs.NOTHING and a.name not in base
        ]
        if missing:
            raise ConfigError(
                f"{self.source}: model: missing field(s) {', '.join(missing)}; give them, or "
                "start from a preset (model.preset: tiny | small | ...)"
            )
        try:
            return ModelConfig(**base)
        except ConfigError as exc:
            raise ConfigError(f"{self.source}: model: {exc}") from None


def default_config() -> TrainConfig:
    """The defaults: the configuration that trains the embedded default model
    (``config/train.yaml`` spells out the same values)."""
    return TrainConfig(model=dict(DEFAULT_MODEL))


#: the embedded default model's shape (gpt-oss architecture at laptop scale)
DEFAULT_MODEL: dict[str, Any] = {
    "preset": None,
    "hidden_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "intermediate_size": 128,
    "num_experts": 4,
    "experts_per_token": 2,
    "initial_context_length": 1024,
    "max_context_length": 1024,
    "sliding_window": 64,
    "rope_theta": 10000.0,
}


# ----------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``3e-4`` as a float (YAML 1.2), not as a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _key_lines(text: str) -> dict[str, int]:
    """``"section.key" -> line number`` (1-based) of every key in the YAML text."""
    lines: dict[str, int] = {}
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    path = f"{prefix}{key.value}"
                    lines[path] = key.start_mark.line + 1
                    walk(value, path + ".")

    if root is not None:
        walk(root, "")
    return lines


def parse_config(
    data: Any, source: str = "config", lines: Mapping[str, int] | None = None
) -> TrainConfig:
    """Validate a parsed YAML mapping into a :class:`TrainConfig`."""
    lines = lines or {}

    def where(path: str) -> str:
        line = lines.get(path)
        return f"{source}, line {line}" if line else source

    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a mapping of sections, got {type(data).__name__}")
    allowed_top = ("encoding", "model", *SECTIONS)
    for key in data:
        if key not in allowed_top:
            raise ConfigError(
                f"{where(str(key))}: unknown key {key!r}; allowed top-level keys: "
                f"{', '.join(allowed_top)}"
            )
    encoding = data.get("encoding", "mind4-8k")
    try:
        non_empty_str(encoding)
    except ValueError as exc:
        raise ConfigError(f"{where('encoding')}: encoding: {exc}, got {encoding!r}") from None

    model = data.get("model", DEFAULT_MODEL if "model" not in data else None)
    if not isinstance(model, Mapping):
        raise ConfigError(f"{where('model')}: model: expected a mapping, got {model!r}")
    model = dict(model)
    allowed_model = MODEL_EXTRA + MODEL_FIELDS
    for key, value in model.items():
        if key not in allowed_model:
            raise ConfigError(
                f"{where(f'model.{key}')}: unknown key 'model.{key}'; allowed: "
                f"{', '.join(allowed_model)}"
            )
        if key == "preset":
            try:
                optional(non_empty_str)(value)
            except ValueError as exc:
                raise ConfigError(f"{where('model.preset')}: model.preset: {exc}") from None
            continue
        _check_model_field(key, value, where(f"model.{key}"))

    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        values = data.get(name) or {}
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where(name)}: {name}: expected a mapping, got {values!r}")
        known = [a.name for a in attrs.fields(cls)]
        for key in values:
            if key not in known:
                raise ConfigError(
                    f"{where(f'{name}.{key}')}: unknown key '{name}.{key}'; allowed in "
                    f"{name}: {', '.join(known)}"
                )
        for key, value in values.items():  # validate one at a time: the error names the line
            try:
                cls(**{key: value})
            except ConfigError as exc:
                raise ConfigError(f"{where(f'{name}.{key}')}: {exc}") from None
        try:
            sections[name] = cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{where(name)}: {exc}") from None
    config = TrainConfig(encoding=encoding, model=model, source=source, **sections)
    config.model_config(n_vocab=1)  # shape errors now, not after tokenising
    return config


def _check_model_field(key: str, value: Any, where: str) -> None:
    attribute = attrs.fields_dict(ModelConfig)[key]
    validator = attribute.validator
    probe = type("ModelConfig", (), {})()
    validators = getattr(validator, "_validators", None) or ([validator] if validator else [])
    for v in validators:
        try:
            v(probe, attribute, value)
        except ConfigError as exc:
            raise ConfigError(f"{where}: model.{key}: {exc}") from None


def load_config(path: str | Path | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Read and validate a training YAML (``None``: the defaults); ``overrides`` are
    ``section.key=value`` strings applied on top (values parsed as YAML)."""
    if path is None:
        data: Any = {}
        lines: dict[str, int] = {}
        source = "defaults"
    else:
        path = Path(path)
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"training config not found: {path}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read training config {path}: {exc}") from None
        try:
            data = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise ConfigError(
                f"{path}{at}: not valid YAML: {getattr(exc, 'problem', exc)}"
            ) from None
        lines = _key_lines(text)
    if data is None:
        data = {}
    if overrides:
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a mapping of sections")
        data = apply_overrides(data, overrides)
        source = f"{source} (with --set)"
    config = parse_config(data, source, lines)
    return attrs.evolve(config, path=None if path is None else str(path), overrides=overrides)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``["training.max_steps=10", "model.preset=tiny"]`` applied to a YAML mapping.

    ``model.preset=NAME`` replaces the whole model section by that preset (the
    file's model fields would otherwise override the preset's); ``model.x=...``
    given after it adjusts the preset."""
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        try:
            value = yaml.load(raw, Loader=_Loader)  # noqa: S506
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        if len(parts) == 1:
            data[parts[0]] = value
        elif parts[:2] == ["model", "preset"] and len(parts) == 2:
            # a preset replaces the model section; later --set model.x refine it
            data["model"] = {"preset": value}
        elif len(parts) == 2:
            section = data.get(parts[0])
            if section is None:
                section = dict(DEFAULT_MODEL) if parts[0] == "model" and "model" not in data else {}
            if not isinstance(section, dict):
                raise ConfigError(f"--set {item!r}: {parts[0]} is not a section")
            section = dict(section)
            section[parts[1]] = value
            data[parts[0]] = section
        else:
            raise ConfigError(f"--set {item!r}: expected section.key=value (one dot)")
    return data


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Flat keys whose values differ and that a resume may not change."""
    keys = sorted(set(old) | set(new))
    return [
        k for k in keys if k not in RESUMABLE_CHANGES and _normal(old.get(k)) != _normal(new.get(k))
    ]


def _normal(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value
