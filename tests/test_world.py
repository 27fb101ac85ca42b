"""World invariants: answers follow from the world, updates win, held-out templates stay out of training.
`pytest tests/test_world.py`"""

import random
import re
from dataclasses import replace

import pytest

from retain.errors import RetainError
from retain.train.data import MixtureConfig, sample_example
from retain.world import examples as X
from retain.world import render as R
from retain.world import templates as T
from retain.world.io import load_user_sessions, load_world, save_world, tokenizer_corpus
from retain.world.render import date_key
from retain.world.world import ATTRIBUTE_SETS, WorldConfig, build_world


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig(n_known=40, n_eval=10, n_sessions=6, updates_per_session=2))


def test_world_is_reproducible_from_its_seed(world):
    again = build_world(world.config)
    assert [s.transcript for s in again.sessions] == [s.transcript for s in world.sessions]
    assert {n: e.attrs for n, e in again.entities.items()} == {n: e.attrs for n, e in world.entities.items()}
    other = build_world(WorldConfig(n_known=40, n_eval=10, n_sessions=6, updates_per_session=2, seed=1))
    assert {n: e.attrs for n, e in other.entities.items()} != {n: e.attrs for n, e in world.entities.items()}


def test_every_session_answer_follows_from_the_world(world):
    for s in world.sessions:
        assert s.questions, "every stream session carries questions"
        for q in s.questions:
            if q.kind == "recall":
                assert q.entity in s.new_entities and world.entities[q.entity].attrs[q.attribute] == q.answer
            elif q.kind == "update":
                assert world.value(q.entity, q.attribute, after_session=s.index) == q.answer
            elif q.kind == "two_hop":
                mentor = world.entities[world.entities[q.entity].attrs["mentor"]]
                assert mentor.attrs[q.attribute] == q.answer
            elif q.kind == "compare":
                a, b = (world.entities[n] for n in q.entity.split("|"))
                earlier = min((a, b), key=lambda e: date_key(e.attrs["birth_date"]))
                assert q.answer == earlier.name and date_key(a.attrs["birth_date"]) != date_key(b.attrs["birth_date"])
            else:
                raise AssertionError(q.kind)
            assert q.answer  # single, non-empty answer


def test_session_text_states_every_fact_it_claims(world):
    for s in world.sessions:
        for f in s.facts:
            assert f.entity in s.transcript and f.value in s.transcript


def test_updates_override_and_are_not_base_knowledge(world):
    updated = world.updated_facts()
    assert len(updated) == sum(len(s.updates) for s in world.sessions) > 0
    for s in world.sessions:
        for u in s.updates:
            original = world.entities[u.entity].attrs[u.attribute]
            assert u.value != original and u.entity in {e.name for e in world.known}
            assert world.value(u.entity, u.attribute, after_session=s.index - 1) == original
            assert world.value(u.entity, u.attribute) == u.value
            assert any(q.kind == "update" and q.entity == u.entity and q.answer == u.value for q in s.questions)


def test_splits_are_disjoint_and_values_in_their_sets(world):
    splits = {e.split for e in world.entities.values()}
    assert splits == {"known_qa", "known_bio", "eval", "session"}
    session_names = {n for s in world.sessions for n in s.new_entities}
    assert session_names == {e.name for e in world.split("session")}
    known = {e.name for e in world.known}
    for e in world.entities.values():
        for a, v in e.attrs.items():
            assert v in (ATTRIBUTE_SETS[a] if a != "mentor" else known)


def test_bits_are_exact(world):
    import math

    per_entity = sum(math.log2(len(s)) for s in ATTRIBUTE_SETS.values()) + math.log2(40)
    assert world.bits()["eval"] == pytest.approx(10 * per_entity)
    assert world.stats()["bits_per_entity"] == pytest.approx(per_entity, abs=0.01)


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{(?:name|value|other)\}", template)
    return re.compile(r"[^.?]+".join(re.escape(p) for p in parts))


