"""Data parallelism through torchrun (gloo on the CPU): two ranks take the steps one process takes on the
same global batch, rank 0 alone writes, a killed rank's run resumes to the same weights."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from retain.config import load_config
from retain.train.pretrain import PretrainConfig, pretrain

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "configs" / "smoke" / "pretrain.yaml"
STEPS = ["train.bf16=false", "train.threads=1", "train.log_every=1", "eval.during_n=2", "eval.final_n=4"]


def torchrun(out: Path, *sets: str, resume: bool = False, wait: bool = True) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "retain", "pretrain", "--out", str(out)]  # fmt: skip
    cmd += ["--resume"] if resume else [str(SMOKE), *[a for s in sets for a in ("--set", s)]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RETAIN_PROGRESS": "0"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        proc.output = proc.communicate(timeout=300)[0]
    return proc


def losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r["train/loss"] for r in map(json.loads, lines) if "train/loss" in r]


def test_two_ranks_take_the_steps_of_one_process_on_the_same_global_batch(tmp_path):
    sets = [*STEPS, "train.steps=20", "train.eval_every=20", "train.ckpt_every=20"]
    pretrain(load_config(PretrainConfig, SMOKE, sets), out=tmp_path / "one")
    proc = torchrun(tmp_path / "two", *sets)
    assert proc.returncode == 0, proc.output[-2000:]
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(one) == len(two) == 20
    assert all(abs(a - b) <= 1e-4 * abs(a) for a, b in zip(one, two)), list(zip(one, two))
    assert one[-1] < one[0]  # it trains
    assert (tmp_path / "two" / "model" / "model.safetensors").exists()
    assert proc.output.count("pretraining ") == 1  # rank 0 alone prints (and writes)


def test_a_batch_the_ranks_cannot_split_is_one_line_before_the_run_dir(tmp_path):
    proc = torchrun(tmp_path / "run", "train.batch_size=5")
    assert proc.returncode != 0
    assert "error: train.batch_size=5 does not split over 2 ranks (torchrun --nproc_per_node 2); use a multiple of 2" \
        in proc.output and "Traceback" not in proc.output.split("error: train.batch_size")[0]  # fmt: skip
    assert not (tmp_path / "run").exists()


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
    a, b = load_file(tmp_path / "whole" / "model" / "model.safetensors"), load_file(tmp_path / "cut" / "model" / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)
    assert losses(tmp_path / "cut")[-4:] == losses(tmp_path / "whole")[-4:]
