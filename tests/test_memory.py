"""Memory media: byte accounting against real tensors, what a write changes, the context budget, soft-prompt
answers through a prefix cache. `pytest tests/test_memory.py`"""

import random

import pytest
import torch

from retain.eval.qa import encode
from retain.fermi.formulas import kv_bytes_per_token
from retain.memory import Material, MediumConfig, make_memory, storage
from retain.memory.names import sentences
from retain.memory.weights import augment
from retain.models.build import load_model_and_tokenizer
from retain.models.device import bf16_is_native, set_precision
from retain.models.generate import generate
from retain.world.io import load_world
from retain.world.world import Fact


def _memory(base, **kw):
    model, tok = load_model_and_tokenizer(base / "model")
    return make_memory(MediumConfig(**kw), model, tok, base_text=lambda rng: "Ada Lindqvist lives in Lyon."), tok


def _material(base, i=0):
    world = load_world(base / "world")
    s = world.sessions[i]
    return Material(s.index, s.transcript, 100, list(s.facts), list(s.updates)), world


def test_lora_bytes_match_its_tensors_and_a_write_moves_only_the_adapter(smoke_base):
    mem, _ = _memory(smoke_base, kind="lora", rank=4, targets="all-linear", steps=2, batch_size=2, lr=1e-2)
    lora = {n: p.detach().clone() for n, p in mem.model.named_parameters() if "lora_" in n}
    frozen = {n: p.detach().clone() for n, p in mem.model.named_parameters() if "lora_" not in n}
    assert mem.nbytes() == sum(p.numel() for p in lora.values()) * 2  # bf16 storage
    assert mem.params() == sum(p.numel() for p in lora.values())
    cost = mem.write(_material(smoke_base)[0])
    assert cost.tokens > 0 and cost.seconds > 0
    after = dict(mem.model.named_parameters())
    assert any(not torch.equal(after[n], p) for n, p in lora.items())
    assert all(torch.equal(after[n], p) for n, p in frozen.items())


def test_full_and_soft_prompt_bytes_match_their_tensors(smoke_base):
    full, _ = _memory(smoke_base, kind="full")
    assert full.nbytes() == sum(p.numel() for p in full.model.parameters()) * 2
    soft, _ = _memory(smoke_base, kind="soft_prompt", prompt_tokens=5)
    assert soft.nbytes() == soft.prompt.numel() * 2 and soft.params() == soft.prompt.numel()
    assert all(not p.requires_grad for p in soft.model.parameters())


def test_context_keeps_the_newest_sessions_within_budget(smoke_base):
    mem, tok = _memory(smoke_base, kind="context", budget_tokens=10_000)
    world = load_world(smoke_base / "world")
    for s in world.sessions:
        mem.write(Material(s.index, s.transcript, 1))
    held = mem.held_tokens()
    assert len(mem.kept()) == len(world.sessions)
    assert mem.nbytes() == kv_bytes_per_token(mem.arch) * held
    mem.cfg.budget_tokens = held - 1  # one token short: the oldest session goes, the newest stays
    kept = mem.kept()
    assert len(kept) == len(world.sessions) - 1 and kept[-1].startswith(f"Session {len(world.sessions)}.")


def test_context_retrieval_shows_each_question_the_session_about_its_person(smoke_base):
    mem, _ = _memory(smoke_base, kind="context", budget_tokens=10_000, retrieve=1)
    world = load_world(smoke_base / "world")
    for s in world.sessions:
        mem.write(Material(s.index, s.transcript, 1))
    assert mem.nbytes() == kv_bytes_per_token(mem.arch) * mem.held_tokens()  # what is held, not what is shown
    for s in world.sessions:
        for q in s.questions:
            if q.kind == "recall":  # the person is new in exactly this session
                assert mem.context(q) == f"Session {s.index + 1}. {s.transcript}"
    with pytest.raises(ValueError, match="retrieve must be >= 0"):
        MediumConfig(kind="context", retrieve=-1)


