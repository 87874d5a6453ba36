"""``mind4 train``: the command mind4-torch contributes through ``mind4_cli_commands``.

Importing this module does not import torch; running the command does.
"""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_CONFIG = Path("config") / "train.yaml"


@click.command(
    "train",
    epilog="""\b
Examples:
  mind4 train                                   config/train.yaml if present, else the defaults
  mind4 train my.yaml --set training.max_steps=200 --set checkpoint.out_dir=runs/try
  mind4 train my.yaml --resume                  continue the run in checkpoint.out_dir
  torchrun --nproc-per-node 4 -m mind4_core.cli train my.yaml     DDP on 4 GPUs
""",
)
@click.argument("config", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--resume", is_flag=True, help="Continue from <out_dir>/checkpoint.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override one config field (repeatable); the value is read as YAML.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar or progress lines.")
@click.option("--check", is_flag=True, help="Validate the config, print it, and exit.")
def train_command(
    config: Path | None, resume: bool, overrides: tuple[str, ...], no_progress: bool, check: bool
) -> int:
    """Train a gpt-oss-architecture model from a YAML config.

    Without CONFIG, uses config/train.yaml when it exists, else the built-in
    defaults (the recipe of the embedded default model). Writes checkpoint/
    (float32 + optimiser state), model/ (compact export), log.csv, log.jsonl
    and loss.png into checkpoint.out_dir. Ctrl-C saves a checkpoint and exits.
    """
    from .config import load_config

    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    cfg = load_config(config, list(overrides))
    if check:
        import yaml

        click.echo(f"# {cfg.source}: valid")
        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False), nl=False)
        return 0

    from .loop import Trainer

    result = Trainer(cfg, resume=resume, progress=False if no_progress else None).run()
    if result.interrupted:
        raise SystemExit(130)
    return 0