def _question_lists(forms: int) -> tuple[list[list[str]], list[str]]:
    """The question template lists of a world of `forms` question forms (recall and two-hop), and comparison's."""
    asked = T.phrasings(forms)
    return [*asked.question.values(), *asked.two_hop.values()], asked.compare


@pytest.fixture(scope="module", params=[4, 10])
def forms_world(request, world):
    """The test world, and the same world asking 10 question forms per attribute."""
    return world if request.param == 4 else build_world(replace(world.config, question_forms=10))


def test_heldout_templates_never_appear_in_training_text(forms_world):
    world, forms = forms_world, forms_world.config.question_forms
    questions, compare = _question_lists(forms)
    lists = [*T.BIO.values(), *questions, *T.UPDATE.values()]
    heldout = [t for ts in lists for t in T.split(ts, heldout=True)] + T.split(compare, True)
    heldout += T.split(T.INTRO, True)
    train = [t for ts in lists for t in T.split(ts, heldout=False)]
    assert not set(heldout) & set(train)
    assert len(T.split(questions[0], False)) == (3 if forms == 4 else 8)
    rng = random.Random(0)
    reserved = set(world.entities)
    text = " ".join(seg for _ in range(600) for seg, _ in sample_example(world, MixtureConfig(), rng, reserved))
    # the stream's sessions (written into memory in later issues) also use only training templates
    text += " ".join(s.transcript + " " + " ".join(q.text for q in s.questions) for s in world.sessions)
    # a 4-form world never asks the added forms: it trains on the text every recorded number was measured on
    unused = [] if forms == 10 else [t for ts in [*T.MORE_QUESTION.values(), *T.MORE_TWO_HOP.values()] for t in ts]
    for t in heldout + unused:
        assert not _template_regex(t).search(text), f"held-out or unused template in training text: {t}"
    hits = sum(bool(_template_regex(t).search(text)) for t in train)
    assert hits > 0.9 * len(train)  # the check can see templates at all


def test_heldout_eval_uses_only_heldout_templates(forms_world):
    world = forms_world
    items = X.open_book_items(world.split("eval"), world, random.Random(0), heldout=True)
    questions, _ = _question_lists(world.config.question_forms)
    train_q = [t for ts in questions for t in T.split(ts, False)]
    heldout_q = [t for ts in questions for t in T.split(ts, True)]
    asked = set()
    for _, q in items:
        if q.kind == "recall":
            assert q.heldout and not any(_template_regex(t).fullmatch(q.text) for t in train_q)
            asked |= {t for t in heldout_q if _template_regex(t).fullmatch(q.text)}
    assert len(asked) > 0.8 * len(T.QUESTION) * (1 if world.config.question_forms == 4 else 2)


def test_question_forms_are_checked():
    with pytest.raises(ValueError, match="world.question_forms must be one of"):
        WorldConfig(question_forms=6)


def test_open_book_answers_are_in_the_context(world):
    for context, q in X.open_book_items(world.split("eval"), world, random.Random(1)):
        if q.kind in ("recall", "compare"):
            assert q.answer in context


def test_binding_contexts_tell_people_apart_only_by_name(world):
    rng = random.Random(5)
    items = X.binding_items(world, rng, n_contexts=12, n_people=4)
    assert len(items) == 48
    for context, q in items:
        sentences = context.split(". ")
        assert len(sentences) == 4  # one sentence per person, one shared attribute
        # the answer is stated in the asked person's sentence, and no other sentence names that person
        own = [s for s in sentences if q.entity in s]
        assert len(own) == 1 and q.answer in own[0]
        assert all(q.entity not in s for s in sentences if s is not own[0])
        assert {qq.attribute for c, qq in items if c == context} == {q.attribute}
    segs = X.icl_binding_example(world, rng, set(world.entities), max_people=8)
    questions = [t for t, _ in segs if t.startswith("Q:")]
    assert 1 <= len(questions) <= 4 and segs[0][1]


