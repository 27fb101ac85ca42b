"""Distillation into memory: the top-k KL against a direct computation, the KV prefix (exact at a whole-session
init, shapes under GQA, positions, bytes, composition), distill writes end to end, and bad input."""

import math
import random

import pytest
import torch
import torch.nn.functional as F

from retain.errors import RetainError
from retain.memory import Material, MediumConfig, make_memory
from retain.memory import distill as D
from retain.memory.kv_prefix import compose, forward_with_prefix, kv_of
from retain.models.build import load_model_and_tokenizer
from retain.models.generate import kv_pairs
from retain.models.text import text_format
from retain.train.data import right_pad
from retain.world.io import load_world


def test_topk_kl_is_the_kl_of_the_coarsened_distributions():
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05])
    q = torch.tensor([0.3, 0.3, 0.1, 0.2, 0.1])
    idx = torch.tensor([[0, 1, 2]])
    got = D.topk_kl(q.log()[None], idx, p.log()[idx])
    rest_p, rest_q = 0.15, 0.3
    expected = sum(p[i] * math.log(p[i] / q[i]) for i in range(3)) + rest_p * math.log(rest_p / rest_q)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    # with k = V it is the full KL; with a student equal to the teacher it is zero
    full = D.topk_kl(q.log()[None], torch.arange(5)[None], p.log()[None])
    assert float(full) == pytest.approx(float(F.kl_div(q.log(), p, reduction="sum")), rel=1e-5)
    assert float(D.topk_kl(p.log()[None], idx, p.log()[idx])) == pytest.approx(0.0, abs=1e-7)


@pytest.fixture(scope="module")
def base(smoke_base):
    model, tok = load_model_and_tokenizer(smoke_base / "model")
    return model, tok, load_world(smoke_base / "world")


def test_positions_after_a_prefix_match_the_full_sequence(base):
    model, tok, world = base
    ids = [tok.bos_token_id] + tok(world.sessions[0].transcript, add_special_tokens=False)["input_ids"][:30]
    P = 12
    with torch.no_grad():
        full = model(input_ids=torch.tensor([ids])).logits
        rest = torch.tensor([ids[P:], ids[P:-5] + [tok.pad_token_id] * 5])  # a right-padded second row
        mask = torch.tensor([[1] * (len(ids) - P), [1] * (len(ids) - P - 5) + [0] * 5])
        after = forward_with_prefix(model, kv_of(model, ids[:P]), rest, mask)
    assert torch.allclose(after[0], full[0, P:], atol=1e-4)
    assert torch.allclose(after[1, : len(ids) - P - 5], full[0, P:-5], atol=1e-4)


def test_prefix_of_the_whole_session_reproduces_the_teacher(base):
    model, tok, world = base
    s = world.sessions[0]
    m = Material(s.index, s.transcript, 1, transcript=s.transcript, questions=list(s.questions))
    ctx = [tok.bos_token_id] + tok(s.transcript, add_special_tokens=False)["input_ids"]
    teacher_mem = make_memory(MediumConfig(kind="lora", rank=2), model, tok)  # an empty adapter: the base model
    queries, _ = D.query_ids("oracle", teacher_mem, m, ctx, 4, random.Random(0))
    teachers, _ = D.teach(teacher_mem, ctx, queries, k=20)
    model = teacher_mem.model.get_base_model()
    mem = make_memory(MediumConfig(kind="kv_prefix", prompt_tokens=len(ctx)), model, tok)
    mem.initialise(ctx)
    loss = D.student_loss(mem, teachers)
    loss.backward()
    assert loss.item() < 1e-4
    assert max(float(p.grad.abs().max()) for p in mem.trainable()) < 1e-4
    # a prefix of only part of the session is not the teacher
    part = make_memory(MediumConfig(kind="kv_prefix", prompt_tokens=8), model, tok)
    part.initialise(ctx)
    assert float(D.student_loss(part, teachers)) > 10 * max(float(loss), 1e-5)
    # hidden states too (deep context distillation): the whole-session prefix matches them, part does not
    layers = list(range(model.config.num_hidden_layers))
    deep, _ = D.teach(teacher_mem, ctx, queries, k=20, layers=layers)
    assert deep[0].hidden.shape == (len(layers), len(queries[0]) - 1, model.config.hidden_size)
    assert float(D.student_loss(mem, deep, layers, weight=1.0)) < 1e-2  # bf16 targets: ~1e-3 per layer
    assert float(D.student_loss(part, deep, layers, weight=1.0)) > float(D.student_loss(part, deep)) + 0.05


