"""The outer loop: rewards, advantages, the ReST-EM filter, the batched inner loop, and a tiny end-to-end run."""

import contextlib
import json
import random
from pathlib import Path

import pytest
import torch

from retain.config import load_config
from retain.errors import RetainError
from retain.memory import storage
from retain.memory.base import Material, MediumConfig
from retain.memory.weights import LoraMemory
from retain.models.build import load_model_and_tokenizer
from retain.rl import algorithms as A
from retain.rl import episode as E
from retain.rl.lora import Adapters
from retain.rl.run import RLConfig, policy_update, rl
from retain.world.io import load_world

ROOT = Path(__file__).resolve().parents[1]


def test_group_advantages_are_normalised_per_group_and_zero_without_signal():
    r = torch.tensor([[0.0, 1.0, 2.0, 1.0], [0.5, 0.5, 0.5, 0.5]])
    adv = A.group_advantages(r)
    std = torch.tensor([0.0, 1.0, 2.0, 1.0]).std(unbiased=False)
    assert torch.allclose(adv[0], (torch.tensor([0.0, 1.0, 2.0, 1.0]) - 1.0) / (std + 1e-6))
    assert torch.allclose(adv[0].mean(), torch.tensor(0.0), atol=1e-6)
    assert torch.equal(adv[1], torch.zeros(4))  # all equal: no preference, no update


def test_rest_em_keeps_only_self_edits_above_their_groups_baseline():
    r = torch.tensor([[0.2, 0.6, 0.4], [0.5, 0.5, 0.5], [0.0, 0.9, 0.3]])
    assert A.rest_em_keep(r).tolist() == [[False, True, False], [False, False, False], [False, True, False]]
    assert A.rest_em_keep(r, margin=0.4).tolist() == [[False] * 3, [False] * 3, [False, True, False]]
    greedy = torch.tensor([0.1, 0.4, 0.95])  # a per-session baseline, e.g. the greedy self-edit's reward
    assert A.rest_em_keep(r, greedy).tolist() == [[True, True, True], [True, True, True], [False, False, False]]


def test_rest_em_best_keeps_one_per_group_ties_to_the_more_fluent():
    r = torch.tensor([[0.2, 0.6, 0.6, 0.4], [0.5, 0.5, 0.5, 0.5], [1.0, 0.0, 0.0, 0.0]])
    fluency = torch.tensor([[0.0, -0.9, -0.1, 0.0], [0.0, -1.0, -2.0, -3.0], [-5.0, 0.0, 0.0, 0.0]])
    # row 0: a tie at 0.6 goes to the less garbled edit; row 1: no edit beats the mean; row 2: reward first
    assert A.rest_em_best(r, fluency).tolist() == [
        [False, False, True, False],
        [False] * 4,
        [True, False, False, False],
    ]
    assert A.rest_em_best(r, fluency, margin=0.3).tolist() == [[False] * 4, [False] * 4, [True, False, False, False]]


def test_pg_loss_is_reinforce_with_a_k3_kl_to_the_reference():
    logp = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    adv = torch.tensor([1.0, -1.0])
    loss, kl = A.pg_loss(logp, logp.detach(), mask, adv, kl_coef=0.3)
    assert kl.item() == pytest.approx(0.0)
    assert loss.item() == pytest.approx(-(1.0 * (-1.5) + (-1.0) * (-0.5)) / 2)
    loss.backward()  # a positive advantage raises its edit's log-prob, a negative one lowers it
    assert (logp.grad[0, :2] < 0).all() and (logp.grad[1, 0] > 0) and logp.grad[0, 2] == 0
    ref = logp.detach() + torch.tensor([[0.5, -0.5, 0.0], [1.0, 0.0, 0.0]])
    _, kl = A.pg_loss(logp, ref, mask, adv, 0.3)
    d = torch.tensor([0.5, -0.5, 1.0])
    assert kl.item() == pytest.approx(float((d.exp() - d - 1).mean()), rel=1e-5)