def test_in_context_session_examples_answer_the_newest_value(world):
    rng = random.Random(3)
    found_update = False
    for _ in range(200):
        segs = X.icl_session_example(world, rng, set(world.entities), max_sessions=3)
        context = segs[0][0]
        for i, (text, _) in enumerate(segs):
            if text.startswith("Q:") and segs[i + 1][0].strip() and ("work" in text or "live" in text):
                answer = segs[i + 1][0].strip()
                name = re.search(r"([A-Z][a-z]+ [A-Z][a-z]+)", text[2:]).group(1)
                # the newest statement about this person's attribute in the context gives the answer
                stated = [m for m in re.finditer(re.escape(answer), context)]
                assert stated, (text, answer)
                found_update |= "now" in context and name in context
    assert found_update


def test_save_load_roundtrip(tmp_path, world):
    save_world(world, tmp_path / "w")
    back = load_world(tmp_path / "w")
    assert back.config == world.config
    assert [s.questions for s in back.sessions] == [s.questions for s in world.sessions]
    assert back.entities.keys() == world.entities.keys()
    with pytest.raises(RetainError, match="not a world directory"):
        load_world(tmp_path)


def test_tokenizer_roundtrip_and_no_unknowns(tmp_path, world):
    from retain.eval.exact_match import normalize
    from retain.models.build import load_tokenizer

    save_world(world, tmp_path / "w")
    tok = load_tokenizer(tmp_path / "w" / "tokenizer")
    texts = tokenizer_corpus(world) + [s.transcript for s in world.sessions]
    unk = tok.unk_token_id
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert unk not in ids
        assert normalize(tok.decode(ids)) == normalize(text)
    # names, cities and dates are whole tokens
    assert len(tok("Ana Kovac was born in Lisbon on 14 March 1972", add_special_tokens=False)["input_ids"]) == 10
    assert (tok.pad_token_id, tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2, 3)


def test_bpe_tokenizer_roundtrip(world):
    from retain.world.tokenizer import train_tokenizer

    tok = train_tokenizer(tokenizer_corpus(world), "bpe", vocab_size=800)
    for text in [world.sessions[0].transcript, "Q: Where was Ana Kovac born? A: Lisbon"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids).strip() == text


def test_user_sessions_jsonl_and_text(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"id": "a", "turns": [{"role": "User", "text": "Kim lives in Oslo."}], '
                 '"questions": [{"question": "Where does Kim live?", "answer": "Oslo"}]}\n'
                 '{"transcript": "Bo works at Acme."}\n')  # fmt: skip
    sessions = load_user_sessions(p)
    assert sessions[0].transcript == "User: Kim lives in Oslo." and sessions[0].questions[0].answer == "Oslo"
    assert sessions[1].questions == []
    t = tmp_path / "s.txt"
    t.write_text("first session\n---\nsecond session\n")
    assert [s.transcript for s in load_user_sessions(t)] == ["first session", "second session"]
    for bad, msg in [('{"turns": []}', "no text"), ('{"text": "x"}', "unknown keys"),
                     ('{"transcript": "x", "questions": [{"q": 1}]}', "'question' \\(text\\) and 'answer'"),
                     ("{", "not valid JSON")]:  # fmt: skip
        p.write_text(bad + "\n")
        with pytest.raises(RetainError, match=msg):
            load_user_sessions(p)
    with pytest.raises(RetainError, match="not found"):
        load_user_sessions(tmp_path / "missing.jsonl")


def test_summary_notes_respect_budget(world):
    s = world.sessions[0]
    full = X.summary_notes(s, None)
    short = X.summary_notes(s, 30)
    assert full == R.oracle_notes(s)
    assert len(short.split()) <= 30 and full.startswith(short)


def test_stream_items_hold_every_session_in_context_once(tmp_path):
    from retain.world import examples as X
    from retain.world.world import WorldConfig, build_world

    world = build_world(WorldConfig(n_known=8, n_eval=2, n_sessions=3))
    items = X.stream_items(world.sessions)
    assert len(items) == sum(len(s.questions) for s in world.sessions)
    context = items[0][0]
    assert all(c == context for c, _ in items)
    positions = [context.index(f"Session {s.index + 1}. {s.transcript}") for s in world.sessions]
    assert positions == sorted(positions)  # oldest first


