"""Your own sessions and any local causal LM: session files, free-text grading, text formats, and the continual
loop and RL run on a session file with the tiny world base and with a plain model folder.
`pytest tests/test_own_sessions.py`"""

import json
from pathlib import Path

import pytest
import torch

from retain.cli.main import main as cli
from retain.config import ConfigError, load_config
from retain.continual.loop import ContinualConfig, continual
from retain.errors import RetainError
from retain.eval.exact_match import contains, grade, squad_normalize, token_f1
from retain.world.io import load_user_sessions
from retain.world.world import Question

ROOT = Path(__file__).resolve().parents[1]


def test_free_text_is_graded_as_squad_grades_it():
    assert squad_normalize("The Eiffel Tower!") == "eiffel tower"
    assert token_f1("in the city of Paris", "Paris") == pytest.approx(2 * (1 / 4) * 1 / (1 / 4 + 1))
    assert token_f1("Lisbon", "Porto") == 0.0 and token_f1("", "") == 1.0
    assert contains("It is Ravenmoor University.", "Ravenmoor") and not contains("Ravenmoorish", "Ravenmoor")
    q = Question("When?", "12 May", "recall", "", "", aliases=["May 12"])
    assert grade("may 12.", q, "text") == {"em": 1.0, "f1": 1.0, "contains": 1.0}  # the best accepted answer
    g = grade("on 12 May 2025", q, "text")
    assert g["em"] == 0.0 and g["contains"] == 1.0 and g["f1"] == pytest.approx(2 * 0.5 * 1 / 1.5)
    # the world keeps its own exact match: articles are part of a value there
    w = Question("Who?", "The Hague", "recall", "", "")
    assert grade("Hague", w, "world")["em"] == 0.0 and grade("Hague", w, "text")["em"] == 1.0


def test_a_session_file_reads_turns_transcripts_aliases_and_kinds(user_sessions):
    s = load_user_sessions(user_sessions)
    assert [x.index for x in s] == [0, 1, 2]
    assert s[0].transcript == "User: Kim Lund moved to Oslo. She works at Fjord Labs.\nAssistant: Noted."
    assert s[1].transcript == "The garden opens on 12 May. Bo Stein runs the greenhouse."
    assert s[0].questions[1].answer == "Fjord Labs" and s[0].questions[1].aliases == ["Fjord"]
    assert [q.kind for q in s[2].questions] == ["update", "two_hop"]


