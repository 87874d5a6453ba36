"""Launch the expert kernels a few times at gpt-oss-20b's shapes, for a profiler to
attach to (Nsight Compute). Batch-1 decode (the GEMV kernels)::

    ncu -k regex:_moe_mlp1_gemv --launch-skip 2 --launch-count 1 \\
        --section SpeedOfLight --section WarpStateStats \\
        python3 plugins/mind4-triton/scripts/profile_moe.py

or a prefill of ``--tokens 2048`` (the tile kernels, ``-k regex:_moe_mlp1_kernel``).
"""

import argparse

import torch

from mind4_core.presets import get_preset
from mind4_triton.kernels import moe

parser = argparse.ArgumentParser()
parser.add_argument("--tokens", type=int, default=1)
N = parser.parse_args().tokens

cfg = get_preset("gpt-oss-20b")
H, I, E, k = cfg.hidden_size, cfg.intermediate_size, cfg.num_experts, cfg.experts_per_token
g = torch.Generator(device="cuda").manual_seed(0)


def packed(rows, cols):
    blocks = torch.randint(0, 256, (E, rows, cols // 32, 16), generator=g, device="cuda")
    return moe.MXFP4Weight.of(
        blocks.to(torch.uint8),
        torch.full((E, rows, cols // 32), 119, device="cuda").to(torch.uint8),
    )


w1, w2 = packed(2 * I, H), packed(H, I)
b1, b2 = torch.randn(E, 2 * I, device="cuda"), torch.randn(E, H, device="cuda")
x = torch.randn(N, H, device="cuda", dtype=torch.bfloat16)
gates = torch.softmax(torch.randn(N, k, device="cuda"), -1)
expert_cfg = moe.expert_config(N * k)
for _ in range(5):
    idx = torch.stack([torch.randperm(E, device="cuda")[:k] for _ in range(N)]).to(torch.int32)
    moe.expert_rows(x, idx, gates, w1, b1, w2, b2, 7.0, expert_cfg)
torch.cuda.synchronize()
print("config", expert_cfg)
