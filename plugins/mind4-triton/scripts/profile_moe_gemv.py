"""Launch the batch-1 expert GEMV kernels a few times at gpt-oss-20b's shapes, for a
profiler to attach to (Nsight Compute)::

    ncu -k regex:_moe_mlp1_gemv --launch-skip 2 --launch-count 1 \\
        --section SpeedOfLight --section WarpStateStats \\
        python3 plugins/mind4-triton/scripts/profile_moe_gemv.py
"""

import torch

from mind4_core.presets import get_preset
from mind4_triton.kernels import moe

cfg = get_preset("gpt-oss-20b")
H, I, E, k = cfg.hidden_size, cfg.intermediate_size, cfg.num_experts, cfg.experts_per_token
g = torch.Generator(device="cuda").manual_seed(0)


def packed(rows, cols):
    blocks = torch.randint(0, 256, (E, rows, cols // 32, 16), generator=g, device="cuda")
    return moe.MXFP4Weight(
        blocks.to(torch.uint8),
        torch.full((E, rows, cols // 32), 119, device="cuda").to(torch.uint8),
    )


w1, w2 = packed(2 * I, H), packed(H, I)
b1, b2 = torch.randn(E, 2 * I, device="cuda"), torch.randn(E, H, device="cuda")
x = torch.randn(1, H, device="cuda", dtype=torch.bfloat16)
gates = torch.softmax(torch.randn(1, k, device="cuda"), -1)
for _ in range(5):
    idx = torch.randperm(E, device="cuda")[:k].view(1, k).to(torch.int32)
    moe.expert_rows(x, idx, gates, w1, b1, w2, b2, 7.0, moe.TUNED["gemv"])
torch.cuda.synchronize()
print("config", moe.TUNED["gemv"])
