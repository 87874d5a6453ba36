"""The plugin tutorial shows the example plugin's real files, so it cannot rot."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "docs" / "plugin-tutorial.md"
SHOWN = re.compile(r"<!-- file: (?P<path>\S+) -->\n```\w*\n(?P<body>.*?)```", re.S)


def test_every_file_shown_is_the_file_in_the_repository():
    shown = {m["path"]: m["body"] for m in SHOWN.finditer(TUTORIAL.read_text(encoding="utf-8"))}
    assert set(shown) == {
        "plugins/mind4-example-minp/pyproject.toml",
        "plugins/mind4-example-minp/mind4_example_minp/plugin.py",
        "plugins/mind4-example-minp/mind4_example_minp/sampler.py",
    }
    for path, body in shown.items():
        assert body == (ROOT / path).read_text(encoding="utf-8"), (
            f"the tutorial's copy of {path} is stale"
        )


def test_python_snippets_compile():
    text = TUTORIAL.read_text(encoding="utf-8")
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        compile(textwrap.dedent(block), "tutorial", "exec")