def test_names_are_the_capitalised_runs_that_do_not_start_a_sentence():
    from retain.memory.names import names

    assert names("Where was the mentor of Hugo Lindqvist born?") == {"Hugo Lindqvist"}
    assert names("Who was born earlier, Ada Kovac or Otto Lorenz?") == {"Ada Kovac", "Otto Lorenz"}
    # labels and the words after them are not names; decoded ids put spaces before punctuation
    assert names("Q : Where does Hugo Lindqvist work ? A : Cobaltis Q : Who") == {"Hugo Lindqvist"}
    assert names("Hugo Lindqvist works at Cobaltis. The home of Ada Kovac is Lyon.") == {
        "Lindqvist", "Cobaltis", "Ada Kovac", "Lyon"}  # fmt: skip


def test_context_focus_shows_each_question_only_its_persons_sentences(smoke_base):
    mem, _ = _memory(smoke_base, kind="context", budget_tokens=10_000, focus="entity")
    world = load_world(smoke_base / "world")
    for s in world.sessions:
        mem.write(Material(s.index, s.transcript, 1))
    held = mem.held_tokens()
    assert mem.nbytes() == kv_bytes_per_token(mem.arch) * held  # what is held, not what is shown
    for s in world.sessions:
        for q in s.questions:
            ctx = mem.context(q)
            assert q.kind != "recall" or q.answer in ctx
            assert all(q.entity in sentence for sentence in sentences(ctx))  # no sentence about anyone else
            assert "Session" not in ctx and len(ctx) < len(s.transcript)


def test_soft_prompt_prefix_cache_equals_running_the_embeddings_in_front(smoke_base):
    mem, tok = _memory(smoke_base, kind="soft_prompt", prompt_tokens=3)
    prompts = [encode(tok, "Q: Where was Ada born? A:"), encode(tok, "Q: Who? A:")]
    got = generate(mem.model, prompts, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id, max_new_tokens=4,
                   prefix=mem.prefix())  # fmt: skip
    emb = mem.model.get_input_embeddings()
    for p, g in zip(prompts, got):  # greedy by hand: prompt embeddings, then the tokens, no cache, no padding
        ids = list(p)
        for _ in range(len(g)):
            x = torch.cat([mem.prompt[None], emb(torch.tensor([ids]))], dim=1)
            ids.append(int(mem.model(inputs_embeds=x).logits[0, -1].argmax()))
        assert ids[len(p) :] == g


def test_paraphrase_augmentation_keeps_every_fact_and_phrases_updates_as_updates(smoke_base):
    material, world = _material(smoke_base)
    text = augment(material, "paraphrase", random.Random(0))
    for f in material.facts:
        assert f.value in text and f.entity in text
    assert augment(material, "none", random.Random(0)) == material.text
    shuffled = augment(material, "shuffle", random.Random(1))
    assert sorted(shuffled.split()) == sorted(material.text.split())
    fact = Fact("Ada Lindqvist", "employer", "Quasarix")
    as_update, as_fact = Material(0, "x", 1, [fact], [fact]), Material(0, "x", 1, [fact])
    assert augment(as_update, "paraphrase", random.Random(0)) != augment(as_fact, "paraphrase", random.Random(0))


def test_int_storage_rounds_each_block_of_32_to_its_grid_and_counts_the_scales():
    x = torch.linspace(-1, 1, 70).reshape(2, 35)
    for dtype, levels in (("int8", 127), ("int4", 7)):
        y = storage.roundtrip(x, dtype)
        blocks = lambda t: torch.cat([t.flatten(), torch.zeros(26)]).view(-1, 32)  # noqa: E731 (70 values: 3 blocks)
        flat, got = blocks(x), blocks(y)
        scale = (flat.abs().amax(1, keepdim=True) / levels).bfloat16().float()
        assert torch.allclose(got / scale, (got / scale).round(), atol=1e-4)  # on the block's grid
        assert float((got - flat).abs().max()) <= float(scale.max()) / 2 + 1e-6
        assert torch.equal(storage.roundtrip(y, dtype), y)  # storing what was stored changes nothing
    assert storage.stored_bytes(70, "int4") == 35 + 3 * 2 and storage.stored_bytes(70, "int8") == 70 + 3 * 2
    assert storage.stored_bytes(70, "bf16") == 140
    assert torch.equal(storage.roundtrip(torch.zeros(40), "int4"), torch.zeros(40))


