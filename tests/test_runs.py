"""Run directories, atomic writes and checkpoints. `pytest tests/test_runs.py`"""

import os
import random

import numpy as np
import pytest
import torch

from retain.errors import RetainError
from retain.runs.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    pack_optimizer,
    pack_rng,
    save_checkpoint,
    unpack_optimizer,
    unpack_rng,
)
from retain.runs.files import atomic_write_text
from retain.runs.rundir import RunDir
from retain.runs.seed import derive_seed


def test_atomic_write_keeps_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    atomic_write_text(path, "old")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]  # temp file cleaned up


def test_rundir_layout(tmp_path):
    run = RunDir.create("demo", root=tmp_path)
    assert run.path.parent == tmp_path and run.path.name.startswith("demo-")
    assert RunDir.create("demo", root=tmp_path).path != run.path
    for step in range(5):
        run.log({"step": step, "train/loss": 1.0 / (step + 1)})
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "train/lo')  # a torn line from a killed process
    assert [r["step"] for r in run.metrics()] == [0, 1, 2, 3, 4]
    run.truncate_metrics(2)
    assert [r["step"] for r in run.metrics()] == [0, 1, 2]
    run.write_summary({"acc": 0.5})
    assert run.summary() == {"acc": 0.5}


def test_checkpoint_roundtrip_with_optimizer_rng_and_tied_weights(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight  # tied
    opt = torch.optim.AdamW(model.parameters(), lr=0.1, betas=(0.9, 0.95))
    for _ in range(3):
        opt.zero_grad()
        model(torch.tensor([1, 2, 3])).sum().backward()
        opt.step()
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    o_t, o_m = pack_optimizer(opt)
    r_t, r_m = pack_rng()
    save_checkpoint(tmp_path, 3, {**tensors, **o_t, **r_t}, {"optim": o_m, "rng": r_m, "loop": {"best": 1.5}})
    expected = (torch.rand(3).tolist(), float(np.random.rand()), random.random())

    for step in (4, 5, 6):
        save_checkpoint(tmp_path, step, tensors, {}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-0000005.safetensors", "step-0000006.safetensors"]
    assert latest_checkpoint(tmp_path).name == "step-0000006.safetensors"
    save_checkpoint(tmp_path / "a", 3, {**tensors, **o_t, **r_t}, {"optim": o_m, "rng": r_m, "loop": {"best": 1.5}})

    t, meta = load_checkpoint(tmp_path / "a" / "step-0000003.safetensors")
    assert meta["step"] == 3 and meta["loop"] == {"best": 1.5}
    assert t["model.0.weight"] is t["model.1.weight"]
    model2 = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False))
    model2[1].weight = model2[0].weight
    model2.load_state_dict({k.removeprefix("model."): v for k, v in t.items() if k.startswith("model.")})
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.1, betas=(0.9, 0.95))
    unpack_optimizer(opt2, t, meta["optim"])
    unpack_rng(t, meta["rng"])
    assert (torch.rand(3).tolist(), float(np.random.rand()), random.random()) == expected
    # the next optimizer step is identical
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(torch.tensor([4, 5])).sum().backward()
        o.step()
    assert torch.equal(model[0].weight, model2[0].weight)


def test_rng_restore_draws_same_numbers(tmp_path):
    t, m = pack_rng()
    save_checkpoint(tmp_path, 0, t, {"rng": m})
    first = (torch.rand(4).tolist(), float(np.random.rand()), random.random())
    tt, mm = load_checkpoint(latest_checkpoint(tmp_path))
    unpack_rng(tt, mm["rng"])
    assert (torch.rand(4).tolist(), float(np.random.rand()), random.random()) == first


def test_corrupt_checkpoint_is_one_line_error(tmp_path):
    path = tmp_path / "step-0000001.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(RetainError, match="corrupt or not a safetensors file"):
        load_checkpoint(path)
    with pytest.raises(RetainError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_derive_seed_is_stable():
    assert derive_seed(1, "a", 3) == derive_seed(1, "a", 3) != derive_seed(1, "a", 4)
    assert 0 <= derive_seed(0) < 2**63
    assert len({derive_seed(s, step) for s in range(10) for step in range(100)}) == 1000


def test_atomic_writes_keep_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        assert atomic_write_text(tmp_path / "a.json", "{}").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        assert atomic_write_text(tmp_path / "b.json", "{}").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
