"""Compile the prefill MoE tile kernels for an H100 (sm_90) on a machine without a GPU
and print what the K loop costs: registers, spills, shared memory and the instruction
mix of the loop body in SASS. Triton's wheel carries ptxas, cuobjdump and nvdisasm.

    python plugins/mind4-triton/scripts/sass_moe.py
    python plugins/mind4-triton/scripts/sass_moe.py "128, 64, 64, 128, 64, 8, 3, words=True"

The argument is an ``ExpertConfig(...)`` (default: ``TUNED["prefill"]``). Arguments are
specialised as the launcher does at gpt-oss-20b's shapes (pointers and integers that are
multiples of 16 get ``tt.divisibility = 16``; the scale row stride, 90, does not), so
the code is the code the GPU runs — for the triton version installed here (the GPU
machine has 3.6; another version may schedule differently).
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from mind4_triton.kernels import moe  # noqa: E402

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"

# argument types of the two kernels, in order
MLP1 = {"X": "*bf16", "SortedPairs": "*i32", "BlockExpert": "*i32", "NumBlocks": "*i32",
        "W": "*u8", "S": "*u8", "Bias": "*fp32", "Act": "*bf16", "stride_x": "i32",
        "stride_we": "i64", "stride_wr": "i32", "stride_se": "i32", "stride_sr": "i32",
        "stride_be": "i32", "stride_act": "i32", "NK": "i32", "H": "i32", "I": "i32",
        "limit": "fp32"}  # fmt: skip
MLP2 = {"Act": "*bf16", "SortedPairs": "*i32", "BlockExpert": "*i32", "NumBlocks": "*i32",
        "W": "*u8", "S": "*u8", "Bias": "*fp32", "Gates": "*fp32", "Y": "*bf16",
        "stride_act": "i32", "stride_we": "i64", "stride_wr": "i32", "stride_se": "i32",
        "stride_sr": "i32", "stride_be": "i32", "stride_y": "i32", "NK": "i32", "H": "i32",
        "I": "i32"}  # fmt: skip
NOT_DIVISIBLE = {"stride_sr"}  # 2880 / 32 = 90 scale bytes per row


def compile_kernel(kernel, types: dict, cfg: moe.ExpertConfig, block_n: int, block_k: int):
    constants = dict(
        MXFP4=True, FP16_GROUPS=False, F32_CODES=cfg.f32_codes, WORDS=cfg.words,
        SMALL_SCALES=True, EVEN=True, BLOCK_M=cfg.block_m,
        BLOCK_N=block_n, BLOCK_K=block_k, DOT_PRECISION="tf32",
    )  # fmt: skip
    if "TOPK" in kernel.arg_names:
        constants["TOPK"] = 4
    signature = dict(types) | {name: "constexpr" for name in constants}
    attrs = {
        (i,): [["tt.divisibility", 16]]
        for i, (name, t) in enumerate(signature.items())
        if t not in ("constexpr", "fp32") and name not in NOT_DIVISIBLE
    }
    source = ASTSource(fn=kernel, signature=signature, constexprs=constants, attrs=attrs)
    options = dict(num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)


def loop_mix(sass: str) -> tuple[int, collections.Counter]:
    """Instructions of the longest loop (a label to the backward branch that returns to it)."""
    lines, labels, best = sass.splitlines(), {}, (0, -1)
    for i, line in enumerate(lines):
        if m := re.match(r"(\.L_x_\d+):", line.strip()):
            labels[m.group(1)] = i
        if (m := re.search(r"BRA\s+`\((\.L_x_\d+)\)", line)) and m.group(1) in labels:
            if i - labels[m.group(1)] > best[1] - best[0]:
                best = (labels[m.group(1)], i)
    body = [re.search(r"\*/\s+(.*?)\s*;", line) for line in lines[best[0] : best[1] + 1]]
    ops = [re.sub(r"^@!?U?P\w+\s+", "", m.group(1)).split()[0].split(".")[0] for m in body if m]
    return len(ops), collections.Counter(ops)


def main() -> None:
    cfg = eval(f"moe.ExpertConfig({sys.argv[1]})") if len(sys.argv) > 1 else moe.TUNED["prefill"]
    print(cfg)
    for name, kernel, types, bn, bk in (
        ("mlp1", moe._moe_mlp1_kernel, MLP1, cfg.block_n1, cfg.block_k1),
        ("mlp2", moe._moe_mlp2_kernel, MLP2, cfg.block_n2, cfg.block_k2),
    ):
        compiled = compile_kernel(kernel, types, cfg, bn, bk)
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(compiled.asm["cubin"])
            f.flush()
            usage = subprocess.run(
                [BIN / "cuobjdump", "--dump-resource-usage", f.name], capture_output=True, text=True
            ).stdout
            sass = subprocess.run([BIN / "nvdisasm", "-c", f.name], capture_output=True, text=True)
        resources = " ".join(re.findall(r"(REG:\d+|STACK:\d+|LOCAL:\d+)", usage))
        count, mix = loop_mix(sass.stdout)
        print(f"{name}: {resources}, shared {compiled.metadata.shared} B; K loop {count} instrs")
        print("   ", ", ".join(f"{op} {n}" for op, n in mix.most_common(16)))


if __name__ == "__main__":
    main()