def test_distill_on_answer_teaches_only_the_tokens_after_the_answer_lead(base):
    model, tok, world = base
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    ctx = [tok.bos_token_id] + enc(world.sessions[0].transcript)
    lead = enc(text_format(tok).answer_lead)
    query = enc(" Q: Where?") + lead + enc(" Lisbon") + [tok.eos_token_id]
    mem = make_memory(MediumConfig(kind="lora", rank=2, objective="distill"), model, tok)
    whole = D.teach(mem, ctx, [query], k=5)[0][0]
    mem.cfg.distill_on = "answer"
    answer = D.teach(mem, ctx, [query], k=5)[0][0]
    first = len(enc(" Q: Where?")) + len(lead)
    assert whole.first == 1 and answer.first == first and answer.top_idx.shape[0] == len(query) - first
    assert torch.equal(answer.top_idx, whole.top_idx[first - 1 :])  # the same positions of the same teacher
    assert D.answer_start(enc(" Notes: Lisbon"), lead) == 1  # no lead: the whole query
    # the student is scored on the answer alone: the whole session as a prefix is the teacher there too
    prefix = make_memory(MediumConfig(kind="kv_prefix", prompt_tokens=len(ctx)), mem.model.get_base_model(), tok)
    prefix.initialise(ctx)
    assert float(D.student_loss(prefix, [answer])) < 1e-4
    part = make_memory(MediumConfig(kind="kv_prefix", prompt_tokens=8), mem.model.get_base_model(), tok)
    part.initialise(ctx)
    assert float(D.student_loss(part, [answer])) != pytest.approx(float(D.student_loss(part, [whole])), rel=1e-3)


def test_kv_prefix_shapes_bytes_and_composition_under_gqa(base):
    model, tok, world = base
    cfg = model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # the default model uses GQA
    mem = make_memory(MediumConfig(kind="kv_prefix", prompt_tokens=6, prefix_init="text"), model, tok,
                      base_text=lambda rng: "Ada Lindqvist lives in Lyon .")  # fmt: skip
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    prefix = mem.prefix()
    assert all(k.shape == v.shape == (1, cfg.num_key_value_heads, 6, head_dim) for k, v in prefix)
    assert len(prefix) == cfg.num_hidden_layers
    stored = sum(k.numel() + v.numel() for k, v in prefix)
    assert mem.nbytes() == stored * 2 and mem.params() == stored  # bf16, the frozen sink included
    assert sum(p.numel() for p in mem.trainable()) == stored * 5 // 6  # all but the sink (position 0) train
    assert compose(prefix, prefix)[0][0].shape[2] == 12
    assert compose(prefix, prefix, shared_sink=True)[0][0].shape[2] == 11
    q = world.sessions[0].questions[:2]
    assert len(mem.answer(q)) == 2  # answers continue the prefix without a BOS of their own


@pytest.mark.parametrize("kind,queries", [("lora", "self_study"), ("kv_prefix", "spans"), ("soft_prompt", "oracle")])
def test_distill_write_trains_the_memory_and_counts_its_cost(smoke_base, kind, queries):
    model, tok = load_model_and_tokenizer(smoke_base / "model")
    world = load_world(smoke_base / "world")
    prefix = {"prompt_tokens": 4} if kind != "lora" else {}
    mem = make_memory(MediumConfig(kind=kind, objective="distill", queries=queries, n_queries=4, steps=3,
                                   batch_size=2, lr=1e-2, base_replay=0.25, replay=0.25, **prefix),
                      model, tok, base_text=lambda rng: "Ada Lindqvist lives in Lyon .")  # fmt: skip
    before = [p.detach().clone() for p in mem.trainable()]
    if kind == "kv_prefix":  # the prefix is made at the first write: keep it as initialised, before training
        init = mem.initialise
        mem.initialise = lambda ids: (init(ids), before.extend(p.detach().clone() for p in mem.trainable()))
    for s in world.sessions[:2]:
        cost = mem.write(Material(s.index, s.transcript, 10, transcript=s.transcript, questions=list(s.questions)))
        assert cost.tokens > 0 and cost.seconds > 0
    after = mem.trainable()
    assert before and len(after) == len(before) and any(not torch.equal(a, b) for a, b in zip(after, before))
    if kind == "kv_prefix":  # position 0, the BOS sink, stays the model's own
        sink = kv_of(model, [tok.bos_token_id])
        assert all(torch.allclose(k[:, :, :1], sk, atol=1e-6) for (k, _), (sk, _) in zip(mem.prefix(), sink))
    assert len(mem.session_teachers) == 2 and mem.base_teachers