def test_by_attribute_splits_recall_and_finds_misread_values(world, monkeypatch):
    """A reader that answers every birth city with the home city its context states scores 0 there, and every
    such wrong answer counts as a value of the context; other attributes answered right score 1."""
    import retain.eval.suites as S

    items = X.open_book_items(world.split("eval")[:10], world, random.Random(0))
    people = world.entities

    def fake_ask(model, tok, questions, contexts, batch_size=64):
        def reply(q):
            e = people[q.entity]
            if q.attribute == "birth_city":
                return e.attrs["home_city"]
            return "nowhere" if q.attribute == "field" else q.answer

        return [reply(q) for q in questions]

    monkeypatch.setattr(S, "ask", fake_ask)
    table = S.by_attribute(None, None, items)
    assert set(table) == set(ATTRIBUTE_SETS) | {"mentor"}  # recall only: no two-hop or compare rows
    same = sum(people[q.entity].attrs["home_city"] == q.answer for _, q in items if q.attribute == "birth_city")
    assert table["birth_city"]["acc"] == same / 10
    if same < 10:
        assert table["birth_city"]["wrong_in_context"] == 1.0
    assert table["field"] == {"acc": 0.0, "n": 10, "wrong_in_context": 0.0}
    assert table["employer"]["acc"] == 1.0


def test_contrast_examples_state_both_cities_and_ask_both(world):
    """mixture.contrast: a person states the two attributes of one choice set (born in one city, living in
    another) and both are asked, so the relation alone tells the two answers apart."""
    from retain.world.examples import SHARED_SETS

    assert SHARED_SETS == [["birth_city", "home_city"]]
    for i in range(20):
        segs = X.icl_facts_example(world, random.Random(i), set(world.entities), max_facts=1, contrast=1.0)
        context, questions = segs[0][0], " ".join(text for text, _ in segs[1:])
        n_people = context.count(".")  # one sentence per fact
        assert n_people in (2, 4)  # one or two people, two facts each
        asked = [q for q in T.QUESTION["birth_city"] + T.QUESTION["home_city"] if q.split("{name}")[0] in questions]
        assert asked, questions
    plain = X.icl_facts_example(world, random.Random(0), set(world.entities), max_facts=1)
    assert plain == X.icl_facts_example(world, random.Random(0), set(world.entities), max_facts=1, contrast=0.0)
    with pytest.raises(ValueError, match="contrast"):
        MixtureConfig(contrast=1.5)


def test_the_contrast_phase_follows_the_reading_warm_up_then_the_mixture_takes_over(world):
    """mixture.contrast_steps: after the one-fact warm-up, only contrast examples (both cities of each person
    stated and asked), then the whole mixture."""
    from retain.train.data import step_example

    mix = MixtureConfig(reading_warmup_steps=10, contrast_steps=5)
    cities = T.QUESTION["birth_city"] + T.QUESTION["home_city"]

    def cities_asked(step: int, seed: int) -> int:
        segs = step_example(world, mix, random.Random(seed), set(world.entities), step)
        asked = " ".join(text for text, _ in segs[1:])
        return sum(asked.count(q.split("{name}")[0]) for q in cities)

    assert all(cities_asked(step, seed) in (2, 4) for step in range(10, 15) for seed in range(10))
    assert any(cities_asked(9, seed) < 2 for seed in range(10))  # the warm-up: one fact each, rarely two cities
    assert any(cities_asked(15, seed) not in (2, 4) for seed in range(10))  # the mixture
    with pytest.raises(ValueError, match="contrast_steps"):
        MixtureConfig(contrast_steps=-1)


