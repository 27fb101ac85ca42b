"""`retain overtrain`: the budgets it plans, the linear theory's tasks and its inflection, the rank correlation,
its one-line errors, and (slow) the study end to end with a resume."""

import json
from pathlib import Path

import pytest
import torch

from retain.cli.main import main as cli
from retain.overtrain.linear import LinearConfig, inflection, sweep, tasks
from retain.overtrain.run import OvertrainConfig, plan, spearman

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke" / "pretrain.yaml")
WRITE = str(ROOT / "configs" / "smoke" / "overtrain_write.yaml")


def test_each_budget_is_its_tokens_per_parameter_in_steps_annealed_to_zero():
    budgets, write, params = plan(OvertrainConfig(pretrain=SMOKE, write=WRITE, tokens_per_param=[0.002, 0.01]))
    per_step = 4 * 128  # the smoke config's batch_size x seq_len
    for tpp, cfg in budgets.items():
        assert cfg.train.steps == -(-tpp * params // per_step) and cfg.train.min_lr_ratio == 0.0
    assert params > 10**6 and [m.name for m in write.media] == ["none", "lora"]


@pytest.mark.parametrize("kw,message", [
    ({"tokens_per_param": [0.0]}, "tokens_per_param must be positive"),
    ({"gammas": [-0.1]}, "gammas must be >= 0"),
    ({"tokens_per_param": [1e-5]}, "less than one batch"),
    ({"write": "configs/nowhere.yaml"}, "config not found: configs/nowhere.yaml"),
])  # fmt: skip
def test_bad_overtrain_input_is_one_line_before_any_run(kw, message, tmp_path, capsys):
    args = {"pretrain": SMOKE, "write": WRITE, **kw}
    sets = [f"--set={k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in args.items()]
    assert cli(["overtrain", *sets, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not (tmp_path / "o").exists()


def test_the_linear_tasks_share_their_leading_modes_and_turn_the_rest():
    cfg = LinearConfig()
    a, b = tasks(cfg)
    sa, sb = torch.linalg.svdvals(a), torch.linalg.svdvals(b)
    assert torch.allclose(sa, sb)  # the same singular values, B's output directions turned
    ua, _, _ = torch.linalg.svd(a)
    ub, _, _ = torch.linalg.svd(b)
    overlap = (ua.T @ ub).abs().diagonal()
    assert torch.all(overlap[: cfg.shared] > 0.999) and torch.all(overlap[cfg.shared :] < 0.9)


def test_the_linear_network_learns_incrementally_and_longer_pretraining_loses_more_after_fine_tuning():
    rows = sweep(LinearConfig())
    before = [r["pretrain_loss"] for r in rows]
    assert all(b <= a + 1e-12 for a, b in zip(before, before[1:])) and before[-1] < 1e-3
    t = inflection(rows)  # the pretraining loss after fine-tuning falls, then rises past t
    assert t is not None and rows[-1]["pretrain_loss_after_ft"] > 1.2 * min(r["pretrain_loss_after_ft"] for r in rows)
    # fine-tuning for longer than the modes take to turn: no inflection within these times
    assert inflection(sweep(LinearConfig(ft_steps=30, times=[10, 100, 1000]))) is None


def test_spearman_handles_ties_and_constant_columns():
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [1, 1, 2]) == pytest.approx(0.866, abs=1e-3)
    assert spearman([1, 2, 3], [0, 0, 0]) is None and spearman([1, 2], [1, 2]) is None


@pytest.mark.slow  # ~90 s: three smoke pretrainings, probes and writes, stopped after the first and resumed
def test_retain_overtrain_end_to_end_and_resumed(tmp_path, monkeypatch):
    import retain.overtrain.run as R

    out = tmp_path / "o"
    real, calls = R.write_into, []

    def stop_after_first(run, write, pretrain_dir, bios):
        if calls:
            raise KeyboardInterrupt
        calls.append(run)
        return real(run, write, pretrain_dir, bios)

    monkeypatch.setattr(R, "write_into", stop_after_first)
    config = str(ROOT / "configs" / "smoke" / "overtrain.yaml")
    assert cli(["overtrain", config, "--out", str(out)]) == 130  # Ctrl-C: one line, the work so far kept
    monkeypatch.setattr(R, "write_into", real)
    first = (out / "pretrain-0.002" / "summary.json").stat().st_mtime
    assert cli(["overtrain", "--out", str(out), "--resume"]) == 0
    assert (out / "pretrain-0.002" / "summary.json").stat().st_mtime == first  # read back, not trained again
    s = json.loads((out / "summary.json").read_text())
    assert [r["tokens_per_param"] for r in s["budgets"]] == [0.002, 0.004, 0.008]
    assert s["budgets"][0]["tokens"] < s["budgets"][2]["tokens"] and "lora" in s["budgets"][0]["media"]
    assert s["budgets"][0]["media"]["lora"]["ppl_drift"] is not None  # the biographies' perplexity, on a world base
    for name in ("report.md", "overtrain.png", "linear.png"):
        assert (out / name).exists()
