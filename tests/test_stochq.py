"""Stochastic Q-learning: the candidate set, convergence to a known optimum, the cost per step, and the run."""

import json
import random
import shutil
import subprocess
import sys

import pytest
import torch

from retain.errors import RetainError
from retain.rl.control import discretised, policy_value, table_mdp, value_iteration
from retain.rl.stochq import DeepQ, TabularQ, candidates, log_n, stochmax
from retain.rl.stochq_run import StochQConfig, stochq


def test_candidates_draw_log_n_and_keep_the_remembered():
    rng = random.Random(0)
    for n in (2, 5, 256, 4096):
        c = candidates(n, [], rng)
        assert len(c) == len(set(c)) == min(n, log_n(n)) and all(0 <= a < n for a in c)
    assert log_n(4096) == 12 and log_n(1000) == 10
    remembered = [7, 8, 9]
    c = candidates(4096, remembered, rng)
    assert set(remembered) <= set(c) and len(c) == len(set(c)) and 12 <= len(c) <= 15
    assert len(c) == 12 + len(set(remembered) - set(c[:12]))  # drawn first; a remembered one drawn is not repeated
    with pytest.raises(RetainError, match="at least 2"):
        candidates(1, [], rng)


def test_stochmax_maximises_over_the_candidates_only():
    q = torch.tensor([0.0, 5.0, 1.0, 3.0])
    assert stochmax(q, [0, 2, 3]) == (3.0, 3)
    assert stochmax(q, [1, 2]) == (5.0, 1)


@pytest.mark.parametrize("stoch", [False, True])
def test_q_learning_converges_to_the_known_optimum(stoch):
    mdp, gamma = table_mdp(4, 16, seed=3), 0.9
    q_star = value_iteration(mdp, gamma)
    agent, rng, s = TabularQ(4, 16, gamma, stoch=stoch), random.Random(0), 0
    for _ in range(30000):  # uniform exploration (off-policy): every pair is visited
        a = agent.act(s, 1.0, rng)
        s2 = int(mdp.next[s, a])
        agent.update(s, a, float(mdp.reward[s, a]), s2, False, 0.5, rng)
        s = s2
    assert (agent.q - q_star).abs().max() < 1e-3
    greedy = policy_value(mdp, agent.q.argmax(1), gamma)
    assert torch.allclose(greedy, q_star.max(1).values, atol=1e-6)


def test_value_iteration_is_the_fixed_point():
    mdp = table_mdp(5, 8, seed=0)
    q = value_iteration(mdp, 0.8)
    assert torch.allclose(q, mdp.reward + 0.8 * q.max(1).values[mdp.next], atol=1e-8)
    assert torch.allclose(policy_value(mdp, q.argmax(1), 0.8), q.max(1).values, atol=1e-8)


def test_stochdqn_reads_log_n_q_values_where_dqn_reads_n():
    n, batch = 1024, 8
    feats = torch.linspace(-1, 1, n)[:, None]
    rng = random.Random(0)
    agents = {
        stoch: DeepQ(3, feats, stoch=stoch, lr=1e-3, gamma=0.9, batch_size=batch, buffer=32) for stoch in (False, True)
    }
    for agent in agents.values():
        for i in range(batch):
            agent.learn((torch.randn(3), i, 0.0, torch.randn(3), 0.0), rng)
    exact, stoch = agents[False].evaluated, agents[True].evaluated
    assert exact == batch * n  # one update: every next state against every action
    assert batch * log_n(n) <= stoch <= batch * (log_n(n) + batch)  # random ones plus the batch's actions
    s = torch.randn(3)
    before = agents[False].evaluated
    agents[False].act(s, 0.0, rng)
    assert agents[False].evaluated - before == n


def test_pendulum_is_discretised_into_n_actions():
    env, feats = discretised("Pendulum-v1", 64)
    assert env.action_space.n == 64 and feats.shape == (64, 1)
    assert feats.min() > -1 and feats.max() < 1 and (feats[1:] > feats[:-1]).all()
    with pytest.raises(RetainError, match="gymnasium cannot make"):
        discretised("NoSuchTask-v0", 8)


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="n_actions"):
        StochQConfig(n_actions=[1])
    with pytest.raises(ValueError, match="not agents of env 'table'"):
        StochQConfig(env="table", agents=["dqn"])
    with pytest.raises(ValueError, match="episodes"):
        StochQConfig(episodes=0)


