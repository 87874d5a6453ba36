"""Reading eval datasets from the user's files (and the shipped synthetic ones).

Formats:

- **GPQA** (CSV with a header row): columns ``Question``, ``Correct Answer``,
  ``Incorrect Answer 1``, ``Incorrect Answer 2``, ``Incorrect Answer 3``;
  other columns (``Record ID``, ``Subdomain``, ...) are kept as metadata.
- **AIME** (JSON Lines): one object per line with ``problem`` and ``answer``
  (an integer, or a string holding one); ``id`` optional. Key names are
  matched case-insensitively (``Problem``/``Answer``/``ID`` also work).
- **ABCD** (JSON Lines): ``question``, ``choices`` (a list of four strings or
  an object with keys ``A``..``D``) and ``answer`` (a letter ``A``..``D``).
- **Text** (``basic``): any UTF-8 text file.

A missing file raises :class:`DatasetError` naming the file and the format it
should have. A malformed row is returned as a :class:`Malformed` entry (file,
line, reason) and skipped; the eval reports and counts it. A dataset with no
usable row raises :class:`DatasetError`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import attrs

from .errors import DatasetError
from .types import Malformed

GPQA_COLUMNS = (
    "Question",
    "Correct Answer",
    "Incorrect Answer 1",
    "Incorrect Answer 2",
    "Incorrect Answer 3",
)

FORMATS = {
    "gpqa": "a CSV file with a header row and the columns " + ", ".join(GPQA_COLUMNS),
    "aime": 'a JSON Lines file, one object per line: {"problem": "...", "answer": 42}',
    "abcd": 'a JSON Lines file, one object per line: {"question": "...", '
    '"choices": ["...", "...", "...", "..."], "answer": "B"}',
    "text": "a UTF-8 text file",
}

#: the synthetic datasets shipped inside the package (``mind4_evals/data``)
SHIPPED = {
    "gpqa": "gpqa_synthetic.csv",
    "aime": "aime_synthetic.jsonl",
    "abcd": "abcd_synthetic.jsonl",
    "text": "basic_synthetic.txt",
}


@attrs.frozen(kw_only=True)
class Row:
    """One usable dataset row, with where it came from."""

    id: str
    line: int
    fields: dict[str, Any]


@attrs.frozen(kw_only=True)
class Dataset:
    path: str
    format: str
    rows: tuple[Row, ...]
    malformed: tuple[Malformed, ...] = ()

    def __len__(self) -> int:
        return len(self.rows)


def shipped_path(kind: str) -> Path:
    """Path of the synthetic dataset of ``kind`` shipped in the package."""
    return Path(str(resources.files("mind4_evals").joinpath("data", SHIPPED[kind])))


def _read_text(path: str | Path, kind: str) -> str:
    p = Path(path)
    if not p.is_file():
        what = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise DatasetError(
            f"{kind} dataset {p} {what}; expected {FORMATS[kind]}. "
            f"Omit the path to use the shipped synthetic set ({SHIPPED[kind]})."
        )
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read {kind} dataset {p}: {exc}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if kind != "text":  # rows with bad bytes become malformed rows (see _bad_utf8)
            return data.decode("utf-8-sig", errors="surrogateescape")
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"{p}:{line}: invalid UTF-8 at byte {exc.start}; expected {FORMATS[kind]}"
        ) from None


def _bad_utf8(*texts: str) -> bool:
    """Whether a row read with ``surrogateescape`` held bytes that are not UTF-8."""
    return any("\udc80" <= c <= "\udcff" for t in texts for c in t)


def _row_id(path: Path, line: int, text: str) -> str:
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]
    return f"{path.name}:{line}:{digest}"


def _empty(path: Path, kind: str, malformed: list[Malformed]) -> DatasetError:
    more = f" ({len(malformed)} malformed rows, first: {malformed[0]})" if malformed else ""
    return DatasetError(f"{kind} dataset {path} has no usable rows{more}; expected {FORMATS[kind]}")


# -- GPQA CSV ---------------------------------------------------------------------------------


def load_gpqa(path: str | Path) -> Dataset:
    p = Path(path)
    text = _read_text(p, "gpqa")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise _empty(p, "gpqa", []) from None
    except csv.Error as exc:
        raise DatasetError(f"{p}:1: cannot parse the CSV header: {exc}") from None
    header = [h.strip() for h in header]
    missing = [c for c in GPQA_COLUMNS if c not in header]
    if missing:
        raise DatasetError(
            f"{p}:1: missing column(s) {', '.join(map(repr, missing))}; found {header}. "
            f"Expected {FORMATS['gpqa']}."
        )
    rows: list[Row] = []
    malformed: list[Malformed] = []
    line = reader.line_num + 1  # first line of the next record
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            malformed.append(Malformed(file=str(p), line=line, reason=f"CSV error: {exc}"))
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1
        if not record or not any(c.strip() for c in record):
            continue  # blank line
        if len(record) != len(header):
            malformed.append(
                Malformed(
                    file=str(p),
                    line=start,
                    reason=f"{len(record)} fields, the header has {len(header)}",
                )
            )
            continue
        if _bad_utf8(*record):
            malformed.append(Malformed(file=str(p), line=start, reason="invalid UTF-8"))
            continue
        fields = dict(zip(header, record, strict=True))
        empty = [c for c in GPQA_COLUMNS if not fields[c].strip()]
        if empty:
            malformed.append(
                Malformed(file=str(p), line=start, reason=f"empty {', '.join(map(repr, empty))}")
            )
            continue
        choices = [fields[c].strip() for c in GPQA_COLUMNS[1:]]
        if len(set(choices)) < 4:
            malformed.append(
                Malformed(file=str(p), line=start, reason="two answer options are identical")
            )
            continue
        rid = fields.get("Record ID", "").strip() or _row_id(p, start, fields["Question"])
        rows.append(Row(id=rid, line=start, fields=fields))
    if not rows:
        raise _empty(p, "gpqa", malformed)
    return Dataset(path=str(p), format="gpqa", rows=tuple(rows), malformed=tuple(malformed))


# -- JSON Lines -------------------------------------------------------------------------------


def _jsonl(p: Path, kind: str) -> Iterator[tuple[int, dict[str, Any] | Malformed]]:
    text = _read_text(p, kind)
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if _bad_utf8(raw):
            yield n, Malformed(file=str(p), line=n, reason="invalid UTF-8")
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield n, Malformed(file=str(p), line=n, reason=f"not valid JSON: {exc.msg}")
            continue
        if not isinstance(obj, dict):
            yield (
                n,
                Malformed(
                    file=str(p), line=n, reason=f"expected a JSON object, got {type(obj).__name__}"
                ),
            )
            continue
        yield n, obj


def _get(obj: dict[str, Any], *names: str) -> Any:
    lower = {k.lower(): v for k, v in obj.items() if isinstance(k, str)}
    for name in names:
        if name in lower:
            return lower[name]
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        s = value.strip().replace(",", "")
        if s.lstrip("-").isdigit():
            return int(s)
    return None


def _group(obj: dict[str, Any]) -> str | None:
    """An optional category for per-group scores (``family``, ``subject``, ``type``)."""
    value = _get(obj, "family", "subject", "type", "category")
    return str(value) if value not in (None, "") else None


def load_aime(path: str | Path) -> Dataset:
    p = Path(path)
    rows: list[Row] = []
    malformed: list[Malformed] = []
    for n, obj in _jsonl(p, "aime"):
        if isinstance(obj, Malformed):
            malformed.append(obj)
            continue
        problem = _get(obj, "problem", "question")
        answer = _get(obj, "answer")
        if not isinstance(problem, str) or not problem.strip():
            malformed.append(Malformed(file=str(p), line=n, reason="missing or empty 'problem'"))
            continue
        value = _as_int(answer)
        if value is None:
            malformed.append(
                Malformed(file=str(p), line=n, reason=f"'answer' is not an integer: {answer!r}")
            )
            continue
        rid = _get(obj, "id")
        rows.append(
            Row(
                id=str(rid) if rid is not None else _row_id(p, n, problem),
                line=n,
                fields={"problem": problem, "answer": value, "group": _group(obj)},
            )
        )
    if not rows:
        raise _empty(p, "aime", malformed)
    return Dataset(path=str(p), format="aime", rows=tuple(rows), malformed=tuple(malformed))


def load_abcd(path: str | Path) -> Dataset:
    p = Path(path)
    rows: list[Row] = []
    malformed: list[Malformed] = []
    for n, obj in _jsonl(p, "abcd"):
        if isinstance(obj, Malformed):
            malformed.append(obj)
            continue
        question = _get(obj, "question")
        choices = _get(obj, "choices", "options")
        answer = _get(obj, "answer")
        if isinstance(choices, dict):
            choices = [choices.get(k) for k in "ABCD"]
        problem = None
        if not isinstance(question, str) or not question.strip():
            problem = "missing or empty 'question'"
        elif (
            not isinstance(choices, list)
            or len(choices) != 4
            or not all(isinstance(c, str) and c.strip() for c in choices)
        ):
            problem = "'choices' must be four non-empty strings (a list, or keys A-D)"
        elif not isinstance(answer, str) or answer.strip().upper() not in ("A", "B", "C", "D"):
            problem = f"'answer' must be one of A, B, C, D, got {answer!r}"
        if problem:
            malformed.append(Malformed(file=str(p), line=n, reason=problem))
            continue
        rid = _get(obj, "id")
        rows.append(
            Row(
                id=str(rid) if rid is not None else _row_id(p, n, question),
                line=n,
                fields={
                    "question": question,
                    "choices": [c.strip() for c in choices],
                    "answer": answer.strip().upper(),
                    "group": _group(obj),
                },
            )
        )
    if not rows:
        raise _empty(p, "abcd", malformed)
    return Dataset(path=str(p), format="abcd", rows=tuple(rows), malformed=tuple(malformed))


def load_text(path: str | Path) -> str:
    p = Path(path)
    text = _read_text(p, "text")
    if not text.strip():
        raise DatasetError(f"text file {p} is empty; expected {FORMATS['text']} with some text")
    return text


LOADERS = {"gpqa": load_gpqa, "aime": load_aime, "abcd": load_abcd}


def load(kind: str, path: str | Path | None = None) -> Dataset:
    """Load a dataset of ``kind`` from ``path`` (``None``: the shipped synthetic set)."""
    return LOADERS[kind](shipped_path(kind) if path is None else path)