def test_reward_is_recall_minus_the_token_cost(smoke_base):
    model, tok = load_model_and_tokenizer(smoke_base / "model")
    world = load_world(smoke_base / "world")
    s = E.fresh_sessions(world, 1, random.Random(0), set(world.entities))[0]
    inner = MediumConfig(kind="lora", rank=2, targets="mlp", steps=2, batch_size=2)
    out = E.score_writes(model, tok, inner, ["x", "y"], [s, s], [1, 1], [[], []], [10, 30], 0.01, group=2)
    for recall, reward, n in zip(out.recall, out.reward, [10, 30]):
        assert recall * len(s.questions) == pytest.approx(round(recall * len(s.questions)))  # hits / questions
        assert reward == pytest.approx(recall - 0.01 * n)
    assert all(type(m).__name__ != "BatchedLoRA" for m in model.modules())
    graded = E.score_writes(model, tok, inner, ["x", "y"], [s, s], [1, 1], [[], []], [10, 30], 0.01, group=2,
                            reward="answer_logprob")  # fmt: skip
    assert graded.recall == out.recall and all(lp < 0 for lp in graded.answer_logprob)
    assert graded.reward == pytest.approx([lp - 0.01 * n for lp, n in zip(graded.answer_logprob, [10, 30])])


def test_answer_logprob_is_the_log_probability_of_the_right_answers(smoke_base):
    from retain.eval.qa import encode
    from retain.world.render import qa_prompt

    model, tok = load_model_and_tokenizer(smoke_base / "model")
    world = load_world(smoke_base / "world")
    qs = E.fresh_sessions(world, 1, random.Random(0), set(world.entities))[0].questions
    ad = Adapters(model, MediumConfig(kind="lora", rank=2, targets="mlp"), [1, 2])
    try:
        with torch.no_grad():  # B starts at zero: both fresh adapters are the base model
            ad.modules[0][2].B[1].fill_(0.5)  # ... until adapter 1 differs
        got = ad.answer_logprob(tok, [qs, qs])
    finally:
        ad.remove()
    expected = []
    for q in qs:  # by hand, on the base model: log p of the answer's tokens after `Q: ... A:`, per token
        prompt, full = encode(tok, qa_prompt(q.text)), encode(tok, f"{qa_prompt(q.text)} {q.answer}")
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([full])).logits[0, :-1].float(), -1)
        expected.append(float(logp[range(len(prompt) - 1, len(full) - 1), full[len(prompt) :]].mean()))
    assert got[0] == pytest.approx(sum(expected) / len(expected), abs=1e-4)
    assert got[1] != pytest.approx(got[0], abs=1e-4)  # routed: adapter 1's own weights answer its questions