@pytest.mark.parametrize("content,needle", [
    (b"", "is empty"),
    (b'{"turns": "hello"}\n', "line 1: 'turns' must be a list"),
    (b'{"transcript": "x", "questions": {"question": "a"}}\n', "'questions' must be a list"),
    (b'{"transcript": "x"}\n{"transcript": "y", "questions": [{"question": "Who?"}]}\n',
     "line 2: question 1 .*needs an 'answer'"),
    (b'{"transcript": "x", "questions": [{"question": "Who?", "answer": []}]}\n', "needs an 'answer'"),
    (b'{"transcript": "caf\xe9"}\n', "line 1 is not UTF-8"),
    (b'[{"transcript": "x"}, {"transcript": "y"}]\n', "one JSON list, not JSONL"),
    (b'{\n  "transcript": "x"\n}\n', "one JSON dict, not JSONL"),
    (b'{"transcript": "x"}\n{"transcript": \n', "line 2 is not valid JSON"),
    (b'{"turns": [{"role": "User", "text": "  "}]}\n', "the session has no text"),
])  # fmt: skip
def test_a_bad_session_file_is_one_line_naming_the_file_and_line(tmp_path, content, needle):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(RetainError, match=needle) as e:
        load_user_sessions(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_text_formats_follow_the_tokenizers_own_conventions(plain_base, smoke_base):
    from retain.models.build import load_tokenizer
    from retain.models.text import TextFormat, text_format

    world_tok = load_tokenizer(smoke_base / "model")
    w = text_format(world_tok)  # a tokenizer without a format follows the world's convention
    assert w.style == "world" and w.start == [world_tok.bos_token_id] and w.stops == [world_tok.eos_token_id]
    assert w.prompt("Where?", "Ctx.") == ("Ctx.", " Q: Where? A:")
    tok = load_tokenizer(plain_base)
    p = TextFormat.of(tok, "plain", [("Capital of France?", "Paris")], answer_tokens=5)
    end = tok.convert_tokens_to_ids("<|endoftext|>")
    assert p.start == [end] and p.end == end  # no BOS of its own: the end-of-document token opens a text
    newline = tok("\n", add_special_tokens=False)["input_ids"]
    assert set(newline) <= set(p.stops) and tok.eos_token_id in p.stops and p.answer_tokens == 5
    assert p.prompt("Where?", "Ctx.") == ("Ctx.\n\nQ: Capital of France?\nA: Paris\n", "Q: Where?\nA:")
    assert p.distill_heads("Ctx.") == ("Ctx.\n\nQ: Capital of France?\nA: Paris\n", "Q: Capital of France?\nA: Paris\n")
    c = TextFormat.of(tok, "chat", [("Capital of France?", "Paris")])
    head, tail = c.prompt("Where?", "Ctx.")
    assert (
        head.endswith("Paris<|im_end|>\n")
        and tail == "<|im_start|>user\nCtx.\n\nWhere?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tok.eos_token_id in c.stops


def test_questions_sharing_a_context_read_it_once_and_answer_the_same(plain_base):
    from retain.eval import qa
    from retain.models.build import load_model_and_tokenizer
    from retain.models.text import TextFormat, use_format

    model, tok = load_model_and_tokenizer(plain_base)
    use_format(tok, TextFormat.of(tok, "plain", [("Capital of France?", "Paris")], answer_tokens=6))
    qs = [Question(t, "x", "recall", "", "") for t in ("Where does Kim live?", "Who runs it?", "When?")]
    shared = qa.ask(model, tok, qs, "Kim Lund moved to Oslo.")
    one_by_one = [qa.ask(model, tok, [q], "Kim Lund moved to Oslo.")[0] for q in qs]
    assert shared == one_by_one
    calls = []
    real = qa.kv_of
    qa.kv_of = lambda m, ids: calls.append(ids) or real(m, ids)
    try:
        qa.ask(model, tok, qs, "Kim Lund moved to Oslo.")
    finally:
        qa.kv_of = real
    assert len(calls) == 1  # one context, encoded once for three questions


def test_a_context_longer_than_a_sliding_window_is_read_with_each_question(plain_base):
    """Gemma 3 keeps only the last `sliding_window` positions in its sliding layers, so a shared head longer
    than that is not read once as a prefix (a rebuilt cache loses where the kept positions sit)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    from retain.eval import qa
    from retain.models.build import load_tokenizer
    from retain.models.generate import prefix_fits
    from retain.models.text import TextFormat, use_format

    tok = load_tokenizer(plain_base)
    use_format(tok, TextFormat.of(tok, "plain", [], answer_tokens=4))
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                               head_dim=8, sliding_window=8,
                                               layer_types=["sliding_attention", "full_attention"])).eval()  # fmt: skip
    assert prefix_fits(model, 8) and not prefix_fits(model, 9)
    qs = [Question(t, "x", "recall", "", "") for t in ("Where does Kim live?", "Who runs it?")]
    context = "Kim Lund moved to Oslo after ten long years in Bergen, and runs a bakery there now."
    shared = qa.ask(model, tok, qs, context)
    assert shared == [qa.ask(model, tok, [q], context)[0] for q in qs]


def plain_cfg(base, data, *more):
    return load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml",
                       [f"base={base}", f"data={data}", "sessions=null", "eval.base_n=30", "eval.max_new_tokens=4",
                        "media.4.prompt_tokens=2", *more])  # fmt: skip


def test_a_session_file_runs_on_a_plain_model_folder_with_the_probe_and_perplexity(plain_base, user_sessions, tmp_path):
    cfg = plain_cfg(plain_base, user_sessions, "media.2.base_replay=0.5", "replay_texts=8")
    s = continual(cfg, out=tmp_path / "run")
    run = tmp_path / "run"
    assert s["grading"] == "text" and set(s["media"]) == {m.name for m in cfg.media}
    assert any("two-hop questions dropped" in n for n in s["notes"]) and any("no skill" in n for n in s["notes"])
    lora = json.loads((run / "media" / "lora.json").read_text())
    assert len(lora["R"]) == 3 and len(lora["R_f1"]) == 3 and all(len(r) == 3 for r in lora["R_f1"])
    assert lora["skill_acc"] is None and lora["bits_per_param"] is None and lora["ppl"] > 1
    # full FT moves the weights
    assert s["media"]["none"]["ppl_drift"] == 0.0 and s["media"]["full"]["ppl_drift"] != 0.0
    kept = json.loads((run / "base_probe.json").read_text())
    assert s["base_questions"] == len(kept) and lora["base_curve"][0] == (1.0 if kept else 0.0)
    assert len(json.loads((run / "replay.json").read_text())) <= 8
    report = (run / "report.md").read_text()
    assert "| EM | F1 |" in report and "two-hop questions dropped" in report
    # the documented resume: the run's own config, no config on the command line
    (run / "summary.json").unlink()
    (run / "media" / "lora.json").unlink()
    assert cli(["run", "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "summary.json").read_text())["media"]["lora"]["acc"] == s["media"]["lora"]["acc"]


def test_a_session_file_runs_on_the_world_base_with_its_base_questions(smoke_base, user_sessions, tmp_path):
    cfg = load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml",
                      [f"base={smoke_base}", f"data={user_sessions}", "sessions=2",
                       "media=[{kind: none}, {kind: context}, "
                       "{kind: lora, steps: 2, batch_size: 2, objective: distill, "
                       "n_queries: 2, query_tokens: 4}]"])  # fmt: skip
    s = continual(cfg, out=tmp_path / "run")
    assert s["grading"] == "text" and s["base_questions"] == cfg.eval.base_n
    assert s["media"]["none"]["skill_acc"] is not None  # the world's reading skill still applies
    assert len(json.loads((tmp_path / "run" / "media" / "lora.json").read_text())["R"]) == 2
    asked = json.loads((tmp_path / "run" / "media" / "lora.queries.json").read_text())  # what self-study asked
    assert sorted(asked) == ["0", "1"] and all(
        len(qs) == 2 and all(isinstance(q, str) for q in qs) for qs in asked.values()
    )


@pytest.mark.parametrize("change,needle", [
    ("writer.kind=oracle", "writer oracle writes the world's facts"),
    ("sessions=9", "sessions=9 but .* holds 3"),
    ("eval.shots=400", "too few for 400 shots"),
])  # fmt: skip
def test_what_a_session_file_cannot_give_fails_before_the_run_dir(plain_base, user_sessions, tmp_path, change, needle):
    with pytest.raises(RetainError, match=needle):
        continual(plain_cfg(plain_base, user_sessions, change), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_bad_bases_and_long_sessions_fail_before_the_run_dir(plain_base, user_sessions, tmp_path):
    import shutil

    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(plain_base / f, no_tok / f)
    with pytest.raises(RetainError, match="has no tokenizer"):
        continual(plain_cfg(no_tok, user_sessions), out=tmp_path / "run")
    with pytest.raises(RetainError, match="give the sessions: --set data"):
        continual(plain_cfg(plain_base, user_sessions, "data=null"), out=tmp_path / "run")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(RetainError, match="not a causal language model"):
        continual(plain_cfg(empty, user_sessions), out=tmp_path / "run")
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"transcript": "word " * 3000, "questions": [{"question": "Q?", "answer": "a"}]}) + "\n")
    with pytest.raises(RetainError, match="longer than the model's context of 2048; split it"):
        continual(plain_cfg(plain_base, long), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_an_oracle_source_is_left_out_with_a_note_on_a_session_file(plain_base, user_sessions, tmp_path):
    cfg = plain_cfg(plain_base, user_sessions, "media=[{kind: none}, {kind: lora, source: oracle, steps: 1}]")
    s = continual(cfg, out=tmp_path / "run")
    assert list(s["media"]) == ["none"] and any("lora left out" in n for n in s["notes"])


def test_plain_self_study_asks_one_question_and_the_teacher_answers_in_the_asked_form(plain_base, user_sessions):
    import random

    from retain.memory import MediumConfig, make_memory
    from retain.memory import distill as D
    from retain.memory.writers import WriterConfig, make_writer
    from retain.models.build import load_model_and_tokenizer
    from retain.models.text import TextFormat, use_format

    model, tok = load_model_and_tokenizer(plain_base)
    use_format(tok, TextFormat.of(tok, "plain", [("Capital of France?", "Paris")]))
    m = make_writer(WriterConfig(), model, tok)(load_user_sessions(user_sessions)[0])
    mem = make_memory(
        MediumConfig(kind="lora", objective="distill", cue="alone", n_queries=4, query_tokens=6), model, tok
    )
    context = mem.teacher_context(m)
    assert tok.decode(context).endswith("Noted.\n\nQ: Capital of France?\nA: Paris\n")  # the session, then the shots
    queries, spent = D.query_ids("self_study", mem, m, context, 4, random.Random(0))
    nl = tok("\n", add_special_tokens=False)["input_ids"]
    for q in queries:
        text = tok.decode(q)
        assert text.startswith("Q:") and "\nA:" in text and q[-len(nl) :] == nl and spent > 0
    teachers, _ = D.teach(mem, context, queries, 5, head=mem.student_head())
    assert all(
        t.head == tok("Q: Capital of France?\nA: Paris\n", add_special_tokens=False)["input_ids"] for t in teachers
    )
    loss = D.student_loss(mem, teachers)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in mem.trainable())


@pytest.mark.parametrize("base_fixture", ["smoke_base", "plain_base"])
def test_rl_runs_on_a_session_file(request, base_fixture, user_sessions, tmp_path):
    from retain.rl.run import RLConfig, rl

    base = request.getfixturevalue(base_fixture)
    cfg = load_config(RLConfig, ROOT / "configs" / "smoke" / "rl.yaml",
                      [f"base={base}", f"data={user_sessions}", "heldout=1", "iterations=1", "group=2",
                       "sessions=1", "max_new_tokens=6", "efficiency_groups=0", "horizon=1"])  # fmt: skip
    s = rl(cfg, out=tmp_path / "rl")
    assert s["heldout_oracle"] is None and 0.0 <= s["heldout_after"] <= 1.0 and s["episodes"] == 2
    assert "sessions from a file carry no facts" in (tmp_path / "rl" / "report.md").read_text()
    with pytest.raises(RetainError, match="heldout=3 leaves no training session"):
        rl(load_config(RLConfig, ROOT / "configs" / "smoke" / "rl.yaml",
                       [f"base={base}", f"data={user_sessions}", "heldout=3"]), out=tmp_path / "rl2")  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)  # two runs of a 135M model on 2 cores: about 6 minutes
def test_the_smoke_twin_runs_on_smollm2_and_resumes(tmp_path):
    """configs/smoke/real.yaml on the real 135M model (models/smollm2-135m, from `make smollm2`), then the
    documented resume after a finished medium is removed."""
    base = ROOT / "models" / "smollm2-135m"
    if not (base / "config.json").is_file():
        pytest.skip("models/smollm2-135m is absent: make smollm2")
    run = tmp_path / "real"
    assert cli(["run", str(ROOT / "configs" / "smoke" / "real.yaml"), "--set", f"base={base}",
                "--set", f"data={ROOT / 'data' / 'real' / 'notes.jsonl'}", "--out", str(run)]) == 0  # fmt: skip
    s = json.loads((run / "summary.json").read_text())
    assert s["grading"] == "text" and s["base_questions"] > 5
    known = json.loads((run / "base_known.json").read_text())  # eval.known_prompts: 2
    assert set(known) <= set(json.loads((run / "base_probe.json").read_text()))
    assert s["media"]["context"]["acc_f1"] > s["media"]["none"]["acc_f1"]  # reading the sessions helps
    (run / "media" / "lora-distill-cloze.json").unlink()
    assert cli(["run", "--out", str(run), "--resume"]) == 0


def test_grounded_self_study_keeps_questions_whose_answer_was_read_and_focus_cue_reads_the_cue(
    plain_base, user_sessions, monkeypatch
):
    import random

    from retain.memory import MediumConfig, make_memory
    from retain.memory import distill as D
    from retain.memory.writers import WriterConfig, make_writer
    from retain.models.build import load_model_and_tokenizer
    from retain.models.text import TextFormat, use_format

    model, tok = load_model_and_tokenizer(plain_base)
    use_format(tok, TextFormat.of(tok, "plain", [("Capital of France?", "Paris")]))
    m = make_writer(WriterConfig(), model, tok)(load_user_sessions(user_sessions)[0])
    cfg = MediumConfig(kind="lora", objective="distill", cue="alone", focus="cue", grounded=True, n_queries=2)
    mem = make_memory(cfg, model, tok)
    cues = D.cue_sentences(mem, m, 2)
    assert cues == ["User: Kim Lund moved to Oslo.", "She works at Fjord Labs."]  # each sentence naming someone
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    # first round: one answer read in its cue, one not; second round: both read
    rounds = iter([[enc(" Where does Kim live?"), enc(" Who?")], [enc(" Oslo"), enc(" Paris")],
                   [enc(" Where is it?"), enc(" Where does she work?")],
                   [enc(" Oslo"), enc(" Fjord Labs")]])  # fmt: skip
    readers = []

    def fake(memory, prompts, rng, stops=None, greedy=False):
        if greedy:
            readers.extend(tok.decode(p) for p in prompts)
        return next(rounds), 1

    monkeypatch.setattr(D, "sample", fake)
    queries, _ = D.plain_queries(mem, m, mem.teacher_context(m), 2, random.Random(0))
    texts = [tok.decode(q) for q in queries]
    assert texts[0] == "Q: Where does Kim live?\nA: Oslo\n" and "Paris" not in "".join(texts) and len(texts) == 2
    assert all(r.split("\n\n")[0].endswith(c) for r, c in zip(readers[:2], cues))  # the teacher read the cue alone
    assert tok.decode(D.cue_contexts(mem, ["Kim Lund moved to Oslo."])[0]).endswith(
        "Kim Lund moved to Oslo.\n\nQ: Capital of France?\nA: Paris\n")  # fmt: skip
    with pytest.raises(ValueError, match="focus cue"):
        MediumConfig(kind="lora", objective="distill", focus="cue")


def test_answer_spans_are_the_dates_numbers_and_names_a_sentence_states():
    from retain.memory.names import answer_spans, cloze_question, topic_names

    topic = topic_names("Hugo Lind was born in Seville. Hugo Lind is an expert in linguistics. Ana Ruiz met him.")
    assert topic == {"Hugo Lind"}
    assert answer_spans("The birthday of Hugo Lind is 11 March 1981.", topic) == ["11 March 1981", "Hugo Lind"]
    assert answer_spans("User: Otto Lorenz guided Hugo Lind as a mentor.", topic) == ["Otto Lorenz", "Hugo Lind"]
    assert answer_spans("Hugo Lind is an expert in linguistics.", topic) == ["linguistics", "Hugo Lind"]
    assert answer_spans("Hugo Lind is an expert in linguistics.", topic, reverse=False) == ["linguistics"]
    assert answer_spans("Otto Lorenz guided Hugo Lind.", topic, reverse=False) == ["Otto Lorenz"]
    assert answer_spans("We meet every Thursday at 7 pm; the budget is $4,800.") == ["7 pm", "$4,800", "Thursday"]
    assert answer_spans("Assistant: Noted.") == [] and answer_spans("I made soup yesterday.", topic) == []
    assert (
        cloze_question("The birthday of Hugo Lind is 11 March 1981.", "11 March 1981")
        == "The birthday of Hugo Lind is when?"
    )
    assert cloze_question("User: Otto Lorenz guided Hugo Lind.", "Otto Lorenz") == "Who guided Hugo Lind?"


def test_answer_first_self_study_asks_each_answer_back_and_keeps_what_reading_confirms(
    plain_base, user_sessions, monkeypatch
):
    import random

    from retain.memory import MediumConfig, make_memory
    from retain.memory import distill as D
    from retain.memory.writers import WriterConfig, make_writer
    from retain.models.build import load_model_and_tokenizer
    from retain.models.text import TextFormat, use_format

    model, tok = load_model_and_tokenizer(plain_base)
    use_format(tok, TextFormat.of(tok, "plain", [("Capital of France?", "Paris")]))
    m = make_writer(WriterConfig(), model, tok)(load_user_sessions(user_sessions)[0])
    mem = make_memory(MediumConfig(kind="lora", objective="distill", queries="answer_first", grounded=True,
                                   n_queries=5), model, tok)  # fmt: skip
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    # answers in turn: Kim Lund, Fjord Labs (first of each sentence), then Oslo. Round one keeps only the second
    # question (the first holds its answer, the third is read as Bergen); round two adds the first and third.
    rounds = iter([[enc(" Kim Lund went there?"), enc(" does she work?"), enc(" did Kim move?")],
                   [enc(" Kim Lund"), enc(" Fjord Labs"), enc(" Bergen")],
                   [enc(" moved?"), enc(" does she work?"), enc(" did Kim move?")],
                   [enc(" Kim"), enc(" Fjord Labs"), enc(" Oslo")]])  # fmt: skip
    prompts = []

    def fake(memory, batch, rng, stops=None, greedy=False):
        prompts.append([tok.decode(p) for p in batch])
        return next(rounds), 1

    monkeypatch.setattr(D, "sample", fake)
    queries, spent = D.query_ids("answer_first", mem, m, mem.teacher_context(m), 5, random.Random(0))
    texts = [tok.decode(q) for q in queries]
    assert texts[:3] == ["Q: Who moved to Oslo?\nA: Kim Lund\n", "Q: She works at what?\nA: Fjord Labs\n",
                         "Q: Kim Lund moved to what?\nA: Oslo\n"]  # every answer asked back first  # fmt: skip
    assert texts[3].endswith(" does she work?\nA: Fjord Labs\n") and texts[4].endswith(" moved?\nA: Kim Lund\n")
    assert len(texts) == 5 and spent == 4
    cloze, spent = D.query_ids("cloze", mem, m, mem.teacher_context(m), 5, random.Random(0))
    assert [tok.decode(q) for q in cloze] == texts[:3] and spent == 0  # the sentences asked back, nothing sampled
    assert prompts[0][2].startswith("<|endoftext|>Kim Lund moved to Oslo.\n\nQ: ")  # asked after its sentence
    assert prompts[1][1].startswith("<|endoftext|>She works at Fjord Labs.\n\nQ: ")  # and read back from it
    with pytest.raises(ValueError, match="remove cue"):
        MediumConfig(kind="lora", objective="distill", queries="answer_first", cue="alone")
    with pytest.raises(ValueError, match="cloze samples nothing from the model; remove n_queries, grounded"):
        MediumConfig(kind="lora", objective="distill", queries="cloze", n_queries=8, grounded=True)
    with pytest.raises(ValueError, match="queries self_study asks none of them: remove reverse"):
        MediumConfig(kind="lora", objective="distill", reverse=False)


def test_answer_first_runs_on_a_plain_model_and_is_refused_on_the_worlds(
    plain_base, smoke_base, user_sessions, tmp_path
):
    media = (
        "media=[{kind: lora, steps: 2, batch_size: 2, objective: distill, queries: answer_first, grounded: true, "
        "n_queries: 4, query_tokens: 4}]"
    )
    continual(plain_cfg(plain_base, user_sessions, media, "sessions=1"), out=tmp_path / "run")
    asked = json.loads((tmp_path / "run" / "media" / "lora.queries.json").read_text())["0"]
    assert asked[:2] == ["Q: Who moved to Oslo?\nA: Kim Lund\n", "Q: She works at what?\nA: Fjord Labs\n"]
    world = load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml",
                        [f"base={smoke_base}", f"data={user_sessions}", media])  # fmt: skip
    with pytest.raises(RetainError, match="answer_first is self-study for a pretrained model"):
        continual(world, out=tmp_path / "world")
    assert not (tmp_path / "world").exists()


def test_known_probe_questions_are_those_answered_right_under_every_few_shot_prompt(
    plain_base, user_sessions, tmp_path, monkeypatch
):
    import retain.continual.loop as L
    from retain.models.build import load_model_and_tokenizer
    from retain.models.text import TextFormat, text_format, use_format

    model, tok = load_model_and_tokenizer(plain_base)
    fmt = use_format(tok, TextFormat.of(tok, "plain", [("Capital of France?", "Paris")])).retain_format
    asked = [Question(f"Q{i}?", f"a{i}", "probe", "", "") for i in range(3)]
    pool = [Question(f"S{i}?", f"s{i}", "probe", "", "") for i in range(6)]
    shown = []

    def fake(memory, questions, contexts, batch_size=64):  # Q0 right under any shots, Q1 under the first draw only
        shown.append([q for q, _ in text_format(memory.tokenizer).shots])
        return [q.answer if q.text == "Q0?" or (q.text == "Q1?" and len(shown) == 1) else "no" for q in questions]

    monkeypatch.setattr(L, "answers", fake)
    cfg = plain_cfg(plain_base, user_sessions, "eval.known_prompts=3")
    assert [q.text for q in L.known_everywhere(model, tok, asked, pool, "text", cfg)] == ["Q0?"]
    assert len(shown) == 2 and all(len(s) == 1 and s[0].startswith("S") for s in shown)  # as many shots, other ones
    assert text_format(tok) is fmt  # the run's own shots are back
    with pytest.raises(RetainError, match="eval.known_prompts 2 asks the probe again"):
        continual(plain_cfg(plain_base, user_sessions, "eval.known_prompts=2", "eval.shots=0"), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="eval.known_prompts must be positive"):
        plain_cfg(plain_base, user_sessions, "eval.known_prompts=0")


def test_base_asked_replays_the_probe_pools_pairs_with_the_shots_in_front(plain_base, user_sessions):
    import random

    from retain.continual.rehearsal import TextRehearsal
    from retain.memory import MediumConfig, make_memory
    from retain.memory.writers import WriterConfig, make_writer
    from retain.models.build import load_model_and_tokenizer
    from retain.models.text import TextFormat, use_format

    source = TextRehearsal(["The sea is wide and deep."], ["Q: Capital of Peru?\nA: Lima"])
    pools = {}
    for asked in (False, True):
        model, tok = load_model_and_tokenizer(plain_base)
        use_format(tok, TextFormat.of(tok, "plain", [("Capital of France?", "Paris")]))
        m = make_writer(WriterConfig(), model, tok)(load_user_sessions(user_sessions)[0])
        cfg = MediumConfig(kind="lora", objective="distill", queries="cloze", base_replay=0.4, base_queries=16,
                           base_asked=asked)  # fmt: skip
        pools[asked], spent = make_memory(cfg, model, tok, base_text=source).base_pool(m, random.Random(0))
        assert len(pools[asked]) == 16 and spent > 0
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    shots = enc("Q: Capital of France?\nA: Paris\n")
    pair, text = enc("Q: Capital of Peru?\nA: Lima"), enc("The sea is wide and deep.")
    # the same draws; read bare without base_asked, the pairs behind the shots with it, the texts bare in both
    assert sorted(t.ids == pair for t in pools[False]) == sorted(t.ids == pair for t in pools[True])
    assert all(t.head == [] and t.ids in (pair, text) for t in pools[False])
    assert {(tuple(t.head), tuple(t.ids)) for t in pools[True]} == {(tuple(shots), tuple(pair)), ((), tuple(text))}
    with torch.no_grad():  # the asked pair's teacher read the shots: its top-k differs from the bare pair's
        bare = next(t for t in pools[False] if t.ids == pair)
        behind = next(t for t in pools[True] if t.ids == pair)
        assert not torch.equal(bare.top_logp, behind.top_logp)
    from retain.memory.base import PlainReplay, as_replay

    class Partial:  # a replay source written before `asked`: refused, not wrapped and its `about` lost
        indexed, settled, stale, about = False, source.settled, source.stale, source.about

        def __call__(self, rng):
            return source(rng)

    with pytest.raises(TypeError, match="lacks asked"):
        as_replay(Partial())
    assert as_replay(source) is source and isinstance(as_replay(source.__call__), PlainReplay)
    with pytest.raises(ValueError, match="base_asked"):
        MediumConfig(kind="lora", objective="distill", base_asked=True)
    with pytest.raises(ValueError, match="base_asked"):
        MediumConfig(kind="lora", base_replay=0.3, base_asked=True)  # sft reads no base_asked