def test_hidden_loss_is_the_normalised_l1_per_layer_and_hooks_see_the_queries_positions(base):
    t = torch.tensor([[[1.0, -1.0], [2.0, 0.0]], [[0.5, 0.5], [0.5, -0.5]]])  # (layers, N, d)
    s = t.clone()
    s[0, 0, 0] = 2.0  # layer 0: mean |diff| 0.25 over mean |t| 1.0; layer 1 exact
    assert float(D.hidden_loss(s, t)) == pytest.approx(0.125)
    model, tok, _ = base
    ids = torch.tensor([[tok.bos_token_id, 5, 6, 7]])
    last = model.config.num_hidden_layers - 1
    with torch.no_grad(), D.captured(model, [0, last]) as store:
        out = model(input_ids=ids, output_hidden_states=True)
    assert set(store) == {0, last}
    assert torch.allclose(store[0], out.hidden_states[1])
    assert torch.allclose(model.model.norm(store[last]), out.hidden_states[-1], atol=1e-5)  # HF's last is normed
    # a soft prompt's positions sit in front of the ids: `at` takes the ids' own positions
    mem = make_memory(MediumConfig(kind="soft_prompt", prompt_tokens=3), model, tok)
    with torch.no_grad(), D.captured(mem.model, [0]) as store:
        mem.logits(ids, torch.ones_like(ids))
    assert store[0].shape[1] == 7 and torch.equal(D.at(store, [0], 0, 4, 1, 3), store[0][0, 4:6][None])


def test_a_distill_write_with_hidden_matching_keeps_the_teachers_states(smoke_base):
    model, tok = load_model_and_tokenizer(smoke_base / "model")
    world = load_world(smoke_base / "world")
    cfg = MediumConfig(
        kind="lora",
        objective="distill",
        queries="spans",
        n_queries=4,
        steps=2,
        batch_size=2,
        hidden_weight=1.0,
        hidden_layers=[-1],
    )
    mem = make_memory(cfg, model, tok)
    assert cfg.matched_layers(model.config) == [model.config.num_hidden_layers - 1]
    s = world.sessions[0]
    mem.write(Material(s.index, s.transcript, 10, transcript=s.transcript, questions=list(s.questions)))
    assert all(t.hidden.shape[:2] == (1, len(t.ids) - 1) for t in mem.session_teachers[0])
    with pytest.raises(RetainError, match="hidden_layers \\[7\\] out of range"):
        make_memory(MediumConfig(kind="lora", objective="distill", hidden_weight=1.0, hidden_layers=[7]), model, tok)


def test_a_focused_teacher_reads_only_the_sentences_about_the_querys_people(base):
    model, tok, world = base
    mem = make_memory(MediumConfig(kind="lora", rank=2, objective="distill", focus="entity"), model, tok)
    s = world.sessions[0]
    person = s.new_entities[0]
    stranger = next(n for n in world.entities if world.entities[n].split == "known_qa")
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    queries = [enc(f" Q: Where does {person} live? A:"), enc(f" Q: Where does {stranger} live? A:")]
    about, other = D.focused_contexts(mem, s.transcript, queries)
    assert tok.decode(about[1:]).count(person.split()[-1]) >= len(world.entities[person].attrs)
    assert other == [tok.bos_token_id]  # a person the session never names: the medium alone
    (t_about, t_other), _ = D.teach(mem, [about, other], queries, k=5)
    with torch.no_grad():
        alone = F.log_softmax(mem.model(input_ids=torch.tensor([other + queries[1]])).logits[0, 1:-1], -1)
    assert torch.allclose(t_other.top_logp, alone.topk(5, -1).values, atol=1e-5)
    assert not torch.equal(t_about.top_idx, D.teach(mem, [other, other], queries, k=5)[0][0].top_idx)


