"""The ``torch-tp`` backend record (tensor parallelism, :mod:`mind4_torch.parallel`)
and a launcher that works before the record is registered by the torch plugin.

This module imports no torch (records name their factories as strings).

    torchrun --nproc-per-node 2 -m mind4_torch.parallel_plugin run -c CKPT -t 0 "Hello"

is ``mind4 run --backend torch-tp ...`` in every process (``--backend`` may be
given to override). Once ``mind4_torch.plugin`` returns :data:`TP_BACKEND` from
its ``mind4_backends`` hook, ``torchrun ... -m mind4_core.cli run --backend torch-tp``
does the same.
"""

from __future__ import annotations

import sys

from mind4_core import hookimpl
from mind4_core.records import BackendRecord

MIND4_PLUGIN_API = 1

TP_BACKEND = BackendRecord(
    name="torch-tp",
    factory="mind4_torch.parallel:factory",
    priority=0,
    devices={"cpu", "cuda"},
    dtypes={"float32", "bfloat16", "float16"},
    features={"kv_cache", "batched_offsets", "mxfp4", "tensor_parallel"},
    components={"attention": "torch", "moe_routing": "torch", "sampler": "torch"},
    default_dtype={"cpu": "float32", "cuda": "bfloat16"},
    tolerances={"float32": 1e-5, "bfloat16": 3e-2, "float16": 5e-3},
    availability="mind4_torch.plugin:availability",
    description=(
        "the torch backend split over torchrun processes: attention heads and expert "
        "intermediate units per rank, NCCL on GPUs, gloo on CPUs"
    ),
)


@hookimpl
def mind4_backends():
    return [TP_BACKEND]


def ensure_registered() -> None:
    """Register this module as a plugin unless a ``torch-tp`` backend already exists."""
    from mind4_core.plugins import get_manager

    manager = get_manager()
    if "torch-tp" not in manager.names("backend"):
        manager.register(sys.modules[__name__], "torch-tp")


def main(argv: list[str] | None = None) -> int:
    """``mind4 ...`` with the ``torch-tp`` backend registered and chosen for ``run``/``chat``."""
    from mind4_core import cli

    args = list(sys.argv[1:] if argv is None else argv)
    ensure_registered()
    if (
        args
        and args[0] in ("run", "chat")
        and not any(a in ("--backend", "-b") or a.startswith("--backend=") for a in args)
    ):
        args[1:1] = ["--backend", "torch-tp"]
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
