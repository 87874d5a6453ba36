"""Training for Mind 4: ``mind4 train [config/train.yaml]``.

- :mod:`.config` -- the YAML schema, validated strictly (no torch);
- :mod:`.data` -- text -> memory-mapped token file -> train/validation batches (no torch);
- :mod:`.loop` -- AdamW + warm-up/cosine, accumulation, clipping, autocast, DDP;
- :mod:`.state` -- atomic checkpoints with the optimiser state, and the compact export;
- :mod:`.metrics` -- log.csv, log.jsonl and loss.png beside the checkpoints;
- :mod:`.cli` -- the click command the plugin registers.

Importing this package does not import torch.
"""