def test_a_sentence_cue_makes_self_study_ask_about_each_named_sentence(base, monkeypatch):
    model, tok, world = base
    s = world.sessions[0]
    material = Material(s.index, s.transcript, 10, transcript=s.transcript)
    named = [c for c in D.sentences(s.transcript) if D.names(c)]
    assert len(named) >= 2
    seen = []
    real = D.generate
    monkeypatch.setattr(D, "generate", lambda m, rows, **kw: seen.extend(rows) or real(m, rows, **kw))
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    n = len(named) + 1
    for cue in ("sentence", "alone", "none"):
        seen.clear()
        mem = make_memory(MediumConfig(kind="lora", rank=2, objective="distill", cue=cue, query_tokens=4), model, tok)
        context = mem.teacher_context(material)
        queries, spent = D.query_ids("self_study", mem, material, context, n, random.Random(0))
        if cue != "none":  # each named sentence in turn (then again), read after the transcript or alone, then ` Q:`
            seeds = [enc(" Q:")] * n
            before = context if cue == "sentence" else [tok.bos_token_id]
            assert seen == [before + enc(" " + named[i % len(named)]) + seeds[i] for i in range(n)]
        else:
            seeds = [enc(text_format(tok).seeds[i % len(text_format(tok).seeds)]) for i in range(n)]
            assert seen == [context + seeds[i] for i in range(n)]
        assert all(q[: len(sd)] == sd for q, sd in zip(queries, seeds))  # a query is its seed and what followed
        assert spent == sum(len(r) + len(q) - len(sd) for r, q, sd in zip(seen, queries, seeds))


def test_query_turns_make_each_query_a_conversation(base, monkeypatch):
    model, tok, world = base
    s = world.sessions[0]
    material = Material(s.index, s.transcript, 10, transcript=s.transcript)
    calls = []
    real = D.generate
    monkeypatch.setattr(D, "generate", lambda m, rows, **kw: calls.append(list(rows)) or real(m, rows, **kw))
    mem = make_memory(MediumConfig(kind="lora", rank=2, objective="distill", cue="alone", query_tokens=6,
                                   query_turns=3), model, tok)  # fmt: skip
    n, q, eos = 4, tok(" Q:", add_special_tokens=False)["input_ids"], tok.eos_token_id
    queries, spent = D.query_ids("self_study", mem, material, mem.teacher_context(material), n, random.Random(0))
    assert len(calls) == 3  # one generation per turn, over every query
    for first, last, query in zip(calls[0], calls[2], queries):
        cue = first[: -len(q)]
        # asked on after its answers
        assert last == cue + query[: max(i for i, t in enumerate(query) if t == eos) + 1] + q
        assert query.count(eos) == 2 and query[: len(q)] == q  # three turns, each from ` Q:`
    assert spent == sum(len(r) for c in calls for r in c) + sum(len(x) - 3 * len(q) - 2 for x in queries)
    with pytest.raises(ValueError, match="query_turns"):
        MediumConfig(query_turns=0)


def test_a_sharpened_teacher_divides_its_logits_before_the_top_k(base, monkeypatch):
    model, tok, world = base
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    mem = make_memory(MediumConfig(kind="lora", rank=2, objective="distill"), model, tok)
    context, query = (
        [tok.bos_token_id] + enc(world.sessions[0].transcript)[:24],
        enc(world.sessions[0].transcript)[24:30],
    )
    plain = D.teach(mem, context, [query], k=5)[0][0]
    sharp = D.teach(mem, context, [query], k=5, temperature=0.5)[0][0]
    logits = mem.model(input_ids=torch.tensor([context + query])).logits[
        0, len(context) : len(context) + len(query) - 1
    ]
    assert torch.allclose(sharp.top_logp, F.log_softmax(logits / 0.5, -1).topk(5, -1).values, atol=1e-5)
    assert torch.equal(sharp.top_idx, plain.top_idx)  # the same tokens in the same order, more mass on the first
    assert (sharp.top_logp[:, 0] > plain.top_logp[:, 0]).all()
    seen = []  # a medium's write hands its teacher_temperature to every teacher pass
    monkeypatch.setattr(D, "teach", lambda *a, temperature=1.0, **kw: seen.append(temperature) or ([plain], 0))
    s = world.sessions[0]
    cfg = MediumConfig(kind="lora", rank=2, objective="distill", queries="oracle", steps=1, teacher_temperature=0.25)
    make_memory(cfg, model, tok).write(Material(s.index, s.transcript, 10, transcript=s.transcript,
                                                questions=list(s.questions)))  # fmt: skip
    assert seen == [0.25]
    with pytest.raises(ValueError, match="teacher_temperature"):
        MediumConfig(teacher_temperature=0.0)


