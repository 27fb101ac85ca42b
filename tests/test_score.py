"""SCoRe: the shaped reward, where each stage's KL and rewards act, the metrics, and a run on the smoke base."""

import json

import pytest
import torch

from retain.errors import RetainError
from retain.rl.score import Attempts, kl_k3, score_loss, self_correction, shaped_reward
from retain.rl.score_run import ScoreConfig, score


def test_shaped_reward_is_its_formula():
    r1, r2 = torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert shaped_reward(r1, r2, 10.0).tolist() == [11.0, -10.0, 1.0, 0.0]  # fixed, broken, kept, still wrong
    assert torch.equal(shaped_reward(r1, r2, 0.0), r2)


def batch(r1, r2, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(r1)
    t = lambda: torch.randn(n, 3, generator=g)  # noqa: E731
    return Attempts(t().requires_grad_(), t(), torch.ones(n, 3), t().requires_grad_(), t(), torch.ones(n, 3),
                    torch.tensor(r1), torch.tensor(r2), group=2)  # fmt: skip


def grads(a: Attempts, stage: str, alpha=10.0, beta1=0.01, beta2=0.1):
    loss, _ = score_loss(a, stage, alpha, beta1, beta2)
    g1, g2 = torch.autograd.grad(loss, [a.logp1, a.logp2])
    return g1, g2


def test_stage_one_moves_attempt_one_only_by_its_strong_kl():
    a, b = (
        batch([0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0]),
        batch([1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 1.0]),
    )
    g1a, g2a = grads(a, "I")
    g1b, g2b = grads(b, "I")
    kl_grad = torch.autograd.grad(0.1 * kl_k3(a.logp1, a.ref1, a.mask1), a.logp1)[0]
    assert torch.allclose(g1a, kl_grad) and torch.allclose(g1a, g1b)  # rewards do not reach attempt 1
    assert not torch.allclose(g2a, g2b)  # they reach attempt 2
    g1_weak, _ = grads(a, "I", beta2=0.01)
    assert torch.allclose(g1_weak * 10, g1a)  # the KL on attempt 1 is beta2's


def test_stage_two_rewards_both_attempts_and_naive_is_unshaped():
    a = batch([0.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0])
    b = batch([1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0])  # same r2, attempt 1 of the first group right
    g1a, _ = grads(a, "II")
    g1b, _ = grads(b, "II")
    assert not torch.allclose(g1a, g1b)  # attempt 1's own reward reaches it
    g1_shaped, g2_shaped = grads(a, "II", alpha=10.0)
    g1_naive, g2_naive = grads(a, "II", alpha=0.0)
    assert not torch.allclose(g2_shaped, g2_naive)  # the bonus shapes attempt 2...
    assert torch.allclose(g1_shaped, g1_naive)  # ...and never pays attempt 1 for being wrong
    with pytest.raises(ValueError, match="stage"):
        score_loss(a, "III", 1.0, 0.0, 0.0)


def test_self_correction_metrics():
    m = self_correction([True, False, False, True], [True, True, False, False], [True, False, True, False])
    assert m == {"acc_t1": 0.5, "acc_t2": 0.5, "delta": 0.0, "i_to_c": 0.25, "c_to_i": 0.25, "same": 0.5}


def test_bad_configs_are_one_line_errors():
    with pytest.raises(ValueError, match="instruction"):
        ScoreConfig(instruction="  ")
    with pytest.raises(ValueError, match="alpha"):
        ScoreConfig(alpha=-1)
    with pytest.raises(ValueError, match="arms"):
        ScoreConfig(arms=["grpo"])
    assert ScoreConfig(beta1=0.02).kl_first == pytest.approx(0.2)
    assert ScoreConfig(stage1=2, stage2=3, rounds=2).schedule("score") == ["I", "I", "II", "II", "II"] * 2
    assert ScoreConfig(stage1=2, stage2=3).schedule("naive") == ["II"] * 5


def test_a_run_on_the_smoke_base_trains_and_resumes(smoke_base, tmp_path):
    cfg = ScoreConfig(base=str(smoke_base), arms=["none", "score"], seeds=[0], stage1=2, stage2=2, questions=4,
                      group=2, eval_every=2, eval_n=16, lr=1e-3)  # fmt: skip
    with pytest.raises(RetainError, match="unknown to the base's tokenizer"):
        score(ScoreConfig(base=str(smoke_base), instruction="please verify"), str(tmp_path / "bad"))
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "run"
    first = score(cfg, str(out))
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if r["job"] == "score-s0"] == [0, 2, 4]
    assert [r.get("stage") for r in records if r["job"] == "score-s0"] == [None, "I", "II"]
    (out / "jobs" / "score-s0.json").unlink()  # as if killed after the checkpoint at iteration 4
    again = score(ScoreConfig(), str(out), resume=True)
    assert again["arms"]["score"]["acc_t2"] == first["arms"]["score"]["acc_t2"]
    assert len([x for x in (out / "metrics.jsonl").read_text().splitlines() if '"score-s0"' in x]) == 3
    assert (out / "report.md").exists() and (out / "attempts.png").exists()
