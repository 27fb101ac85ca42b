"""Shared fixtures. Run the fast suite with `make test` (or `pytest -q`); slow checks with `make test-slow`."""

import os

import pytest

os.environ.setdefault("RETAIN_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Tests may change torch's global dtype or thread count; put them back. They compute in fp32 (exact, and
    the same on a CPU with bf16 hardware and one without); a test of the bf16 path sets it itself."""
    import torch

    from retain.models.precision import set_precision

    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    set_precision("fp32")
    yield
    set_precision("fp32")
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_base(tmp_path_factory):
    """A base run (model/ and world/) from the seconds-long smoke pretraining config, shared by the tests."""
    from pathlib import Path

    from retain.config import load_config
    from retain.train.pretrain import PretrainConfig, pretrain

    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("smoke") / "base"
    pretrain(load_config(PretrainConfig, root / "configs" / "smoke" / "pretrain.yaml"), out=out)
    return out
