"""``python -m mind4_torch.train [CONFIG] [--resume] ...``: the same as ``mind4 train``.

Handy under torchrun: ``torchrun --nproc-per-node 2 -m mind4_torch.train config/train.yaml``.
"""

from __future__ import annotations

import sys

from mind4_core.errors import Mind4Error

from .cli import train_command


def main() -> int:
    try:
        rv = train_command.main(prog_name="python -m mind4_torch.train", standalone_mode=False)
    except Mind4Error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:
        return int(exc.code or 0)
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
