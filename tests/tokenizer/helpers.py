"""Small shared helpers for the tokenizer tests."""

from __future__ import annotations

import base64
from pathlib import Path


def write_ranks_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def b64(token: bytes) -> str:
    return base64.b64encode(token).decode()


def byte_lines() -> list[str]:
    """The 256 single-byte tokens, rank = byte value."""
    return [f"{b64(bytes([b]))} {b}" for b in range(256)]