def test_bad_distill_input_is_one_line(base, smoke_base):
    model, tok, world = base
    with pytest.raises(RetainError, match="does not fit the model's context"):
        make_memory(MediumConfig(kind="kv_prefix", prompt_tokens=10**6), model, tok)
    fresh, _ = load_model_and_tokenizer(smoke_base / "model")
    with pytest.raises(RetainError, match="exceeds the vocabulary"):
        make_memory(MediumConfig(kind="lora", objective="distill", top_k=10**6), fresh, tok)
    assert not hasattr(fresh, "peft_config")  # refused before the LoRA wrapped the model
    mem = make_memory(MediumConfig(kind="lora", objective="distill", n_queries=2, steps=1), model, tok)
    s = world.sessions[0]
    with pytest.raises(RetainError, match="no transcript text"):
        mem.write(Material(0, "notes", 1, transcript="  "))
    with pytest.raises(RetainError, match="no text to write"):
        mem.write(Material(0, "", 1, transcript=s.transcript))


def test_composition_with_a_shared_sink_puts_each_prefix_where_it_sits(base):
    model, tok, world = base
    x, y = tok(" Ada lives in Lyon . Bo works in Oslo .", add_special_tokens=False)["input_ids"], [7, 8, 9]
    bos = tok.bos_token_id
    both = compose(kv_of(model, [bos] + x), kv_of(model, [bos] + y), model=model, shared_sink=True)
    whole = kv_of(model, [bos] + x + y)
    # the first layer's keys and values depend on the token and its position only: they must agree exactly
    assert both[0][0].shape == whole[0][0].shape
    assert torch.allclose(both[0][0], whole[0][0], atol=1e-5) and torch.allclose(both[0][1], whole[0][1], atol=1e-5)


def test_shift_repositions_keys_like_a_later_start(base):
    from retain.memory.kv_prefix import shift

    model, tok, world = base
    ids = [tok.bos_token_id] + tok(world.sessions[0].transcript, add_special_tokens=False)["input_ids"][:9]
    with torch.no_grad():
        at0 = kv_of(model, ids)
        out = model(input_ids=torch.tensor([ids]), position_ids=torch.arange(7, 7 + len(ids))[None], use_cache=True)
    k7 = kv_pairs(out)[0][0]
    # layer 0's keys depend only on the token and its position: shifting by 7 is starting at 7
    assert torch.allclose(shift(model, at0, 7)[0][0], k7, atol=1e-5)
    assert not torch.allclose(at0[0][0], k7, atol=1e-3)
    assert compose(at0, at0, model=model)[0][0].shape[2] == 2 * len(ids)