@pytest.mark.parametrize("dtype", ["bf16", "int4"])
def test_a_written_memory_is_what_its_storage_dtype_reads_back(smoke_base, dtype):
    mem, _ = _memory(smoke_base, kind="lora", rank=2, targets="mlp", steps=2, batch_size=2, lr=1e-2, dtype=dtype)
    mem.write(_material(smoke_base)[0])
    tensors = mem.stored_tensors()
    flat = torch.cat([t.detach().flatten() for t in tensors])
    assert torch.equal(storage.roundtrip(flat, dtype), flat)  # already on the stored grid
    assert mem.nbytes() == storage.stored_bytes(flat.numel(), dtype)
    if dtype == "int4":  # coarse: at most 15 distinct values in a block of 32
        assert all(len(b.unique()) <= 15 for b in flat[: flat.numel() // 32 * 32].view(-1, 32))


def test_bad_medium_config_names_the_key():
    with pytest.raises(ValueError, match="dtype 'int3' is not one of"):
        MediumConfig(dtype="int3")
    with pytest.raises(ValueError, match="rank"):
        MediumConfig(rank=0)
    with pytest.raises(ValueError, match="replay"):
        MediumConfig(replay=0.7, base_replay=0.5)


@pytest.mark.parametrize("merge", ["average", "sum", "slerp", "ties", "ema"])
def test_per_session_adapters_consolidate_by_the_merge_closed_form(smoke_base, merge):
    from peft import get_peft_model_state_dict

    from retain.merge import lora as LM
    from retain.merge import ops

    mem, _ = _memory(
        smoke_base,
        kind="lora",
        rank=2,
        memory_rank=4,
        adapters="per_session",
        merge=merge,
        merge_beta=0.25,
        steps=2,
        batch_size=2,
        lr=1e-2,
        dtype="fp32",  # stored exactly
    )

    def products(name):
        return LM.products(get_peft_model_state_dict(mem.model, adapter_name=name), {"lora_alpha": 16})

    sessions, consolidate = [], mem.consolidate

    def spy(n):
        sessions.append(products("session"))
        consolidate(n)

    mem.consolidate = spy
    world = load_world(smoke_base / "world")
    for s in world.sessions[:2]:
        mem.write(Material(s.index, s.transcript, 50))
        assert list(mem.model.peft_config) == ["default"]  # the session adapter is folded in and deleted
    got, (d1, d2) = products("default"), sessions
    expected = {
        "average": lambda k: (d1[k] + d2[k]) / 2,
        "sum": lambda k: d1[k] + d2[k],
        "slerp": lambda k: ops.slerp(d1[k], d2[k], 0.5),
        "ema": lambda k: 0.75 * d1[k] + 0.25 * d2[k],
    }
    for k in got:
        assert mem.model.peft_config["default"].r == 4
        if merge == "ties":  # trimmed and sign-elected: sparse, so only the support is checkable
            assert got[k].abs().sum() > 0 and not torch.allclose(got[k], (d1[k] + d2[k]) / 2, atol=1e-4)
            continue
        # two rank-2 sessions fit a rank-4 memory exactly (up to fp32 SVD round-off)
        assert torch.allclose(got[k], expected[merge](k), atol=1e-5, rtol=1e-3), (merge, k)
    assert max(mem.svd_errors) < (1.0 if merge == "ties" else 1e-3)
    assert mem.nbytes() == sum(p.numel() for n, p in mem.model.named_parameters() if "lora_" in n) * 4


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_liti_moves_the_memory_towards_the_base_model_and_restores_it(smoke_base, kind):
    model, tok = load_model_and_tokenizer(smoke_base / "model")
    x = torch.tensor([[tok.bos_token_id] + tok("Ada Lindqvist lives in", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        base = model(x).logits
    mem = make_memory(MediumConfig(kind=kind, steps=3, batch_size=2, lr=1e-2 if kind == "lora" else 1e-3), model, tok)
    mem.write(_material(smoke_base)[0])
    with torch.no_grad():
        written = mem.model(x).logits
        assert not torch.allclose(written, base, atol=1e-4)
        with mem.liti(0.0):
            assert torch.allclose(mem.model(x).logits, base, atol=1e-5)
        with mem.liti(0.5):
            half = mem.model(x).logits
        assert torch.allclose(mem.model(x).logits, written)  # restored
    assert not torch.allclose(half, base, atol=1e-4) and not torch.allclose(half, written, atol=1e-4)
    with pytest.raises(ValueError, match="LiTI"):
        _memory(smoke_base, kind="soft_prompt")[0].liti(0.5).__enter__()


def test_shot_kinds_build_the_context_they_promise(smoke_base):
    from retain.world.world import Question

    pool = [Question(f"Where was P{i} born?", "Qqq", "recall", f"P{i}", "birth_city") for i in range(6)]
    world = load_world(smoke_base / "world")
    ctx = {}
    for kind in ("many_shot", "reinforced", "unsupervised"):
        mem, _ = _memory(smoke_base, kind="context", shots=3, shot_kind=kind)
        mem.shot_pool = pool
        mem.write(Material(0, world.sessions[0].transcript, 1))
        ctx[kind] = mem.context(pool[0])
        assert ctx[kind].startswith("Session 1.")
        assert mem.held_tokens() == mem.ntokens(mem.kept()[0]) + mem.ntokens(mem.shots())
    assert ctx["many_shot"].count(" A: Qqq") == 3
    assert " A: " not in ctx["unsupervised"] and ctx["unsupervised"].count("Q: ") == 3
    # "Qqq" is not in the vocabulary, so no answer of the model matches: reinforced ICL keeps no shot
    assert "Q: " not in ctx["reinforced"]


@pytest.mark.parametrize("stacked", [False, True])
def test_a_weight_write_follows_its_lr_schedule(smoke_base, monkeypatch, stacked):
    """Warm-up then cosine decay, step by step, in the one-medium write and in the stacked one."""
    import retain.memory.stacked as S
    import retain.memory.weights as W

    seen = []
    monkeypatch.setattr(S if stacked else W, "set_lr", lambda opt, lr: seen.append(lr))
    kw = dict(kind="lora", rank=2, targets="mlp", steps=4, batch_size=2, lr=1e-2, warmup=2, lr_schedule="cosine")
    if stacked:
        model, tok = load_model_and_tokenizer(smoke_base / "model")
        mem = S.StackedLora(S.Stack(model, MediumConfig(**kw), [0]), 0, tok, MediumConfig(**kw))
    else:
        mem, _ = _memory(smoke_base, **kw)
    mem.write(_material(smoke_base)[0])
    assert seen == pytest.approx([5e-3, 1e-2, 1e-2, 5e-3])  # cosine reaches 0 one step after the last
    with pytest.raises(ValueError, match="warmup must be in \\[0, steps\\)"):
        MediumConfig(kind="lora", steps=4, warmup=4)


def test_a_null_space_write_leaves_the_protected_text_as_it_was(smoke_base):
    """null_space projects A off the inputs that base-knowledge text feeds each adapted module: with one short
    text, its inputs span a few directions, all of them protected, so the MLP adapter changes nothing the text
    reads (and so no later layer's input either), while the session's own text moves."""
    kw = dict(kind="lora", rank=2, targets="mlp", steps=3, batch_size=2, lr=1e-2, dtype="fp32")
    text = "Ada Lindqvist lives in Lyon."
    material = _material(smoke_base)[0]
    moved = {}
    for null in (0.0, 0.999999):
        mem, tok = _memory(smoke_base, null_space=null, **kw)
        mem.write(material)
        probe = [tok(t, add_special_tokens=False)["input_ids"] for t in (text, material.text[:200])]
        with mem.bare():
            bare = [mem.nll([p]) for p in probe]
        moved[null] = [abs(mem.nll([p]) - b) for p, b in zip(probe, bare)]
    assert moved[0.0][0] > 1e-4 and moved[0.0][1] > 1e-4  # without it the write moves both
    assert moved[0.999999][0] < 1e-5 < 1e-3 < moved[0.999999][1]
    U = mem.guarded
    assert U and all(0 < u.shape[1] < u.shape[0] for _, u in U)  # a few protected directions of each module
    if bf16_is_native("cpu"):  # under bf16 autocast the sums stay fp32 and the projection runs
        set_precision("bf16")
        try:
            mem.guarded = None
            mem.constrain()
            assert all(u.dtype == torch.float32 for _, u in mem.guarded)
        finally:
            set_precision("fp32")
    with pytest.raises(ValueError, match="null_space is a fraction"):
        MediumConfig(kind="lora", null_space=1.0)
