"""kill -9 in the middle of `retain run` and `retain rl`, then the documented resume with no config: the run
ends with the numbers of an uninterrupted one. The base is the tiny plain Llama of conftest: its answers
are wrong, but its perplexity and the policy's weights are continuous, so equality means something."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from retain.runs.checkpoint import latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "RETAIN_PROGRESS": "0"}


def retain(*args: str, wait: bool = True) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "retain", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    if wait:
        proc.output = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, proc.output[-3000:]
    return proc


def kill_when(proc: subprocess.Popen, ready, seconds: float = 300) -> None:
    """kill -9 `proc` as soon as `ready()` holds (it has written something a resume must keep)."""
    deadline = time.time() + seconds
    while not ready() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def _records(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_retain_run_killed_mid_medium_resumes_to_the_numbers_of_an_uninterrupted_run(plain_base, user_sessions,
                                                                                      tmp_path):  # fmt: skip
    media = (
        "[{kind: none}, {kind: lora, rank: 2, steps: 6, batch_size: 2, lr: 1.0e-2, replay: 0.5}, "
        "{kind: soft_prompt, prompt_tokens: 4, steps: 6, batch_size: 2, lr: 1.0e-2}]"
    )
    sets = [a for s in [f"base={plain_base}", f"data={user_sessions}", "threads=1", "eval.base_n=8", f"media={media}"]
            for a in ("--set", s)]  # fmt: skip
    config = str(ROOT / "configs" / "smoke" / "continual.yaml")
    retain("run", config, *sets, "--out", str(tmp_path / "whole"))
    cut = tmp_path / "cut"
    proc = retain("run", config, *sets, "--out", str(cut), wait=False)
    kill_when(proc, lambda: any(r.get("medium") == "lora" for r in _records(cut)))  # lora's first write is logged
    assert not (cut / "summary.json").exists() and not (cut / "media" / "lora.json").exists()
    retain("run", "--out", str(cut), "--resume")  # the README's resume: the run's own config
    whole, again = (json.loads((tmp_path / d / "summary.json").read_text())["media"] for d in ("whole", "cut"))
    for name in ("none", "lora", "soft_prompt"):
        for key in ("acc", "acc_f1", "base_acc"):
            assert again[name][key] == whole[name][key], (name, key)
    for name in ("lora", "soft_prompt"):
        w, c = (json.loads((tmp_path / d / "media" / f"{name}.json").read_text()) for d in ("whole", "cut"))
        assert c["ppl_curve"] == w["ppl_curve"] and c["ppl_curve"][-1] != c["ppl_curve"][0], name
    assert [r["medium"] for r in _records(cut)] == [r["medium"] for r in _records(tmp_path / "whole")]


@pytest.mark.slow
def test_retain_rl_killed_after_an_iteration_resumes_to_the_weights_of_an_uninterrupted_run(
    plain_base, user_sessions, tmp_path
):
    sets = [a for s in [f"base={plain_base}", f"data={user_sessions}", "heldout=1", "iterations=3", "group=2",
                        "sessions=1", "max_new_tokens=6", "efficiency_groups=0", "horizon=1", "threads=1"]
            for a in ("--set", s)]  # fmt: skip
    config = str(ROOT / "configs" / "smoke" / "rl.yaml")
    retain("rl", config, *sets, "--out", str(tmp_path / "whole"))
    cut = tmp_path / "cut"
    proc = retain("rl", config, *sets, "--out", str(cut), wait=False)
    kill_when(proc, lambda: latest_checkpoint(cut / "ckpt") is not None)  # after iteration 1
    assert not (cut / "summary.json").exists()
    again = retain("rl", "--out", str(cut), "--resume")
    assert "resumed" in again.output
    a, b = (load_file(latest_checkpoint(tmp_path / d / "ckpt")) for d in ("whole", "cut"))
    assert sorted(a) == sorted(b) and all((a[k] == b[k]).all() for k in a if k.startswith("policy."))
    whole, cut_s = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("whole", "cut"))
    assert cut_s["heldout_after"] == whole["heldout_after"] and cut_s["episodes"] == whole["episodes"]
    assert [r["iteration"] for r in _records(cut)] == [r["iteration"] for r in _records(tmp_path / "whole")]
