"""The continual loop end to end on the smoke config, and the metrics against hand-computed values.
`pytest tests/test_continual.py`"""

import json
from pathlib import Path

import pytest

from retain.config import load_config
from retain.continual.loop import ContinualConfig, continual
from retain.errors import RetainError
from retain.eval import continual as CL

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_follow_avalanche_definitions():
    R = [[0.9, 0.1, 0.0], [0.6, 0.8, 0.1], [0.5, 0.4, 1.0]]
    R0 = [0.0, 0.2, 0.1]
    assert CL.acc(R) == pytest.approx((0.5 + 0.4 + 1.0) / 3)
    assert CL.bwt(R) == pytest.approx(((0.5 - 0.9) + (0.4 - 0.8)) / 2)
    assert CL.forgetting(R) == pytest.approx(-CL.bwt(R))
    assert CL.fwt(R, R0) == pytest.approx(((0.1 - 0.2) + (0.1 - 0.1)) / 2)
    assert CL.learning_curve(R) == pytest.approx([0.9, 0.7, (0.5 + 0.4 + 1.0) / 3])
    assert CL.just_written(R) == pytest.approx((0.9 + 0.8 + 1.0) / 3)


def test_smoke_run_writes_matrix_summary_report_and_resumes(smoke_base, tmp_path):
    cfg = load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml", [f"base={smoke_base}"])
    s = continual(cfg, out=tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "report.md", "materials.json",
                 "accuracy_matrix.png", "recall_vs_bytes.png", "base_knowledge.png", "learning_curve.png",
                 "liti_front.png"):  # fmt: skip
        assert (run / name).exists(), name
    assert set(s["media"]) == {m.name for m in cfg.media}
    for m in s["media"].values():
        for key in ("acc", "bwt", "base_acc_drop", "bytes_per_token", "bits_per_param", "write_seconds"):
            assert key in m
    lora = json.loads((run / "media" / "lora.json").read_text())
    assert len(lora["R"]) == cfg.sessions and all(len(row) == cfg.sessions for row in lora["R"])
    assert s["media"]["none"]["bytes_per_token"] == 0 and s["media"]["lora"]["write_seconds"] > 0
    lora_m = s["media"]["lora"]
    assert lora_m["bytes_ratio_vs_kv"] == pytest.approx(s["kv_bytes_per_token"] / lora_m["bytes_per_token"])
    assert s["media"]["none"]["bytes_ratio_vs_kv"] is None
    # LiTI at eta 0 is the base model again, at eta 1 the memory as written
    for name in ("lora", "lora-ties", "full"):
        r = json.loads((run / "media" / f"{name}.json").read_text())
        zero, one = r["liti"]
        assert zero["base_acc"] == r["base_curve"][0] and zero["acc"] == CL.acc([r["R0"]])
        assert one["base_acc"] == r["base_acc"] and one["acc"] == r["acc"]
    assert json.loads((run / "media" / "soft_prompt.json").read_text())["liti"] == []  # no base to move towards
    assert len(json.loads((run / "media" / "lora-ties.json").read_text())["svd_errors"]) == cfg.sessions
    # the base questions a medium lost account for its base drop (lost minus any it gained)
    for name, m in s["media"].items():
        lost = json.loads((run / "media" / f"{name}.json").read_text())["base_lost"]
        assert len(lost) >= round(m["base_acc_drop"] * cfg.eval.base_n)
        assert all(q["now"] != q["answer"] for q in lost)
    assert json.loads((run / "media" / "none.json").read_text())["base_lost"] == []
    with pytest.raises(RetainError, match="already holds a run"):  # nothing written is overwritten
        continual(cfg, out=run)
    # a resumed run reads finished media back instead of writing them again, and a medium cut short is
    # rerun without its first try's records left in metrics.jsonl
    (run / "summary.json").unlink()
    (run / "media" / "lora.json").unlink()
    again = continual(cfg, out=run, resume=True)
    assert again["media"]["lora"]["acc"] == s["media"]["lora"]["acc"]
    lora_records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                    if json.loads(line).get("medium") == "lora"]  # fmt: skip
    assert [r["session"] for r in lora_records] == list(range(cfg.sessions))