def test_a_resumed_job_takes_the_steps_of_an_uninterrupted_one(tmp_path, monkeypatch):
    cfg = StochQConfig(agents=["stochdqn"], n_actions=[16], episodes=4, max_steps=20, ckpt_every=2, test_episodes=2,
                       buffer=64, batch_size=8, target_every=5)  # fmt: skip
    out = tmp_path / "run"
    first = stochq(cfg, str(out))
    job = out / "jobs" / "stochdqn-n16-s0.json"
    done = json.loads(job.read_text())
    job.unlink()  # as if killed after the checkpoint at episode 2: the job resumes there
    assert [p.name for p in (out / "ckpt" / "stochdqn-n16-s0").iterdir()] == ["step-0000002.safetensors"]
    import retain.rl.stochq_run as run_module

    resets = []

    def counted(env_id, n):
        env, feats = discretised(env_id, n)
        reset = env.reset
        env.reset = lambda **kw: resets.append(kw) or reset(**kw)
        return env, feats

    monkeypatch.setattr(run_module, "discretised", counted)
    second = stochq(StochQConfig(), str(out), resume=True)
    assert len(resets) == 2 + 2  # episodes 3 and 4, then the 2 test episodes: the first two were not rerun
    again = json.loads(job.read_text())
    assert [e["return"] for e in again["episodes"]] == [e["return"] for e in done["episodes"]]
    assert again["test_returns"] == done["test_returns"]
    assert second["rows"].keys() == first["rows"].keys()
    assert (out / "report.md").exists() and (out / "returns.png").exists() and (out / "step_time.png").exists()


def test_cli_table_run(tmp_path):
    out = tmp_path / "t"
    r = subprocess.run([sys.executable, "-m", "retain", "stochq", "configs/stochq/table.yaml",
                        "--set", "n_actions=[32]", "--set", "episodes=20", "--set", "seeds=[0]", "--out", str(out)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["rows"]["stochq-n32"]["evaluated_per_step"] < s["rows"]["q-n32"]["evaluated_per_step"]
    assert s["rows"]["q-n32"]["final"] > 0.8  # greedy value / V*
    bad = subprocess.run([sys.executable, "-m", "retain", "stochq", "--set", "n_actions=[1]",
                          "--out", str(tmp_path / "b")],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "n_actions" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "b").exists()
    shutil.rmtree(out)


def test_write_actions_are_the_subsets_within_the_budget():
    from math import comb

    from retain.rl.write_select import WriteConfig, masks, subsets

    acts = subsets(8, 3)
    assert len(acts) == comb(8, 1) + comb(8, 2) + comb(8, 3) == 92 and len(set(acts)) == 92
    assert masks(acts, 8).sum(1).max() == 3 and masks([(0, 5)], 8)[0].nonzero().flatten().tolist() == [0, 5]
    with pytest.raises(ValueError, match="budget must be at least one fact"):
        WriteConfig(budget=0)
    with pytest.raises(ValueError, match="ask"):
        WriteConfig(ask=["shoe_size"])


@pytest.mark.slow
def test_write_selection_runs_on_the_smoke_base(smoke_base, tmp_path):
    from retain.rl.write_select import WriteConfig

    cfg = StochQConfig(env="write", agents=["stochdqn"], episodes=2, ckpt_every=1, seeds=[0], batch_size=2, buffer=8,
                       write=WriteConfig(base=str(smoke_base), sessions=2, heldout=2, max_facts=4,
                                         budget=2))  # fmt: skip
    s = stochq(cfg, str(tmp_path / "w"))
    row = s["rows"]["stochdqn-n10"]  # C(4,1) + C(4,2) subsets
    assert 0.0 <= row["final"] <= 1.0 and row["evaluated_per_step"] > 0
    assert {"first_k", "all_facts", "best_subset"} <= set(s["baselines"]) and "gain_over_first_k" in s
    with pytest.raises(RetainError, match="neither a pretraining run"):
        stochq(
            StochQConfig(env="write", agents=["dqn"], write=WriteConfig(base=str(tmp_path))),
            str(tmp_path / "x"),
        )
