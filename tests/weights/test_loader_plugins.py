"""Third-party checkpoint formats plug in through ``mind4_weight_loaders``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mind4_core import hookimpl
from mind4_core.checkpoint import (
    Checkpoint,
    check_directory,
    open_checkpoint,
    read_tensor_table,
    validate_tensors,
)
from mind4_core.config import model_config_from_dict
from mind4_core.convert import convert_checkpoint
from mind4_core.errors import CheckpointError
from mind4_core.plugins import get_manager, temporary_plugin
from mind4_core.records import WeightLoaderRecord

from .conftest import assert_same_tensors


class PrefixedLoader:
    """A toy format: canonical tensors under ``"toy/"`` and a ``toy.json`` config."""

    name = "toy"

    def probe(self, path: Path) -> str | None:
        return None if (Path(path) / "toy.json").is_file() else "no toy.json"

    def open(self, path: Path) -> Checkpoint:
        path = check_directory(path)
        config = model_config_from_dict(json.loads((path / "toy.json").read_text()), "toy.json")
        table, files = read_tensor_table(path)
        renamed = {n.removeprefix("toy/"): info for n, info in table.items()}
        return Checkpoint(
            path, config, validate_tensors(path, config, renamed), format="toy", files=files
        )


class ToyPlugin:
    @hookimpl
    def mind4_weight_loaders(self):
        return [WeightLoaderRecord(name="toy", factory=PrefixedLoader, priority=20)]


def _toy_checkpoint(src: Path, out: Path) -> Path:
    from mind4_core.safetensors_io import SafetensorsFile, write_file

    f = SafetensorsFile(src / "model.safetensors")
    write_file(
        out / "weights.safetensors",
        {f"toy/{n}": (i.dtype, np.array(f.array(n))) for n, i in f.tensors.items()},
    )
    (out / "toy.json").write_text((src / "config.json").read_text())
    return out


def test_builtin_loaders_are_registered():
    names = [r.name for r in get_manager().records("weight_loader")]
    assert names[:2] == ["canonical", "hf"]


def test_a_third_party_format_loads_and_converts(make_canonical, tmp_path):
    src = make_canonical(experts="mxfp4")
    toy = _toy_checkpoint(src, tmp_path)
    with pytest.raises(CheckpointError, match="- hf: no config.json"):
        open_checkpoint(toy)  # not installed yet: every built-in loader says why not
    with temporary_plugin(ToyPlugin(), "toy-format"):
        ckpt = open_checkpoint(toy)
        assert ckpt.format == "toy"
        assert_same_tensors(open_checkpoint(src), ckpt)
        convert_checkpoint(toy, tmp_path / "hf", to="hf")
    assert_same_tensors(open_checkpoint(src), open_checkpoint(tmp_path / "hf"))


def test_the_plugin_reason_is_listed_when_nothing_matches(tmp_path):
    with temporary_plugin(ToyPlugin(), "toy-format"), pytest.raises(CheckpointError) as info:
        open_checkpoint(tmp_path)
    assert "- toy: no toy.json" in str(info.value)