def test_an_added_contrast_keeps_the_persons_other_facts(world):
    """mixture.contrast_adds: the two cities come on top of the facts drawn for the person, so a contrast example
    still asks about other attributes; without it the pair replaces them (exactly two questions a person)."""

    def stated_and_asked(adds: bool, seed: int) -> tuple[str, int]:
        segs = X.icl_facts_example(world, random.Random(seed), set(world.entities), max_facts=3, contrast=1.0,
                                   max_people=1, contrast_adds=adds)  # fmt: skip
        return segs[0][0], sum(text.count("?") for text, _ in segs[1:])

    cities = ATTRIBUTE_SETS["birth_city"]
    for seed in range(30):
        context, n_asked = stated_and_asked(False, seed)
        assert n_asked == 2 and sum(c in context for c in cities) == 2  # born in one city, living in another
        context, n_asked = stated_and_asked(True, seed)
        assert n_asked >= 2 and sum(c in context for c in cities) == 2
    assert any(stated_and_asked(True, seed)[1] > 2 for seed in range(30))  # other facts kept beside the pair


def test_the_contrast_stops_at_contrast_until(world):
    """mixture.contrast_until: icl_facts draws contrast people before that step and plain ones from it on."""
    from retain.train.data import step_example

    mix = MixtureConfig(bio=0, qa=0, icl_bio=0, icl_facts=1, icl_session=0, summary=0, reading_warmup_steps=0,
                        contrast=1.0, contrast_until=20, max_facts=1)  # fmt: skip
    cities = T.QUESTION["birth_city"] + T.QUESTION["home_city"]

    def cities_asked(step: int, seed: int) -> int:
        segs = step_example(world, mix, random.Random(seed), set(world.entities), step)
        return sum(" ".join(t for t, _ in segs[1:]).count(q.split("{name}")[0]) for q in cities)

    assert all(cities_asked(19, seed) in (2, 4) for seed in range(10))
    assert any(cities_asked(20, seed) not in (2, 4) for seed in range(10))
    with pytest.raises(ValueError, match="contrast_until"):
        MixtureConfig(contrast=0.5, contrast_until=-1)
    with pytest.raises(ValueError, match="set mixture.contrast > 0"):  # shaping a contrast that is off
        MixtureConfig(contrast_until=100)
    with pytest.raises(ValueError, match="set mixture.contrast > 0"):
        MixtureConfig(contrast_adds=True)


def test_a_one_person_warm_up_states_and_asks_one_fact(world):
    """mixture.warmup_people=1: every warm-up example is one person's one fact and its question; the default
    draws two people in some."""
    from retain.train.data import step_example

    def facts(mix: MixtureConfig, seed: int) -> int:
        return step_example(world, mix, random.Random(seed), set(world.entities), 0)[0][0].count(".")

    assert {facts(MixtureConfig(warmup_people=1), seed) for seed in range(30)} == {1}
    assert {facts(MixtureConfig(), seed) for seed in range(30)} == {1, 2}
    with pytest.raises(ValueError, match="warmup_people must be 1 or 2"):
        MixtureConfig(warmup_people=3)


def test_relation_examples_ask_each_city_forward_and_reversed(world):
    """mixture.icl_relation: every city a person states is asked both ways, the reverse answered by the
    relation of the sentence that states it, and the reverse question tokenizes without <unk>."""
    from retain.world import vocab
    from retain.world.io import build_tokenizer

    tok = build_tokenizer(world)
    relation = {word: attr for attr, word in T.RELATION_WORD.items()}
    for i in range(20):
        segs = X.icl_relation_example(world, random.Random(i), set(world.entities))
        context = segs[0][0]
        pairs = [(segs[j][0], segs[j + 1][0].strip()) for j in range(1, len(segs), 3)]
        reverse = [(q, a) for q, a in pairs if a in relation]
        assert len(reverse) == sum(a in vocab.CITIES for _, a in pairs) >= 2
        for q, word in reverse:
            city, name = q.removeprefix("Q: What is ").removesuffix("? A:").split(" to ")
            said = {a: any(t.format(name=name, value=city) in context for t in T.BIO[a]) for a in relation.values()}
            assert said == {attr: attr == relation[word] for attr in said}, (q, word, context)
            assert tok.unk_token not in tok.tokenize(q)
    assert MixtureConfig().icl_relation == 0.0  # off by default: the recorded base's stream is unchanged
