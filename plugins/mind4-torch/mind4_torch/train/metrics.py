"""The run's log beside its checkpoints: ``log.csv``, ``log.jsonl`` and ``loss.png``.

One row per optimiser step (``kind = train``) and one per validation pass
(``kind = eval``). On ``--resume`` the rows after the checkpoint's step are
dropped, so the log of a resumed run reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

COLUMNS = (
    "kind",
    "step",
    "tokens",
    "lr",
    "loss",
    "aux_loss",
    "grad_norm",
    "val_loss",
    "val_bpb",
    "tokens_per_s",
    "elapsed_s",
)


class RunLog:
    """Rows of ``{column: value}`` kept in memory and appended to ``log.csv``/``log.jsonl``."""

    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.csv_path = self.out_dir / "log.csv"
        self.json_path = self.out_dir / "log.jsonl"
        self.png_path = self.out_dir / "loss.png"
        self.rows: list[dict[str, Any]] = []
        self.warned = False

    def start(self, resume_step: int | None) -> None:
        """Fresh run: empty log. Resume: keep the rows up to ``resume_step``."""
        self.rows = []
        if resume_step is not None and self.json_path.is_file():
            for line in self.json_path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill
                if row.get("step", math.inf) <= resume_step:
                    self.rows.append(row)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.csv_path.with_name("log.csv.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self.rows)
        os.replace(tmp, self.csv_path)
        tmp = self.json_path.with_name("log.jsonl.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.rows), encoding="utf-8")
        os.replace(tmp, self.json_path)

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        with open(self.csv_path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, COLUMNS, extrasaction="ignore").writerow(row)
        with open(self.json_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")

    def train_losses(self) -> list[float]:
        return [r["loss"] for r in self.rows if r["kind"] == "train"]

    def plot(self) -> Path | None:
        """Train loss (and its moving average), validation loss and bits per byte."""
        train = [r for r in self.rows if r["kind"] == "train"]
        evals = [r for r in self.rows if r["kind"] == "eval"]
        if not train and not evals:
            return None
        try:
            from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state
        except ImportError:
            if not self.warned:
                self.warned = True
                import warnings

                warnings.warn(
                    "matplotlib is not installed: no loss.png (pip install matplotlib)",
                    stacklevel=2,
                )
            return None

        fig = Figure(figsize=(9, 4.5), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
        if train:
            steps = [r["step"] for r in train]
            losses = [r["loss"] for r in train]
            ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="train")
            window = max(1, len(losses) // 50)
            if window > 1:
                smooth, total = [], 0.0
                for i, v in enumerate(losses):
                    total += v - (losses[i - window] if i >= window else 0.0)
                    smooth.append(total / min(i + 1, window))
                ax.plot(steps, smooth, color="tab:blue", label=f"train (mean of {window})")
        if evals:
            ax.plot(
                [r["step"] for r in evals],
                [r["val_loss"] for r in evals],
                "o-",
                color="tab:orange",
                label="validation",
            )
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
        if evals:
            ax2 = ax.twinx()
            ax2.plot(
                [r["step"] for r in evals],
                [r["val_bpb"] for r in evals],
                "s--",
                color="tab:green",
                markersize=3,
                label="validation bits/byte",
            )
            ax2.set_ylabel("validation bits per byte", color="tab:green")
            last = evals[-1]
            ax.set_title(
                f"step {last['step']}: val loss {last['val_loss']:.3f}, {last['val_bpb']:.3f} bits/byte"
            )
        fig.tight_layout()
        tmp = self.png_path.with_name("loss.tmp.png")
        fig.savefig(tmp)
        os.replace(tmp, self.png_path)
        return self.png_path
