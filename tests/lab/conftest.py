"""Fixtures of the lab's tests: a tiny random checkpoint whose prompts outgrow the
sliding window, a torch model on it, and a check that a PNG really shows something."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mind4_core.config import ModelConfig
from mind4_core.presets import init_checkpoint

#: 3 layers (windowed, full, windowed), GQA, 4 experts top-2, a window of 6 tokens
LAB = ModelConfig(
    hidden_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    intermediate_size=64,
    vocab_size=8192,
    num_experts=4,
    experts_per_token=2,
    initial_context_length=64,
    max_context_length=64,
    sliding_window=6,
    rope_theta=10000.0,
)

PROMPT = "The cat sat on the mat and looked at the dog."


@pytest.fixture(scope="session")
def lab_checkpoint(tmp_path_factory) -> Path:
    return init_checkpoint(
        LAB, tmp_path_factory.mktemp("lab") / "ckpt", seed=3, dtype="float32", tokenizer="mind4-8k"
    )


@pytest.fixture(scope="session")
def torch_model(lab_checkpoint):
    pytest.importorskip("mind4_torch")
    from mind4_core.engine import load

    return load(lab_checkpoint, backend="torch", device="cpu", dtype="float32")


def assert_png(
    path: str | Path, min_width: int = 300, min_height: int = 200, *, lines: bool = False
) -> np.ndarray:
    """Open the image, check its size and that it is not blank; return its pixels.

    ``lines``: a line chart, whose middle may legitimately be empty (the data can
    run along an edge): check instead that coloured (non-grey) line pixels exist."""
    from PIL import Image

    path = Path(path)
    assert path.is_file() and path.stat().st_size > 2000, f"{path} missing or tiny"
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    assert width >= min_width and height >= min_height, f"{path}: {width}x{height}"
    assert pixels.std() > 10, f"{path} is (nearly) one colour"
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 30, f"{path} has only {len(colours)} colours"
    if lines:
        spread = pixels.max(axis=-1).astype(int) - pixels.min(axis=-1)
        assert (spread > 60).sum() > 200, f"{path}: no coloured line drawn"
        return pixels
    # something is drawn away from the edges too (not just a frame)
    h, w = pixels.shape[:2]
    centre = pixels[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    assert centre.std() > 5, f"{path}: the middle of the image is empty"
    return pixels
