"""Peak resident memory of ``mind4 convert`` on a big preset (the bar: under 3 GiB).

Writes a random checkpoint of the preset, converts it canonical -> hf ->
canonical, checks the round trip is byte-identical, and prints the wall time
and the peak RSS (``ru_maxrss`` of each child process: anonymous memory plus
the file pages it has mapped) of every step. Everything it writes is deleted.

    python bench/convert_memory.py --preset gpt-oss-20b --workdir /tmp/convert-bench
    python bench/convert_memory.py --preset small --json

gpt-oss-20b needs ~13 GB of disk per copy (two at a time) and a few minutes.
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


def run(step: str, argv: list[str]) -> dict:
    """Run ``mind4 ARGV`` in a child; its wall time and peak RSS."""
    cmd = [sys.executable, "-c", "import sys; from mind4_core.cli import main; sys.exit(main())"]
    start = time.perf_counter()
    child = subprocess.Popen([*cmd, *argv], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"step {step!r} failed: mind4 {' '.join(argv)}")
    # ru_maxrss: KiB on Linux, bytes on macOS
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"step": step, "seconds": round(seconds, 1), "peak_rss_gib": round(peak / 2**30, 3)}


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="gpt-oss-20b")
    parser.add_argument("--workdir", default="/tmp/mind4-convert-bench")
    parser.add_argument("--experts", default="mxfp4", choices=["mxfp4", "bf16"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    a, b, c = work / "canonical", work / "hf", work / "canonical-again"
    rows = []
    try:
        init = ["init", "--preset", args.preset, "--out", str(a), "--experts", args.experts]
        rows.append(run("init (canonical)", init))
        gb = size(a) / 1e9
        rows.append(
            run("convert canonical -> hf", ["convert", str(a), str(b), "--to", "hf", "--json"])
        )
        convert_back = [
            "convert",
            str(b),
            str(c),
            "--to",
            "canonical",
            "--max-shard-size",
            "0",
            "--json",
        ]
        rows.append(run("convert hf -> canonical", convert_back))
        shutil.rmtree(b)
        same = (
            subprocess.run(
                ["cmp", "-s", str(a / "model.safetensors"), str(c / "model.safetensors")]
            ).returncode
            == 0
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = {
        "preset": args.preset,
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