def test_base_study_distils_the_models_own_questions_after_base_text(smoke_base):
    from retain.continual.rehearsal import Rehearsal

    world = load_world(smoke_base / "world")
    s = world.sessions[0]
    material = Material(s.index, s.transcript, 10, transcript=s.transcript, questions=list(s.questions))
    tok = load_model_and_tokenizer(smoke_base / "model")[1]
    enc = lambda t: tok(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    rehearsal, tokens = Rehearsal(world), {}
    for study in (0.0, 0.5):
        texts, model = [], load_model_and_tokenizer(smoke_base / "model")[0]
        mem = make_memory(MediumConfig(kind="lora", objective="distill", queries="oracle", steps=1, batch_size=2,
                                       base_replay=0.5, base_queries=8, base_study=study, query_tokens=8),
                          model, tok,
                          base_text=lambda rng, texts=texts: texts.append(rehearsal(rng)) or texts[-1])  # fmt: skip
        tokens[study] = mem.write(material).tokens
        k = round(8 * study)
        pool = [t.ids for t in mem.base_teachers]
        assert pool[k:] == [enc(t) for t in texts[k:]]  # the rest is the base text as drawn
        # the studied part: the model's own " Q: ..." after each text, not the text
        assert all(
            q[: len(enc(text_format(tok).seeds[0]))] == enc(text_format(tok).seeds[0]) and q != enc(t)
            for q, t in zip(pool[:k], texts)
        )
    assert tokens[0.5] > tokens[0.0]  # the generation after each studied text is part of the write's cost
    with pytest.raises(ValueError, match="base_study"):
        MediumConfig(base_study=1.5)


def test_per_session_blocks_grow_the_prefix_and_keep_the_earlier_block(smoke_base):
    model, tok = load_model_and_tokenizer(smoke_base / "model")
    world = load_world(smoke_base / "world")
    P = 4
    mem = make_memory(MediumConfig(kind="kv_prefix", blocks="per_session", objective="distill", queries="spans",
                                   n_queries=4, steps=2, batch_size=2, lr=1e-2, prompt_tokens=P, replay=0.5),
                      model, tok)  # fmt: skip
    m = [Material(s.index, s.transcript, 10, transcript=s.transcript) for s in world.sessions[:2]]
    mem.write(m[0])
    first = mem.prefix()
    one_block = mem.nbytes()
    mem.write(m[1])
    both = mem.prefix()
    assert both[0][0].shape[2] == 2 * P - 1  # one sink for both blocks
    # the first block is frozen: the memory starts with it exactly; the second block trained after it
    assert all(torch.equal(k[:, :, :P], k1) and torch.equal(v[:, :, :P], v1) for (k, v), (k1, v1) in zip(both, first))
    assert mem.nbytes() == sum(k.numel() + v.numel() for k, v in both) * 2 > one_block  # bf16, against the tensors
    assert sum(p.numel() for p in mem.trainable()) == sum(k.numel() + v.numel() for k, v in first) * (P - 1) // P
    # the new block sits after the frozen one: the live prefix is their composition with the second shifted
    second = [(torch.cat([sk, k.detach()], 2), torch.cat([sv, v.detach()], 2))
              for (sk, sv), k, v in zip(mem.sink, mem.keys, mem.values)]  # fmt: skip
    expected = compose(first, second, model=model, shared_sink=True)
    assert all(torch.allclose(a, b) for (ka, va), (kb, vb) in zip(both, expected) for a, b in ((ka, kb), (va, vb)))
    model.config.max_position_embeddings = 2 * P  # a third block would not fit
    with pytest.raises(RetainError, match="does not fit the model's context"):
        mem.write(m[0])
    assert mem.prefix()[0][0].shape[2] == 2 * P - 1  # nothing written is lost


def test_route_entity_reads_only_the_blocks_that_name_the_prompts_people(base):
    from retain.memory.kv_prefix import routes
    from retain.memory.names import index_names, names

    model, tok, world = base
    P, bos = 6, tok.bos_token_id
    s0, s1 = world.sessions[:2]
    pa, pb = (kv_of(model, [bos] + tok(s.transcript, add_special_tokens=False)["input_ids"][: P - 1]) for s in (s0, s1))
    keys = [index_names(s0.transcript), index_names(s1.transcript)]
    mem = make_memory(MediumConfig(kind="kv_prefix", prompt_tokens=P, route="entity"), model, tok)
    mem.load(compose(pa, pb, model=model, shared_sink=True), names=keys)
    # a name kept without its first word (it started a sentence) still finds the whole name
    assert routes([{"Lindqvist"}], ["Where does Ada Lindqvist live?", "Where does Ada live?"], P)[0][:, 1].tolist() == [
        1,
        0,
    ]
    # a name that opens a sentence is kept whole; people who share a surname do not share a block
    opened = index_names("User: Wren Soto moved to Lyon. Otto Lorenz guided Hugo Lindqvist. I agree.")
    assert opened == {"Wren Soto", "Lyon", "Otto Lorenz", "Hugo Lindqvist"}
    assert routes([opened, {"Nico Soto"}], ["Where does Nico Soto live?"], P)[0][0].tolist() == [1] + [0] * (P - 1) + [
        1
    ] * (P - 1)
    q0 = [q for q in s0.questions if not any(n in s1.transcript for n in names(q.text))][:3]
    nobody = "Where does Zzyx Qorb live ?"
    seen, start = mem.route([q0[0].text, nobody])
    assert seen.tolist() == [[1] * P + [0] * (P - 1), [1] + [0] * (2 * P - 2)]
    assert start.tolist() == [P, 1]  # after the last block read: the first block is read as it was trained
    ids, mask = right_pad(
        [tok(t, add_special_tokens=False)["input_ids"] for t in (q0[0].text, nobody)], tok.pad_token_id
    )
    with torch.no_grad():
        got = mem.logits(ids, mask)
        alone = forward_with_prefix(model, pa, ids[:1], mask[:1])
        bare = model(input_ids=torch.cat([torch.tensor([[bos]]), ids[1:]], 1)).logits[:, 1:]
    n0, n1 = int(mask[0].sum()), int(mask[1].sum())
    assert torch.allclose(got[0, :n0], alone[0, :n0], atol=1e-4)  # as if the other block were not there
    assert torch.allclose(got[1, :n1], bare[0, :n1], atol=1e-4)  # naming nobody: the bare model
    first = make_memory(MediumConfig(kind="kv_prefix", prompt_tokens=P), model, tok)
    first.load(pa)
    assert mem.answer(q0) == first.answer(q0)  # generation takes the same route
    index = sum(len(n.encode()) + 1 for k in keys for n in k)
    assert mem.nbytes() == (2 * P - 1) * sum(k.shape[1] * k.shape[3] * 2 for k, _ in pa) * 2 + index
    with pytest.raises(RetainError, match="not 3 block"):
        mem.load(compose(pa, pb, model=model, shared_sink=True), names=keys + [set()])
    with pytest.raises(ValueError, match="route applies to kv_prefix"):
        MediumConfig(kind="lora", route="entity")


def test_routed_base_replay_is_about_the_known_people_the_session_names(smoke_base):
    from retain.continual.rehearsal import Rehearsal
    from retain.memory.names import index_names

    world = load_world(smoke_base / "world")
    model, tok = load_model_and_tokenizer(smoke_base / "model")
    known = {e.name for e in world.known}
    s = next(s for s in world.sessions if known & index_names(s.transcript))
    named = known & index_names(s.transcript)
    rehearsal, drawn = Rehearsal(world), []

    class Recorded:  # the loop's rehearsal (a ReplaySource), with every text drawn about someone kept
        indexed, settled, stale, asked = True, rehearsal.settled, rehearsal.stale, rehearsal.asked

        def __call__(self, rng):
            return rehearsal(rng)

        def about(self, names):
            draw = rehearsal.about(names)
            return draw and (lambda rng: drawn.append(draw(rng)) or drawn[-1])

    cfg = MediumConfig(kind="kv_prefix", prompt_tokens=4, route="entity", objective="distill", queries="spans",
                       focus="entity", base_replay=0.5, base_queries=6, query_tokens=8)  # fmt: skip
    mem = make_memory(cfg, model, tok, base_text=Recorded())
    material = Material(s.index, s.transcript, 10, transcript=s.transcript)
    mem.names = [index_names(s.transcript)]
    teachers, spent = mem.base_pool(material, random.Random(0))
    assert len(drawn) == 6 and all(any(n in t for n in named) for t in drawn)  # only the people it names
    assert len(teachers) > 0 and spent > 0
    seed = tok(text_format(tok).seeds[0], add_special_tokens=False)["input_ids"]
    assert all(t.ids[: len(seed)] == seed for t in teachers)  # the bare model's own questions, not the texts
    mem.names = [{"Nobody Known"}]
    assert mem.base_pool(material, random.Random(0)) == ([], 0)
    assert Rehearsal(world).about({"Nobody Known"}) is None


def test_base_replay_made_before_an_update_leaves_out_the_updated_people_once_it_is_read(smoke_base):
    from retain.continual.rehearsal import Rehearsal

    world = load_world(smoke_base / "world")
    model, tok = load_model_and_tokenizer(smoke_base / "model")
    rehearsal = Rehearsal(world)
    cfg = MediumConfig(kind="lora", objective="distill", queries="oracle", base_replay=0.5, base_queries=64,
                       base_study=0.0, query_tokens=8)  # fmt: skip
    mem = make_memory(cfg, model, tok, base_text=rehearsal)
    s = world.sessions[0]
    material = Material(s.index, s.transcript, 10, transcript=s.transcript)
    made, spent = mem.base_pool(material, random.Random(0))  # made at the first write, nothing read yet
    assert len(made) == 64 and spent > 0
    rehearsal.upto(world.sessions[-1].index)
    kept, spent = mem.base_pool(material, random.Random(0))
    touched = {f.entity for s in world.sessions for f in s.updates}
    about = lambda t: any(n in tok.decode(t.ids) for n in touched)  # noqa: E731
    assert spent == 0 and any(about(t) for t in made)  # reused, not remade
    assert kept == [t for t in made if not about(t)]
