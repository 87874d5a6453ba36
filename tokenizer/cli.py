"""``mind4 tokenizer``: train, encode, decode and inspect encodings.

The group is a plain :mod:`click` group; the core mounts it as ``mind4
tokenizer`` and ``python -m mind4_tokenizer`` runs it on its own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from mind4_core.errors import Mind4Error

DEFAULT_ENCODING = "mind4-8k"

encoding_option = click.option(
    "--encoding",
    "-e",
    default=DEFAULT_ENCODING,
    show_default=True,
    help="Encoding name (see `mind4 tokenizer list`) or path to an encoding directory "
    "or o200k_base ranks file.",
)


def _fail(exc: Mind4Error) -> None:
    raise click.ClickException(str(exc)) from None


def _load(encoding: str):
    from .registry import get_encoding

    try:
        return get_encoding(encoding)
    except Mind4Error as exc:
        _fail(exc)


def _text_argument(text: str | None, file: Path | None) -> str:
    if file is not None:
        from .trainer import read_text_file

        try:
            return read_text_file(file)
        except Mind4Error as exc:
            _fail(exc)
    if text is None or text == "-":
        return sys.stdin.read()
    return text


@click.group(name="tokenizer")
def tokenizer() -> None:
    """Train, inspect and use tokenizers (tiktoken encodings)."""


@tokenizer.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_cmd(as_json: bool) -> None:
    """List the encodings that can be loaded by name."""
    from .registry import BUILTIN_NAMES, find_o200k_base, shipped_encodings

    rows = [{"name": n, "source": "shipped", "available": True} for n in shipped_encodings()]
    for name in BUILTIN_NAMES:
        try:
            where = str(find_o200k_base())
            ok = True
        except Mind4Error:
            where, ok = (
                "needs o200k_base.tiktoken (see `mind4 tokenizer encode -e o200k_harmony`)",
                False,
            )
        rows.append({"name": name, "source": where, "available": ok})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "available", "source")
    for row in rows:
        table.add_row(row["name"], "yes" if row["available"] else "no", row["source"])
    Console().print(table)


@tokenizer.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--vocab-size", "-v", type=int, required=True, help="Total size incl. specials.")
@click.option(
    "--out",
    "-o",
    "out_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory to write encoding.json + ranks.tiktoken into.",
)
@click.option("--name", default=None, help="Encoding name (default: the --out folder name).")
@click.option(
    "--default-corpus",
    is_flag=True,
    help="Also train on the default corpus (pydoc topics + stdlib docstrings).",
)
@click.option(
    "--errors",
    type=click.Choice(["strict", "replace", "ignore"]),
    default="strict",
    show_default=True,
    help="What to do with invalid UTF-8 in FILES.",
)
@click.option(
    "--pattern",
    type=click.Choice(["o200k", "cl100k"]),
    default="o200k",
    show_default=True,
    help="Pre-split regex family.",
)
@click.option(
    "--min-frequency",
    type=int,
    default=2,
    show_default=True,
    help="Stop when no pair occurs this often.",
)
def train(files, vocab_size, out_dir, name, default_corpus, errors, pattern, min_frequency):
    """Learn a byte-level BPE encoding from text FILES.

    \b
    Examples:
      mind4 tokenizer train notes/*.txt --vocab-size 4096 --out my-4k
      mind4 tokenizer train --default-corpus --vocab-size 8192 --out mind4-8k
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from .corpus import default_corpus_text
    from .encoding import PATTERNS, save_encoding
    from .trainer import read_text_file, train_bpe

    if not files and not default_corpus:
        raise click.UsageError("give training FILES or --default-corpus")

    def texts():
        if default_corpus:
            yield default_corpus_text()
        for path in files:
            yield read_text_file(path, errors)

    try:
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            transient=True,
            console=_stderr_console(),
        ) as bar:
            task = bar.add_task("merging", total=vocab_size)
            result = train_bpe(
                texts(),
                vocab_size,
                pat_str=PATTERNS[pattern],
                min_frequency=min_frequency,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        spec = save_encoding(
            out_dir,
            name=name or out_dir.name,
            ranks=result.ranks,
            pat_str=result.pat_str,
            special_tokens=result.special_tokens,
            training={
                "files": [p.name for p in files],
                "default_corpus": default_corpus,
                "python": ".".join(map(str, sys.version_info[:3])) if default_corpus else None,
                "default_corpus_sha256": _corpus_sha256() if default_corpus else None,
                "bytes": result.n_bytes,
                "pattern": pattern,
                "requested_vocab_size": vocab_size,
                "min_frequency": min_frequency,
                "errors": errors,
            },
        )
    except Mind4Error as exc:
        _fail(exc)
    click.echo(
        f"trained {result.n_vocab} tokens ({len(result.ranks)} ranks + "
        f"{len(result.special_tokens)} specials) from {result.n_bytes:,} bytes, "
        f"{result.n_pretokens:,} distinct pre-tokens in {result.seconds:.1f}s -> {spec}"
    )
    if result.n_vocab < vocab_size:
        click.echo(
            f"warning: only {result.n_vocab} of {vocab_size} tokens: no pair left with "
            f"frequency >= {min_frequency}; give more text or lower --min-frequency",
            err=True,
        )


@tokenizer.command()
@click.argument("text", required=False)
@click.option(
    "--file",
    "-f",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Encode this UTF-8 file instead of TEXT.",
)
@encoding_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def encode(text, file, encoding, as_json):
    """Print the token ids of TEXT (or stdin, or --file). Special-token text is
    encoded as ordinary text."""
    tok = _load(encoding)
    ids = tok.encode(_text_argument(text, file))
    click.echo(json.dumps(ids) if as_json else " ".join(map(str, ids)))


@tokenizer.command()
@click.argument("ids", nargs=-1)
@encoding_option
def decode(ids, encoding):
    """Print the text of token IDS (space/comma separated, or a JSON list on stdin)."""
    tok = _load(encoding)
    raw = " ".join(ids) if ids else sys.stdin.read()
    try:
        tokens = [int(x) for x in raw.replace(",", " ").strip("[] \n").split()]
    except ValueError:
        raise click.BadParameter(f"token ids must be integers, got {raw[:60]!r}") from None
    try:
        click.echo(tok.decode(tokens), nl=False)
    except Mind4Error as exc:
        _fail(exc)
    click.echo()


SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
COLOURS = ("on dark_blue", "on dark_green", "on dark_red", "on purple4", "on dark_orange3")


@tokenizer.command()
@click.argument("text", required=False)
@click.option("--file", "-f", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@encoding_option
@click.option("--json", "as_json", is_flag=True, help="Print [{id, bytes, text}] as JSON.")
@click.option("--no-ids", is_flag=True, help="Show coloured tokens only.")
def inspect(text, file, encoding, as_json, no_ids):
    """Show how TEXT splits into tokens: each token coloured, with its id."""
    tok = _load(encoding)
    ids = tok.encode(_text_argument(text, file))
    pieces = [tok.token_bytes(i) for i in ids]
    if as_json:
        rows = [
            {"id": i, "bytes": list(b), "text": b.decode("utf-8", errors="replace")}
            for i, b in zip(ids, pieces, strict=True)
        ]
        click.echo(json.dumps(rows, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.text import Text

    out = Text()
    for n, (i, b) in enumerate(zip(ids, pieces, strict=True)):
        shown = _show(b)
        out.append(shown, style=COLOURS[n % len(COLOURS)])
        if not no_ids:
            out.append(str(i).translate(SUBSCRIPT), style="dim")
    console = Console()
    console.print(out)
    n_bytes = sum(len(b) for b in pieces)
    console.print(
        f"[bold]{len(ids)}[/] tokens, {n_bytes} bytes "
        f"({n_bytes / max(len(ids), 1):.2f} bytes/token), encoding {tok.name} "
        f"(n_vocab {tok.n_vocab})"
    )


def _show(piece: bytes) -> str:
    """A token's text for display; bytes of a split UTF-8 character as ``\\xNN``."""
    text = piece.decode("utf-8", errors="backslashreplace")
    return text.replace("\n", "\\n\n").replace("\t", "\\t").replace("\r", "\\r")


def _corpus_sha256() -> str:
    import hashlib

    from .corpus import default_corpus_text

    return hashlib.sha256(default_corpus_text().encode("utf-8")).hexdigest()


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def main() -> None:  # pragma: no cover - exercised through subprocess tests
    tokenizer(prog_name="mind4 tokenizer")
