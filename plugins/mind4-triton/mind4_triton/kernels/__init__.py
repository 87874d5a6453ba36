"""Triton kernels, one module per idea. Importing this package imports torch and triton."""
