"""An example Mind 4 plugin: a min-p sampler.

It is the running example of ``docs/plugin-tutorial.md``: a third-party
distribution that adds one component through the ``mind4`` entry point and
passes the conformance specs (``python -m mind4_specs --backend torch
--sampler min_p``).
"""

__version__ = "0.1.0"