def test_batched_adapters_train_like_separate_ones_and_like_the_lora_medium(smoke_base, monkeypatch):
    # in fp32 the three must agree to rounding; bf16 autocast (on in real writes) leaves ~5-10% noise
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: contextlib.nullcontext())
    model, tok = load_model_and_tokenizer(smoke_base / "model")
    world = load_world(smoke_base / "world")
    sessions = E.fresh_sessions(world, 3, random.Random(1), set(world.entities))
    # stored exactly: the comparison is of training, to fp32 rounding
    cfg = MediumConfig(kind="lora", rank=2, targets="mlp", steps=4, batch_size=2, lr=1e-2, augment="none", dtype="fp32")
    mats = [[Material(0, s.transcript, 0)] for s in sessions]

    def trained(seeds, materials):
        ad = Adapters(model, cfg, seeds)
        ad.train(tok, materials, [random.Random(s) for s in seeds])
        state = [(lora.A.detach().clone(), lora.B.detach().clone()) for _, _, lora in ad.modules]
        ad.remove()
        return state

    init = trained([5, 6, 7], [[], [], []])  # no session written: the initial A (and B = 0)
    batched = trained([5, 6, 7], mats)
    for g, seed in enumerate([5, 6, 7]):  # adapter g of the batch = adapter g trained alone
        alone = trained([seed], [mats[g]])
        for (A0, _), (Ab, Bb), (As, Bs) in zip(init, batched, alone):
            assert _same_update(Ab[g], As[0], A0[g]) and _same_update(Bb[g], Bs[0], 0 * Bs[0])
    assert not torch.allclose(batched[0][1][0], batched[0][1][1])  # different texts, different adapters
    assert all(type(m).__name__ != "BatchedLoRA" for m in model.modules())  # removed: the base model again

    # the lora medium (PEFT) from the same initial A on the same text ends where the batched adapter does
    import copy

    mem = LoraMemory(copy.deepcopy(model), tok, MediumConfig(**{**cfg.__dict__, "name": "lora"}))
    ad = Adapters(model, cfg, [0])
    with torch.no_grad():  # PEFT's modules come in the model's module order, as the batched ones
        for (_, _, lora), pa in zip(ad.modules, [p for n, p in mem.model.named_parameters() if "lora_A" in n]):
            lora.A[0].copy_(pa)
    mem.write(mats[0][0])
    ad.train(tok, [mats[0]], [random.Random(0)])
    peft_B = [p for n, p in mem.model.named_parameters() if "lora_B" in n]
    assert len(peft_B) == len(ad.modules)
    for (_, _, lora), pb in zip(ad.modules, peft_B):
        assert _same_update(lora.B[0], pb.detach(), 0 * pb.detach())
    ad.remove()


def test_batched_adapters_are_stored_at_the_mediums_dtype(smoke_base):
    model, tok = load_model_and_tokenizer(smoke_base / "model")
    world = load_world(smoke_base / "world")
    cfg = MediumConfig(kind="lora", rank=2, targets="mlp", steps=2, batch_size=2, lr=1e-2, dtype="int4")
    ad = Adapters(model, cfg, [1, 2])
    ad.train(tok, [[Material(0, s.transcript, 0)] for s in world.sessions[:2]], [random.Random(0), random.Random(1)])
    for g in range(2):
        flat = torch.cat([t.detach().flatten() for _, _, lora in ad.modules for t in (lora.A[g], lora.B[g])])
        assert torch.equal(storage.roundtrip(flat, "int4"), flat)
    ad.remove()


def _same_update(a: torch.Tensor, b: torch.Tensor, start: torch.Tensor) -> bool:
    """a and b moved the same way from `start`, to fp32 rounding: a routing or loss bug would put them a whole
    update apart."""
    a, b, start = a.detach(), b.detach(), start.detach()
    return float((a - b).norm()) <= 1e-4 * float((b - start).norm()) and float((b - start).norm()) > 0


def test_tiny_end_to_end_rl_run_writes_report_and_resumes(smoke_base, tmp_path):
    cfg = load_config(RLConfig, ROOT / "configs" / "smoke" / "rl.yaml", [f"base={smoke_base}"])
    s = rl(cfg, out=tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "report.md", "rl_curve.png", "lengths.png",
                 "fixed.json"):  # fmt: skip
        assert (run / name).exists(), name
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records] == [0, 1, 2]
    assert all(0.0 <= r["reward"] <= 1.0 for r in records[1:])
    assert s["episodes"] == cfg.iterations * cfg.sessions * cfg.group
    assert s["batched_episodes_per_min"] > 0 and s["unbatched_episodes_per_min"] > 0
    assert "before RL" in (run / "report.md").read_text()
    fixed = json.loads((run / "fixed.json").read_text())
    heads, whole = fixed["transcript_head"]["texts"], fixed["transcript"]["texts"]
    assert len(heads) == len(whole) and all(len(h) < len(t) for h, t in zip(heads, whole))  # cut to the budget
    best_fixed = max(s["heldout_before"], s["heldout_transcript_head"])
    assert s["gain_equal_budget_pt"] == pytest.approx(100 * (s["heldout_after"] - best_fixed))
    with pytest.raises(RetainError, match="already holds a run"):
        rl(cfg, out=run)
    (run / "summary.json").unlink()
    del fixed["transcript_head"]  # a run from before the equal-budget baseline gets it on resume
    (run / "fixed.json").write_text(json.dumps(fixed))
    again = rl(cfg, out=run, resume=True)  # finished: nothing is rerun, the same numbers come back
    assert again["heldout_after"] == s["heldout_after"]
    assert again["heldout_transcript_head"] == s["heldout_transcript_head"]


