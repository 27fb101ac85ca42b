"""Where runs compute: `device:` and `precision:` (retain/models/device.py), their one-line errors, and the GPU
checks (marked `gpu`: `make test-gpu` on a machine with CUDA)."""

import json
from pathlib import Path

import pytest
import torch

from retain.cli.main import main as cli
from retain.config import load_config
from retain.errors import RetainError
from retain.models import device as D

ROOT = Path(__file__).resolve().parents[1]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")
gpu = pytest.mark.gpu


@pytest.fixture
def one_gpu(monkeypatch):
    """This machine as if it had one CUDA GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_device_names_resolve_on_this_machine(one_gpu):
    assert D.resolve_device("cpu") == torch.device("cpu")
    assert D.resolve_device("auto") == torch.device("cuda:0")
    assert D.resolve_device("CUDA") == torch.device("cuda:0") and D.resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(RetainError, match=r"device: cuda:3 asked for, but this machine has 1 CUDA GPU\(s\)"):
        D.resolve_device("cuda:3")
    for bad in ("tpu", "cuda:x", "gpu"):
        with pytest.raises(RetainError, match="is not a device; use auto, cpu, cuda or cuda:N"):
            D.resolve_device(bad)


def test_under_torchrun_auto_and_cuda_are_the_ranks_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")  # as torchrun sets it for the second process of a node
    assert D.resolve_device("auto") == D.resolve_device("cuda") == torch.device("cuda:1")
    assert D.resolve_device("cuda:0") == torch.device("cuda:0")  # a device named outright is kept


@no_cuda
def test_cuda_without_a_gpu_is_refused_and_auto_is_the_cpu():
    assert D.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RetainError, match="no CUDA GPU; set device: cpu or auto"):
        D.resolve_device("cuda")


def test_bf16_asked_for_where_it_would_be_emulated_is_refused(monkeypatch):
    monkeypatch.setattr(D, "bf16_is_native", lambda device: False)
    with pytest.raises(RetainError, match="precision: bf16 asked for, but cpu has no bf16 hardware"):
        D.configure("cpu", "bf16")
    with pytest.raises(RetainError, match="precision: 'half' is not one of auto, fp32, bf16"):
        D.configure("cpu", "half")
    monkeypatch.setattr(D, "bf16_is_native", lambda device: True)
    D.configure("cpu", "bf16")
    with D.autocast("cpu"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_models_are_built_on_the_run_device_and_batches_moved_to_them(plain_base):
    from retain.models.build import load_model_and_tokenizer

    D.configure("cpu", "fp32")
    model, _ = load_model_and_tokenizer(plain_base)
    assert D.device_of(model) == D.device() == torch.device("cpu")
    ids, mask = D.to_model(model, torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))
    assert ids.device == mask.device == D.device_of(model)


@no_cuda
@pytest.mark.parametrize("command", [
    ["run", "configs/smoke/continual.yaml", "--set", "device=cuda"],
    ["rl", "configs/smoke/rl.yaml", "--set", "device=cuda:3"],
    ["pretrain", "configs/smoke/pretrain.yaml", "--set", "device=cuda"],
])  # fmt: skip
def test_a_device_this_machine_lacks_is_one_line_before_the_run_dir(command, tmp_path, capsys, monkeypatch, smoke_base):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "run"
    assert (
        cli([*command, "--set", f"base={smoke_base}" if command[0] != "pretrain" else "name=x", "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA GPU; set device: cpu or auto" in err[0]
    assert not out.exists()


# --- on a CUDA machine (`make test-gpu`) ---


def _smoke_run(smoke_base, out, device):
    from retain.continual.loop import ContinualConfig, continual

    cfg = load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml",
                      [f"base={smoke_base}", f"device={device}", "precision=fp32"])  # fmt: skip
    return continual(cfg, out=out)


@gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_continual_loop_runs_on_the_gpu_as_on_the_cpu(smoke_base, tmp_path):
    """Every medium of the smoke config (context, LoRA SFT and distill, full, soft prompt, KV prefix) on cuda in
    fp32 answers as on the CPU, up to the few greedy ties float order can flip."""
    cpu = _smoke_run(smoke_base, tmp_path / "cpu", "cpu")
    gpu = _smoke_run(smoke_base, tmp_path / "gpu", "cuda")
    for name, m in cpu["media"].items():
        assert abs(gpu["media"][name]["acc"] - m["acc"]) <= 0.1, name
        assert abs(gpu["media"][name]["base_acc"] - m["base_acc"]) <= 0.1, name


@gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_pretraining_and_rl_run_on_the_gpu(tmp_path, smoke_base):
    from retain.rl.run import RLConfig, rl
    from retain.train.pretrain import PretrainConfig, pretrain

    p = pretrain(load_config(PretrainConfig, ROOT / "configs" / "smoke" / "pretrain.yaml", ["device=cuda"]),
                 out=tmp_path / "base")  # fmt: skip
    assert p["closed_book_acc"] >= 0.0 and (tmp_path / "base" / "model" / "model.safetensors").exists()
    s = rl(load_config(RLConfig, ROOT / "configs" / "smoke" / "rl.yaml",
                       [f"base={smoke_base}", "device=cuda", "iterations=1"]), out=tmp_path / "rl")  # fmt: skip
    assert 0.0 <= s["heldout_after"] <= 1.0
    assert json.loads((tmp_path / "rl" / "summary.json").read_text())["episodes"] > 0
