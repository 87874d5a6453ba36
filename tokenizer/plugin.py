"""The tokenizer plugin: registers Mind 4's encodings through ``mind4_tokenizers``.

Register it once: either as the entry point ``tokenizer = "mind4_tokenizer.plugin"``
(``[project.entry-points.mind4]``) or through the core's built-in plugin calling
:func:`tokenizer_records` -- not both, or every encoding is listed twice.
Records hold lazy factories; nothing is loaded until an encoding is used.
"""

from __future__ import annotations

from pathlib import Path

from mind4_core.hookspecs import hookimpl
from mind4_core.records import TokenizerRecord

ENCODINGS_DIR = Path(__file__).parent / "encodings"


def shipped_encodings() -> list[str]:
    """Shipped encoding names (a folder with encoding.json), found without importing tiktoken."""
    if not ENCODINGS_DIR.is_dir():
        return []
    return sorted(p.name for p in ENCODINGS_DIR.iterdir() if (p / "encoding.json").is_file())


MIND4_PLUGIN_API = 1


class ShippedEncoding:
    """A picklable, printable zero-argument factory for one shipped encoding."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self):
        from .registry import load_shipped

        return load_shipped(self.name)

    def __repr__(self) -> str:
        return f"mind4_tokenizer.registry:load_shipped({self.name!r})"


def tokenizer_records() -> list[TokenizerRecord]:
    """The records of every shipped encoding and of ``o200k_harmony`` (plain function,
    for the core's built-in plugin; :func:`mind4_tokenizers` is the same as a hook)."""
    records = [
        TokenizerRecord(
            name=name,
            factory=ShippedEncoding(name),
            priority=10,
            description=f"Mind 4's own byte-level BPE encoding {name} (shipped)",
        )
        for name in shipped_encodings()
    ]
    records.append(
        TokenizerRecord(
            name="o200k_harmony",
            factory="mind4_tokenizer.registry:o200k_harmony",
            priority=10,
            description="gpt-oss tokenizer: o200k_base ranks (from tiktoken's cache) + harmony "
            "special tokens, 201088 ids",
        )
    )
    return records


@hookimpl
def mind4_tokenizers() -> list[TokenizerRecord]:
    return tokenizer_records()
