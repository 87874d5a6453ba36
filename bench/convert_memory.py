"""Peak resident memory of ``mind4 convert`` on a big preset (the bar: under 3 GiB).

Writes a random checkpoint of the preset, converts it canonical -> hf ->
canonical, checks the round trip is byte-identical, and prints the wall time
and the peak RSS (``ru_maxrss`` of each child process: anonymous memory plus
the file pages it has mapped) of every step. Everything it writes is deleted.

    python bench/convert_memory.py --preset gpt-oss-20b --workdir /tmp/convert-bench
    python bench/convert_memory.py --preset small --json

gpt-oss-20b needs ~13 GB of disk per copy (two at a time) and a few minutes.
``--layers N`` keeps the preset's tensor shapes with N layers (peak memory
depends on the largest tensor, not the depth); with ``--experts bf16`` it also
measures quantising the experts to MXFP4 and dequantising them back:

    python bench/convert_memory.py --preset gpt-oss-20b --layers 2 --experts bf16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

CLI = "import sys; from mind4_core.cli import main; sys.exit(main())"
INIT = """
import sys, attrs
from mind4_core.presets import PRESET_TOKENIZERS, get_preset, init_checkpoint
preset, layers, out, experts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
cfg = attrs.evolve(get_preset(preset), num_hidden_layers=layers)
init_checkpoint(cfg, out, experts=experts, tokenizer=PRESET_TOKENIZERS.get(preset))
"""


def run(step: str, argv: list[str], script: str = CLI) -> dict:
    """Run ``mind4 ARGV`` (or ``script ARGV``) in a child; its wall time and peak RSS."""
    cmd = [sys.executable, "-c", script]
    if argv[:1] == ["convert"]:
        argv = [*argv, "--json"]  # no progress bar
    start = time.perf_counter()
    child = subprocess.Popen([*cmd, *argv], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"step {step!r} failed: mind4 {' '.join(argv)}")
    # ru_maxrss: KiB on Linux, bytes on macOS
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"step": step, "seconds": round(seconds, 1), "peak_rss_gib": round(peak / 2**30, 3)}


def cmp(x: Path, y: Path) -> bool:
    return subprocess.run(["cmp", "-s", str(x), str(y)]).returncode == 0


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="gpt-oss-20b")
    parser.add_argument("--workdir", default="/tmp/mind4-convert-bench")
    parser.add_argument("--experts", default="mxfp4", choices=["mxfp4", "bf16"])
    parser.add_argument("--layers", type=int, help="keep the preset's shapes with N layers")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    a, b, c = work / "canonical", work / "hf", work / "canonical-again"
    rows = []
    try:
        if args.layers:
            init = [args.preset, str(args.layers), str(a), args.experts]
            rows.append(run(f"init ({args.layers} layers)", init, INIT))
        else:
            init = ["init", "--preset", args.preset, "--out", str(a), "--experts", args.experts]
            rows.append(run("init (canonical)", init))
        gb = size(a) / 1e9
        rows.append(run("convert canonical -> hf", ["convert", str(a), str(b), "--to", "hf"]))
        back = ["convert", str(b), str(c), "--to", "canonical", "--max-shard-size", "0"]
        rows.append(run("convert hf -> canonical", back))
        same = cmp(a / "model.safetensors", c / "model.safetensors")
        shutil.rmtree(b)
        shutil.rmtree(c)
        if args.experts == "bf16":
            quantise = ["convert", str(a), str(b), "--to", "hf", "--experts", "mxfp4"]
            rows.append(run("quantise -> hf, mxfp4", quantise))
            dequantise = ["convert", str(b), str(c), "--to", "canonical", "--experts", "bf16"]
            rows.append(run("dequantise -> canonical, bf16", dequantise))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "preset": args.preset + (f" ({args.layers} layers)" if args.layers else ""),
        "experts": args.experts,
        "checkpoint_gb": round(gb, 2),
        "round_trip_byte_identical": same,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "steps": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.preset} ({args.experts} experts, {gb:.2f} GB), {report['machine']}")
    for row in rows:
        print(
            f"  {row['step']:<26} {row['seconds']:>7.1f} s   peak RSS {row['peak_rss_gib']:.3f} GiB"
        )
    print(f"  round trip byte-identical: {same}")


if __name__ == "__main__":
    main()
