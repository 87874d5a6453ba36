"""``mind4 convert`` and ``mind4 inspect-checkpoint``.

Conversion streams: every output tensor is produced in pieces (one expert, or
a block of rows) from the memory-mapped source and written straight into the
output file, and the source pages are released after each tensor. Peak
memory is therefore about one tensor of the source plus one piece, whatever
the size of the model.

    mind4 convert ./gpt-oss-20b ./gpt-oss-20b-hf --to hf
    mind4 convert ./hf-model ./canonical --to canonical --experts mxfp4
    mind4 inspect-checkpoint ./gpt-oss-20b --json
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import click
import numpy as np

from . import mxfp4
from .checkpoint import INDEX_FILE, Checkpoint, bf16_bits_to_float32, open_checkpoint, to_bf16_bits
from .errors import CheckpointError, ConfigError
from .hf import hf_config, hf_links, hf_shapes, split_rows
from .safetensors_io import DTYPES, SafetensorsWriter, TensorSpec

TARGETS = ("canonical", "hf")
EXPERT_STORAGES = ("mxfp4", "bf16")
#: elements per piece when a tensor is produced in pieces (16 MiB of float32)
PIECE_ELEMENTS = 1 << 22
DEFAULT_SHARD_BYTES = 5 * 10**9
#: small files copied along (tokenizer and generation settings), never weights
AUX_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)
EXPERT_SUFFIXES = (".mlp.mlp1_weight", ".mlp.mlp2_weight")


# ----------------------------------------------------------------------------- pieces


def _row_pieces(array: np.ndarray) -> Iterator[np.ndarray]:
    """``array`` in blocks of leading rows of about :data:`PIECE_ELEMENTS` elements."""
    if array.ndim == 0 or array.size == 0:
        yield np.ascontiguousarray(array)
        return
    per_row = max(1, array.size // array.shape[0])
    rows = max(1, PIECE_ELEMENTS // per_row)
    for start in range(0, array.shape[0], rows):
        piece = array[start : start + rows]
        if piece.ndim >= 2 and piece.shape[0] == 1 and per_row > PIECE_ELEMENTS:
            yield from _row_pieces(piece[0])  # one row too big: split it further
        else:
            yield np.ascontiguousarray(piece)


def _matrices(array: np.ndarray, trailing: int = 2) -> Iterator[np.ndarray]:
    """The sub-arrays of the last ``trailing`` axes (``[rows, cols]`` matrices), in order."""
    yield from array.reshape(-1, *array.shape[-trailing:])


def _to_storage(values: np.ndarray, source_dtype: str, target_dtype: str) -> np.ndarray:
    """Raw ``values`` stored as ``source_dtype`` -> raw data of ``target_dtype``."""
    if source_dtype == target_dtype:
        return values
    as_f32 = bf16_bits_to_float32(values) if source_dtype == "BF16" else values.astype(np.float32)
    if target_dtype == "BF16":
        return to_bf16_bits(as_f32)
    return as_f32.astype(DTYPES[target_dtype])


@attrs.define
class QuantError:
    """Squared error and squared norm accumulated while quantising one tensor."""

    name: str
    err2: float = 0.0
    ref2: float = 0.0
    max_abs: float = 0.0

    @property
    def relative(self) -> float:
        return float(np.sqrt(self.err2 / self.ref2)) if self.ref2 > 0 else 0.0


def _quantise(
    matrices: Iterator[np.ndarray], stats: QuantError, scales_out: list[np.ndarray]
) -> Iterator[np.ndarray]:
    """MXFP4 blocks of each float32 matrix, in row pieces; scales go to ``scales_out``.

    Scales are 1/16 of the blocks' bytes, so keeping them until the blocks are
    written costs little and avoids quantising twice."""
    for matrix in matrices:
        rows_per_piece = max(1, PIECE_ELEMENTS // matrix.shape[-1])
        for start in range(0, matrix.shape[0], rows_per_piece):
            x = np.asarray(matrix[start : start + rows_per_piece], dtype=np.float32)
            blocks, scales, values = mxfp4.quantise(x)
            diff = values.astype(np.float64) - x
            stats.err2 += float(np.dot(diff.ravel(), diff.ravel()))
            x64 = x.astype(np.float64).ravel()
            stats.ref2 += float(np.dot(x64, x64))
            stats.max_abs = max(stats.max_abs, float(np.abs(diff).max(initial=0.0)))
            scales_out.append(scales)
            yield blocks


# ----------------------------------------------------------------------------- plan


@attrs.frozen
class OutTensor:
    """One tensor of the output: its spec and a producer of its row-major pieces."""

    spec: TensorSpec
    pieces: Callable[[], Iterator[np.ndarray]]
    source: str  # canonical name it comes from (its pages are released after it)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.spec.shape, dtype=np.int64)) * DTYPES[self.spec.dtype].itemsize


def _expert_target(ckpt: Checkpoint, name: str, experts: str | None) -> str:
    """Storage of an expert weight in the output: "MXFP4" or a float dtype."""
    if experts == "mxfp4":
        return "MXFP4"
    if experts == "bf16":
        return "BF16"
    return ckpt.dtype(name)


def _float_source(ckpt: Checkpoint, name: str) -> tuple[np.ndarray, str]:
    """Raw logical array and its stored dtype (a view where the loader can)."""
    return ckpt.tensor(name), ckpt.dtype(name)


def _expert_tensors(
    ckpt: Checkpoint,
    name: str,
    out_names: tuple[str, ...],
    target: str,
    transpose: bool,
    quant: list[QuantError],
) -> list[OutTensor]:
    """Output tensors of one expert weight ``[E, rows, cols]`` (canonical orientation)."""
    shape = tuple(ckpt.shape(name))
    *lead, rows, cols = shape
    if target == "MXFP4":
        groups = cols // mxfp4.BLOCK
        blocks_spec = TensorSpec(out_names[0], "U8", (*lead, rows, groups, mxfp4.BLOCK // 2))
        scales_spec = TensorSpec(out_names[1], "U8", (*lead, rows, groups))
        if ckpt.is_mxfp4(name):

            def blocks_pieces() -> Iterator[np.ndarray]:
                yield from _row_pieces(ckpt.mxfp4(name)[0])

            def scales_pieces() -> Iterator[np.ndarray]:
                yield from _row_pieces(ckpt.mxfp4(name)[1])

        else:
            if cols % mxfp4.BLOCK:
                raise ConfigError(
                    f"cannot quantise {name!r} to MXFP4: its rows have {cols} values, not a "
                    f"multiple of {mxfp4.BLOCK}"
                )
            stats = QuantError(name)
            quant.append(stats)
            stash: list[np.ndarray] = []

            def float_matrices() -> Iterator[np.ndarray]:
                raw, dtype = _float_source(ckpt, name)
                for m in _matrices(raw):
                    yield bf16_bits_to_float32(m) if dtype == "BF16" else m.astype(np.float32)

            def blocks_pieces() -> Iterator[np.ndarray]:
                yield from _quantise(float_matrices(), stats, stash)

            def scales_pieces() -> Iterator[np.ndarray]:
                while stash:
                    yield stash.pop(0)

        return [
            OutTensor(blocks_spec, blocks_pieces, name),
            OutTensor(scales_spec, scales_pieces, name),
        ]

    out_shape = (*lead, cols, rows) if transpose else shape

    def dense_pieces() -> Iterator[np.ndarray]:
        if ckpt.is_mxfp4(name):
            blocks, scales = ckpt.mxfp4(name)
            for b, s in zip(_matrices(blocks, 3), _matrices(scales)):
                # one expert at a time: [rows, cols/32, 16] -> [rows, cols]
                m = mxfp4.decode(b, s)
                m = m.T if transpose else m
                yield _to_storage(np.ascontiguousarray(m), "F32", target)
            return
        raw, dtype = _float_source(ckpt, name)
        for m in _matrices(raw):
            m = m.T if transpose else m
            for piece in _row_pieces(m):
                yield _to_storage(piece, dtype, target)

    return [OutTensor(TensorSpec(out_names[0], target, out_shape), dense_pieces, name)]


def _plain(ckpt: Checkpoint, name: str, out_name: str, rows: tuple[int, int] | None = None):
    dtype = ckpt.dtype(name)
    shape = tuple(ckpt.shape(name))
    if rows is not None:
        shape = (rows[1] - rows[0], *shape[1:])

    def pieces() -> Iterator[np.ndarray]:
        raw = ckpt.tensor(name)
        yield from _row_pieces(raw if rows is None else raw[rows[0] : rows[1]])

    return OutTensor(TensorSpec(out_name, dtype, shape), pieces, name)


def plan_tensors(
    ckpt: Checkpoint, to: str, experts: str | None, quant: list[QuantError]
) -> list[OutTensor]:
    """Every output tensor, in file order, for target layout ``to``."""
    cfg = ckpt.config
    out: list[OutTensor] = []
    if to == "canonical":
        for name in ckpt.names():
            if name.endswith(EXPERT_SUFFIXES):
                target = _expert_target(ckpt, name, experts)
                names = (f"{name}.blocks", f"{name}.scales") if target == "MXFP4" else (name,)
                out += _expert_tensors(ckpt, name, names, target, False, quant)
            else:
                out.append(_plain(ckpt, name, name))
        return out
    targets = {
        n: ("mxfp4" if _expert_target(ckpt, n, experts) == "MXFP4" else "dense")
        for n in ckpt.names()
        if n.endswith(EXPERT_SUFFIXES)
    }
    for link in hf_links(cfg, experts=targets):
        name = link.canonical
        if link.kind == "same":
            out.append(_plain(ckpt, name, link.hf[0]))
        elif link.kind == "concat":
            for hf_name, rows in zip(link.hf, split_rows(cfg)):
                out.append(_plain(ckpt, name, hf_name, rows))
        else:  # expert weights: "transpose" (dense) or "mxfp4"
            target = _expert_target(ckpt, name, experts)
            out += _expert_tensors(ckpt, name, link.hf, target, link.kind == "transpose", quant)
            expected = hf_shapes(link, tuple(ckpt.shape(name)), cfg)
            assert [t.spec.shape for t in out[-len(expected) :]] == expected
    return out


def _shards(tensors: list[OutTensor], max_bytes: int) -> list[list[OutTensor]]:
    shards: list[list[OutTensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and max_bytes > 0 and size + t.nbytes > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


# ----------------------------------------------------------------------------- convert


@attrs.frozen
class ConvertReport:
    source: str
    source_format: str
    destination: str
    to: str
    tensors: int
    bytes_written: int
    files: list[str]
    seconds: float
    quantisation: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    if dst.resolve() == src.resolve():
        raise CheckpointError(f"destination {dst} is the source; choose another directory")
    if dst.exists() and not dst.is_dir():
        raise CheckpointError(f"destination {dst} exists and is not a directory")
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise CheckpointError(
            f"destination {dst} is not empty; choose an empty directory or pass --overwrite"
        )


def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    to: str,
    experts: str | None = None,
    max_shard_bytes: int = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ConvertReport:
    """Convert checkpoint ``src`` into layout ``to`` in directory ``dst``, streaming.

    ``experts``: ``None`` keeps each expert weight's storage; ``"mxfp4"``
    quantises dense experts (the report gives the relative error);
    ``"bf16"`` stores them as bfloat16 (MXFP4 dequantises exactly).
    ``progress(n)`` is called with the bytes of each piece written.
    """
    if to not in TARGETS:
        raise ConfigError(f"unknown target layout {to!r}; allowed: {', '.join(TARGETS)}")
    if experts not in (None, *EXPERT_STORAGES):
        raise ConfigError(f"unknown expert storage {experts!r}; allowed: mxfp4, bf16")
    start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    ckpt = open_checkpoint(src)
    _check_destination(src, dst, overwrite)
    quant: list[QuantError] = []
    tensors = plan_tensors(ckpt, to, experts, quant)
    shards = _shards(tensors, max_shard_bytes)
    if len(shards) == 1:
        names = ["model.safetensors"]
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    if on_start is not None:
        on_start(sum(t.nbytes for t in tensors))
    dst.mkdir(parents=True, exist_ok=True)
    for stale in ("config.json", INDEX_FILE, *dst.glob("*.safetensors")):
        (dst / stale).unlink(missing_ok=True)
    written: list[Path] = []
    try:
        for shard, file_name in zip(shards, names):
            metadata = {"format": "pt" if to == "hf" else "mind4-canonical"}
            with SafetensorsWriter(dst / file_name, [t.spec for t in shard], metadata) as w:
                for t in shard:
                    w.write_parts(t.spec.name, _counted(t.pieces(), progress))
                    ckpt.release(t.source)
            written.append(dst / file_name)
        if len(shards) > 1:
            _write_json(dst / INDEX_FILE, _index(shards, names))
        config = _config(ckpt, to, experts, tensors)
        for aux in AUX_FILES:
            if (src / aux).is_file():
                shutil.copyfile(src / aux, dst / aux)
        _write_json(dst / "config.json", config)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        (dst / INDEX_FILE).unlink(missing_ok=True)
        raise
    finally:
        ckpt.close()
    return ConvertReport(
        source=str(src),
        source_format=ckpt.format,
        destination=str(dst),
        to=to,
        tensors=len(tensors),
        bytes_written=sum(t.nbytes for t in tensors),
        files=names,
        seconds=time.perf_counter() - start,
        quantisation=[
            {"tensor": q.name, "relative_error": q.relative, "max_abs_error": q.max_abs}
            for q in quant
        ],
    )


def _counted(
    pieces: Iterator[np.ndarray], progress: Callable[[int], None] | None
) -> Iterator[np.ndarray]:
    for piece in pieces:
        yield piece
        if progress is not None:
            progress(piece.nbytes)


def _index(shards: list[list[OutTensor]], names: list[str]) -> dict[str, Any]:
    weight_map = {t.spec.name: name for shard, name in zip(shards, names) for t in shard}
    total = sum(t.nbytes for shard in shards for t in shard)
    return {"metadata": {"total_size": total}, "weight_map": weight_map}


def _config(ckpt: Checkpoint, to: str, experts: str | None, tensors: list[OutTensor]) -> dict:
    if to == "canonical":
        data = ckpt.config.to_dict()
        if ckpt.tokenizer is not None:
            data["tokenizer"] = ckpt.tokenizer
        return data
    dense = [t.spec.dtype for t in tensors if t.spec.name.endswith(".q_proj.weight")]
    dtype = {"BF16": "bfloat16", "F16": "float16"}.get(dense[0] if dense else "", "float32")
    has_mxfp4 = any(t.spec.name.endswith("_blocks") for t in tensors)
    return hf_config(ckpt.config, dtype=dtype, mxfp4=has_mxfp4, tokenizer=ckpt.tokenizer)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _parse_size(text: str) -> int:
    units = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10}
    units |= {"MIB": 2**20, "GIB": 2**30, "TB": 10**12}
    s = text.strip().upper()
    number = s.rstrip("KMGTIB")
    unit = s[len(number) :]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in units or value < 0:
        raise click.BadParameter(f"{text!r}: expected a size like 5GB, 500MB or 0 (one file)")
    return int(value * units[unit])


@click.command("convert")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("dst", type=click.Path(file_okay=False))
@click.option("--to", "to", type=click.Choice(TARGETS), required=True, help="Layout to write.")
@click.option(
    "--experts",
    type=click.Choice(EXPERT_STORAGES),
    help="Expert weight storage (default: keep the source's). mxfp4 quantises and reports the "
    "error; bf16 dequantises MXFP4 exactly.",
)
@click.option(
    "--max-shard-size",
    default="5GB",
    show_default=True,
    help="Split the output into shards (with model.safetensors.index.json); 0 = one file.",
)
@click.option("--overwrite", is_flag=True, help="Write into a non-empty destination.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report, no progress bar.")
def convert_command(
    src: str,
    dst: str,
    to: str,
    experts: str | None,
    max_shard_size: str,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Convert checkpoint SRC (any readable layout) to layout --to in directory DST.

    Tensors stream one piece at a time, so memory stays near one tensor of the
    source whatever the model's size. Never unpickles anything.

    \b
    Examples:
      mind4 convert ./gpt-oss-20b ./gpt-oss-20b-hf --to hf
      mind4 convert ./hf-download ./mine --to canonical --experts mxfp4
      mind4 convert ./mine ./mine-bf16 --to canonical --experts bf16
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    shard_bytes = _parse_size(max_shard_size)
    console = Console(stderr=True)
    columns = (
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns, console=console, disable=as_json)
    task = bar.add_task(f"converting to {to}", total=None)

    def start(total: int) -> None:  # the source opened and was validated: show the bar
        bar.update(task, total=total)
        bar.start()

    try:
        report = convert_checkpoint(
            src,
            dst,
            to=to,
            experts=experts,
            max_shard_bytes=shard_bytes,
            overwrite=overwrite,
            progress=lambda n: bar.advance(task, n),
            on_start=start,
        )
    finally:
        if bar.live.is_started:
            bar.stop()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    out = Console()
    out.print(
        f"wrote {report.destination} ({report.to} layout from {report.source_format}): "
        f"{report.tensors} tensors, {report.bytes_written / 1e9:.3f} GB in "
        f"{len(report.files)} file(s), {report.seconds:.1f} s"
    )
    if report.quantisation:
        from rich.table import Table

        table = Table(title="MXFP4 quantisation error (‖w − q(w)‖ / ‖w‖)")
        table.add_column("tensor")
        table.add_column("relative error", justify="right")
        table.add_column("max |error|", justify="right")
        for row in report.quantisation:
            table.add_row(
                row["tensor"], f"{row['relative_error']:.4f}", f"{row['max_abs_error']:.3g}"
            )
        out.print(table)
        worst = max(report.quantisation, key=lambda r: r["relative_error"])
        out.print(f"worst relative error: {worst['relative_error']:.4f} ({worst['tensor']})")


# ----------------------------------------------------------------------------- inspect


def decode_bytes_per_token(ckpt: Checkpoint) -> int:
    """Weight bytes read to decode one token: all dense weights, one embedding row, and
    ``experts_per_token`` of ``num_experts`` experts in every layer (KV cache excluded)."""
    cfg = ckpt.config
    total = 0.0
    for name in ckpt.names():
        nbytes = ckpt.nbytes(name)
        if name == "embedding.weight":
            nbytes /= cfg.vocab_size
        elif ".mlp.mlp" in name:
            nbytes *= cfg.experts_per_token / cfg.num_experts
        total += nbytes
    return int(round(total))


def describe_checkpoint(ckpt: Checkpoint) -> dict[str, Any]:
    """Everything ``mind4 inspect-checkpoint`` shows, as plain data."""
    from .presets import parameter_count

    cfg = ckpt.config
    source = getattr(ckpt, "source", None)
    tensors = []
    for name in ckpt.names():
        row = {
            "name": name,
            "dtype": ckpt.dtype(name),
            "shape": list(ckpt.shape(name)),
            "bytes": ckpt.nbytes(name),
        }
        if source is not None:
            row["stored_as"] = source(name)
        tensors.append(row)
    expert_dtypes = sorted({ckpt.dtype(n) for n in ckpt.names() if n.endswith(EXPERT_SUFFIXES)})
    kv_elements = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim
    return {
        "path": str(ckpt.path),
        "format": ckpt.format,
        "tokenizer": ckpt.tokenizer,
        "config": cfg.to_dict(),
        "experts": "/".join(expert_dtypes),
        "parameters": parameter_count(cfg),
        "active_parameters_per_token": parameter_count(cfg, active=True),
        "bytes": sum(t["bytes"] for t in tensors),
        "decode_bytes_per_token": decode_bytes_per_token(ckpt),
        "kv_cache_bytes_per_token": {"bfloat16": kv_elements * 2, "float32": kv_elements * 4},
        "tensors": tensors,
    }


def _human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.4g}{unit}"
        n /= 1000
    return f"{n:.4g}P"


@click.command("inspect-checkpoint")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect_command(directory: str, as_json: bool) -> None:
    """Describe the checkpoint in DIRECTORY: layout, config, sizes and every tensor.

    \b
    Examples:
      mind4 inspect-checkpoint ./gpt-oss-20b
      mind4 inspect-checkpoint ./hf-model --json | jq .decode_bytes_per_token
    """
    ckpt = open_checkpoint(directory)
    try:
        info = describe_checkpoint(ckpt)
    finally:
        ckpt.close()
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{info['path']}[/bold]: format [bold]{info['format']}[/bold], "
        f"experts {info['experts']}, tokenizer {info['tokenizer'] or '-'}"
    )
    summary = Table(show_header=False, box=None)
    summary.add_column(style="dim")
    summary.add_column()
    summary.add_row("parameters", f"{_human(info['parameters'])} ({info['parameters']:,})")
    active = info["active_parameters_per_token"]
    summary.add_row("active per token", f"{_human(active)} ({active:,})")
    summary.add_row("weights", f"{_human(info['bytes'])}B")
    summary.add_row("read per decoded token", f"{_human(info['decode_bytes_per_token'])}B")
    kv = info["kv_cache_bytes_per_token"]["bfloat16"]
    summary.add_row("KV cache per token (bf16)", f"{_human(kv)}B")
    for key, value in info["config"].items():
        summary.add_row(key, str(value))
    console.print(summary)
    table = Table(title=f"{len(info['tensors'])} tensors")
    table.add_column("name")
    table.add_column("dtype")
    table.add_column("shape")
    table.add_column("bytes", justify="right")
    stored = any("stored_as" in t for t in info["tensors"])
    if stored:
        table.add_column("stored as")
    for t in info["tensors"]:
        row = [t["name"], t["dtype"], str(t["shape"]), _human(t["bytes"])]
        if stored:
            row.append(t.get("stored_as", ""))
        table.add_row(*row)
    console.print(table)
