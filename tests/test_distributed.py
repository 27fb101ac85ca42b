"""Data parallelism through torchrun (gloo on the CPU): two ranks take the steps one process takes on the
same global batch, rank 0 alone writes, a killed rank's run resumes to the same weights; the memory writes
of `retain run` split their batches the same way."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ddp_writes
import pytest
from safetensors.torch import load_file

from retain.cli.main import main
from retain.config import load_config
from retain.continual.loop import ContinualConfig, continual
from retain.train.pretrain import PretrainConfig, pretrain

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke" / "pretrain.yaml"
STEPS = ["train.bf16=false", "train.threads=1", "train.log_every=1", "eval.during_n=2", "eval.final_n=4"]


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RETAIN_PROGRESS": "0"}


def torchrun(out: Path, *sets: str, resume: bool = False, wait: bool = True) -> subprocess.Popen:
    cmd = [*TORCHRUN, "-m", "retain", "pretrain", "--out", str(out)]
    cmd += ["--resume"] if resume else [str(SMOKE), *[a for s in sets for a in ("--set", s)]]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        proc.output = proc.communicate(timeout=300)[0]
    return proc


def losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["train/loss"] for r in map(json.loads, lines) if "train/loss" in r]


def test_two_ranks_take_the_steps_of_one_process_on_the_same_global_batch(tmp_path):
    sets = [*STEPS, "train.steps=20", "train.eval_every=20", "train.ckpt_every=20"]
    proc = torchrun(tmp_path / "two", *sets, wait=False)  # the ranks start up while one process trains
    pretrain(load_config(PretrainConfig, SMOKE, sets), out=tmp_path / "one")
    proc.output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, proc.output[-2000:]
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 20
    assert all(abs(a - b) <= 1e-4 * abs(a) for a, b in zip(one, two)), list(zip(one, two))
    assert one[-1] < one[0]  # it trains
    assert (tmp_path / "two" / "model" / "model.safetensors").exists()
    assert proc.output.count("pretraining ") == 1  # rank 0 alone prints (and writes)


def test_a_batch_the_ranks_cannot_split_is_one_line_before_the_run_dir(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun --nproc_per_node 2 sets it; checked before joining
    out = tmp_path / "run"
    assert main(["pretrain", str(SMOKE), "--out", str(out), "--set", "train.batch_size=5"]) == 2
    err = capsys.readouterr().err
    assert err == "error: train.batch_size=5 does not split over 2 ranks (torchrun --nproc_per_node 2); " \
        "use a multiple of 2\n"  # fmt: skip
    assert not out.exists()


def _workers(parent: int) -> dict[int, int]:
    """rank -> pid of the processes torchrun started."""
    out = {}
    for pid in map(int, subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout.split()):
        env = dict(kv.split("=", 1) for kv in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in kv)
        if "RANK" in env:
            out[int(env["RANK"])] = pid
    return out


@pytest.mark.slow
def test_a_rank_killed_mid_run_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    sets = [*STEPS, "train.steps=12", "train.eval_every=6", "train.ckpt_every=4"]
    whole = torchrun(tmp_path / "whole", *sets)
    assert whole.returncode == 0, whole.output[-2000:]
    proc = torchrun(tmp_path / "cut", *sets, wait=False)
    deadline = time.time() + 240
    while not list((tmp_path / "cut" / "ckpt").glob("step-*")) and time.time() < deadline:
        time.sleep(0.2)
    os.kill(_workers(proc.pid)[1], signal.SIGKILL)  # rank 1 dies without a word; torchrun stops rank 0
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and not (tmp_path / "cut" / "summary.json").exists()
    again = torchrun(tmp_path / "cut", resume=True)
    assert again.returncode == 0 and "resumed" in again.output, again.output[-2000:]
    a, b = (
        load_file(tmp_path / "whole" / "model" / "model.safetensors"),
        load_file(tmp_path / "cut" / "model" / "model.safetensors"),
    )
    assert all((a[k] == b[k]).all() for k in a)
    assert losses(tmp_path / "cut")[-4:] == losses(tmp_path / "whole")[-4:]


def _relative(a: dict, b: dict, prefix: str) -> float:
    return max(
        ((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-12)).item() for k in a if k.startswith(prefix)
    )


def test_two_ranks_write_a_memory_with_the_gradients_of_one_process(smoke_base, tmp_path):
    cmd = [*TORCHRUN, str(ROOT / "tests" / "ddp_writes.py"), str(smoke_base), str(tmp_path / "two.st")]
    two = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ddp_writes.main(smoke_base, tmp_path / "one.st")  # one process, here, while the ranks run
    errors = two.communicate(timeout=300)[1]
    assert two.returncode == 0, errors[-3000:]
    a, b = load_file(tmp_path / "one.st"), load_file(tmp_path / "two.st")
    assert sorted(a) == sorted(b) and {k.split(".")[2] for k in a} == {"lora", "soft_prompt", "kv_prefix"}
    assert _relative(a, b, "grad.") < 1e-5  # each rank's share of the loss, the gradients summed: the same step
    # after 12 Adam steps float noise on gradients near zero shows (Adam steps by their sign); a rank that
    # trained on its half alone would be off by the order of the update itself
    assert _relative(a, b, "written.") < 1e-2


@pytest.mark.slow
def test_retain_run_under_torchrun_matches_one_process_and_rank_0_alone_writes(smoke_base, tmp_path):
    config = ROOT / "configs" / "smoke" / "continual.yaml"
    sets = [
        f"base={smoke_base}",
        "threads=1",
        "media=[{kind: none}, {kind: context, budget_tokens: 400}, "
        "{kind: lora, steps: 3, batch_size: 2, replay: 0.25, base_replay: 0.25}, "
        "{kind: kv_prefix, prompt_tokens: 4, steps: 3, batch_size: 2, objective: distill, n_queries: 4}]",
    ]
    one = continual(load_config(ContinualConfig, config, sets), out=str(tmp_path / "one"))
    cmd = [
        *TORCHRUN,
        "-m",
        "retain",
        "run",
        str(config),
        "--out",
        str(tmp_path / "two"),
        *[a for s in sets for a in ("--set", s)],
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("report: ") == 1 and proc.stdout.count("medium lora: writing") == 1
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    for name, m in one["media"].items():
        assert m["acc"] == two["media"][name]["acc"] and m["base_acc"] == two["media"][name]["base_acc"], name
    records = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(records) == 2 * 4  # one record per write and medium: written once, by rank 0


def test_a_medium_batch_the_ranks_cannot_split_is_one_line_before_the_run_dir(smoke_base, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun --nproc_per_node 2 sets it; checked before joining
    cfg = load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml",
                      [f"base={smoke_base}", "media.2.batch_size=3"])  # fmt: skip
    with pytest.raises(
        Exception, match=r"^media\[2\]\.batch_size=3 does not split over 2 ranks .*use a multiple of 2$"
    ):
        continual(cfg, out=str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()
