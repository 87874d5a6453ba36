"""Make the repository root importable in tests (``tests.conftest`` factories)."""