def test_missing_base_is_a_clear_error(tmp_path):
    cfg = load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml", [f"base={tmp_path}/nothing"])
    with pytest.raises(RetainError, match="pretrain one"):
        continual(cfg, out=tmp_path / "run")


def test_rehearsal_never_replays_a_value_a_session_read_replaced(smoke_base):
    import random

    from retain.continual.rehearsal import Rehearsal
    from retain.world.io import load_world

    world = load_world(smoke_base / "world")
    stale = [(e, world.entities[e].attrs[a]) for e, a in world.updated_facts()]
    draw, rng = Rehearsal(world), random.Random(0)
    # before a session is read its update is unknown: the value it will replace is still rehearsed
    early = [s for t in (draw(rng) for _ in range(2000)) for s in t.replace("?", ".").split(". ")]
    assert any(e in s and old in s for s in early for e, old in stale)
    assert not draw.stale(" ".join(early))
    draw.upto(world.sessions[-1].index)
    assert all(draw.stale(e) for e, _ in stale)
    texts = [draw(rng) for _ in range(200)]
    sentences = [s for t in texts for s in t.replace("?", ".").split(". ")]
    assert not any(e in s and old in s for s in sentences for e, old in stale)
    # an updated person's other facts are still rehearsed
    kept = [(e, v) for e, a in world.updated_facts() for b, v in world.entities[e].attrs.items() if b != a]
    assert any(e in s and v in s for s in sentences for e, v in kept)
    qa = [t for t in texts if t.startswith("Q: ")]
    assert 50 < len(qa) < 150 and all(" A: " in t for t in qa)
    # what base_study asks about is only people no session updates
    updated = {e for e, _ in world.updated_facts()}
    whole = {e.name for e in draw.whole[0]}
    assert whole and not whole & updated
    assert all(any(n in t for n in whole) for t in (draw.settled(rng) for _ in range(50)))


def test_missing_temperature_head_fails_before_the_run_dir_exists(smoke_base, tmp_path):
    cfg = load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml",
                      [f"base={smoke_base}", "writer.kind=model", "writer.decoding.adaptive=exponential",
                       f"writer.decoding.head={tmp_path}/nohead"])  # fmt: skip
    with pytest.raises(RetainError, match="holds no temperature head"):
        continual(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage,needle", [("questions", "has no questions"), ("turns", "empty transcript")])
def test_a_session_without_questions_or_text_fails_before_anything_is_written(smoke_base, tmp_path, damage, needle):
    import shutil

    from retain.world.io import load_world, save_world

    world = load_world(smoke_base / "world")
    setattr(world.sessions[1], damage, [])
    base = tmp_path / "base"
    shutil.copytree(smoke_base / "model", base / "model")
    save_world(world, base / "world")
    cfg = load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml", [f"base={base}"])
    with pytest.raises(RetainError, match=needle):
        continual(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_budget_smaller_than_a_session_answers_closed_book(smoke_base):
    from retain.memory import Material, MediumConfig, make_memory
    from retain.models.build import load_model_and_tokenizer
    from retain.world.io import load_world

    model, tok = load_model_and_tokenizer(smoke_base / "model")
    s = load_world(smoke_base / "world").sessions[0]
    mem = make_memory(MediumConfig(kind="context", budget_tokens=5), model, tok)
    mem.write(Material(s.index, s.transcript, 1))
    assert mem.context(s.questions[0]) is None and mem.nbytes() == 0
    none = make_memory(MediumConfig(kind="none"), model, tok)
    assert mem.answer(s.questions) == none.answer(s.questions)


def test_a_medium_the_model_cannot_run_fails_before_the_run_dir_exists(smoke_base, tmp_path):
    cfg = load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml",
                      [f"base={smoke_base}", "media.4.kind=kv_prefix", "media.4.prompt_tokens=100000"])  # fmt: skip
    with pytest.raises(RetainError, match="does not fit the model's context"):
        continual(cfg, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()