def test_an_interrupted_rl_run_resumes_from_its_last_iteration(smoke_base, tmp_path):
    cfg = load_config(RLConfig, ROOT / "configs" / "smoke" / "rl.yaml",
                      [f"base={smoke_base}", "iterations=1", "efficiency_groups=0"])  # fmt: skip
    run = tmp_path / "run"
    rl(cfg, out=run)
    first = (run / "metrics.jsonl").read_text()
    # as if it had been stopped after iteration 1 of 2: the run's own config says 2
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("iterations: 1", "iterations: 2"))
    s = rl(RLConfig(), out=run, resume=True)  # the documented resume: no config, the run's own
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert (run / "metrics.jsonl").read_text().startswith(first)  # nothing finished is redone or lost
    assert [r["iteration"] for r in records] == [0, 1, 2] and s["episodes"] == 2 * cfg.sessions * cfg.group


@pytest.mark.parametrize("algorithm,keep", [("rest_em", "above_mean"), ("rest_em", "best"), ("pg", "above_mean")])
def test_an_update_raises_the_rewarded_self_edit_and_lowers_the_other(smoke_base, algorithm, keep):
    import copy

    ref, tok = load_model_and_tokenizer(smoke_base / "model")
    policy = copy.deepcopy(ref).requires_grad_(True)
    world = load_world(smoke_base / "world")
    s = E.fresh_sessions(world, 1, random.Random(0), set(world.entities))[0]
    prompt = E.prompt_ids(tok, s)
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]  # noqa: E731
    good, bad = enc(s.transcript[:60]), enc("x y z")
    cfg = RLConfig(algorithm=algorithm, keep=keep, group=2, policy_steps=3, policy_batch=2, lr=1e-3)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr)

    def logps():
        with torch.no_grad():
            lp, m = A.completion_logprobs(policy, [prompt, prompt], [good, bad], tok.pad_token_id)
        return (lp * m).sum(1) / m.sum(1)

    before = logps()
    stats = policy_update(
        policy, ref, tok, cfg, opt, [prompt], [[good, bad]], torch.tensor([[1.0, 0.0]]), random.Random(0)
    )
    after = logps()
    assert after[0] > before[0]  # the rewarded edit is more likely
    if algorithm == "rest_em":
        assert stats["kept"] == 1  # only the edit above its group's mean is imitated
    else:
        assert after[1] < before[1] and stats["kl"] >= 0.0  # the other is pushed down


def test_ask_keeps_only_the_named_questions(smoke_base):
    world = load_world(smoke_base / "world")
    every = E.fresh_sessions(world, 3, random.Random(0), set(world.entities))
    some = E.fresh_sessions(world, 3, random.Random(0), set(world.entities), ["field", "update"])
    for a, b in zip(every, some):
        assert a.transcript == b.transcript  # the same sessions, fewer questions
        assert [q.text for q in b.questions] == [
            q.text for q in a.questions if q.kind == "update" or q.attribute == "field" and q.kind == "recall"
        ]
        assert {q.kind for q in b.questions} == {"recall", "update"}


def test_bad_rl_config_is_a_clear_error():
    with pytest.raises(ValueError, match="ask: unknown question kinds"):
        RLConfig(ask=["home"])
    with pytest.raises(ValueError, match="inner.kind must be lora"):
        RLConfig(inner=MediumConfig(kind="full"))
    with pytest.raises(ValueError, match="group"):
        RLConfig(algorithm="pg", group=1)
    with pytest.raises(RetainError, match="neither a pretraining run"):
        rl(RLConfig(base="/nonexistent"), out="/tmp/never")
