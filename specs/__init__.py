"""Mind 4 conformance specs: a NumPy float64 oracle and pytest specs for backends.

Run them against an installed backend::

    python -m mind4_specs --backend torch
    pytest --pyargs mind4_specs --mind4-backend torch     # the same, plain pytest

:mod:`mind4_specs.oracle` is the reference every backend is compared to.
"""
