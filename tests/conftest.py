"""Shared fixtures. Run the fast suite with `make test` (or `pytest -q`); slow checks with `make test-slow`."""

import os

import pytest

os.environ.setdefault("RETAIN_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Tests may change torch's global dtype or thread count; put them back."""
    import torch

    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)
