"""mind4-torch: the PyTorch backend of Mind 4.

- :mod:`mind4_torch.model` -- the gpt-oss architecture as ``nn.Module`` s (trainable);
- :mod:`mind4_torch.attention`, :mod:`mind4_torch.moe`, :mod:`mind4_torch.sampler` --
  the components the core can select by name (``torch``);
- :mod:`mind4_torch.runtime` -- the backend factory: checkpoint -> model on a device;
- :mod:`mind4_torch.plugin` -- the hook implementations (imports no torch).

Importing this package does not import torch; its modules do.
"""

__version__ = "0.1.0"
