"""LoRA media written as one stack of adapters (`batch_writes`): each ends where it would have written alone."""

import contextlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from retain.config import load_config
from retain.continual.loop import ContinualConfig, continual, write_groups
from retain.memory import Material, MediumConfig
from retain.memory.stacked import Stack, StackedLora, write_stacked
from retain.models.build import load_model_and_tokenizer
from retain.world.io import load_world

ROOT = Path(__file__).resolve().parents[1]
A = MediumConfig(kind="lora", name="a", rank=2, targets="mlp", steps=3, batch_size=2, lr=1e-2, replay=0.5,
                 base_replay=0.25, dtype="fp32")  # fmt: skip
B = MediumConfig(kind="lora", name="b", rank=2, targets="mlp", steps=3, batch_size=3, lr=1e-2, augment="shuffle",
                 dtype="fp32")  # fmt: skip


def _written(base: Path, media: list[MediumConfig], sessions: list[Material]) -> list[list[torch.Tensor]]:
    model, tok = load_model_and_tokenizer(base / "model")
    stack = Stack(model, media[0], [11 + ord(m.name) for m in media])
    views = [StackedLora(stack, g, tok, m, base_text=lambda rng: "Ada Lindqvist lives in Lyon .", seed=3)
             for g, m in enumerate(media)]  # fmt: skip
    for s in sessions:
        costs = write_stacked(views, s)
        assert all(c.tokens > 0 for c in costs)
    return [[t.detach().clone() for t in v.trainable()] for v in views]


def test_media_written_as_one_stack_end_where_each_would_alone(smoke_base, monkeypatch):
    # in fp32 the two must agree to rounding (bf16 autocast, on in real writes, leaves more noise)
    monkeypatch.setattr(torch, "autocast", lambda *a, **k: contextlib.nullcontext())
    world = load_world(smoke_base / "world")
    sessions = [Material(s.index, s.transcript, 10, transcript=s.transcript) for s in world.sessions[:2]]
    both = _written(smoke_base, [A, B], sessions)
    for g, m in enumerate([A, B]):
        alone = _written(smoke_base, [m], sessions)[0]
        fresh = _written(smoke_base, [m], [])[0]  # its initial A (and B = 0)
        moved = sum(float((a - f).norm()) for a, f in zip(alone, fresh))
        assert moved > 0 and sum(float((x - a).norm()) for x, a in zip(both[g], alone)) <= 1e-4 * moved
    assert not all(torch.equal(x, y) for x, y in zip(both[0][1::2], both[1][1::2]))  # their own texts


def test_only_media_that_share_a_stack_key_are_stacked():
    c = MediumConfig(kind="lora", name="c", rank=4)
    d = MediumConfig(kind="lora", name="d", objective="distill")
    e = replace(A, name="e", null_space=0.9)  # the stacked writer does not project: written alone
    groups = write_groups([MediumConfig(kind="none"), A, c, B, d, e], batch=True)
    assert [([m.name for m in g], s) for g, s in groups] == [(["none"], False), (["a", "b"], True), (["c"], True),
                                                             (["d"], False), (["e"], False)]  # fmt: skip
    assert all(not s for _, s in write_groups([A, B], batch=False))


def test_a_run_with_batch_writes_gives_each_medium_the_numbers_of_its_run_alone(plain_base, user_sessions, tmp_path):
    media = (
        "[{kind: lora, name: a, rank: 2, steps: 3, batch_size: 2, lr: 1.0e-2, replay: 0.5, dtype: fp32}, "
        "{kind: lora, name: b, rank: 2, steps: 3, batch_size: 3, lr: 1.0e-2, augment: shuffle, dtype: fp32}]"
    )
    sets = [f"base={plain_base}", f"data={user_sessions}", "threads=1", "precision=fp32", "batch_writes=true",
            "eval.base_n=8", "liti=[0.5]"]  # fmt: skip
    cfg = load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml", [*sets, f"media={media}"])
    both = continual(cfg, out=str(tmp_path / "both"))
    assert list(both["media"]) == ["a", "b"]
    for name in ("a", "b"):
        one = media.split("}, ")[0] + "}]" if name == "a" else "[" + media.split("}, ")[1]
        continual(load_config(ContinualConfig, ROOT / "configs" / "smoke" / "continual.yaml", [*sets, f"media={one}"]),
                  out=str(tmp_path / name))  # fmt: skip
        x, y = (json.loads((tmp_path / d / "media" / f"{name}.json").read_text()) for d in ("both", name))
        assert x["R"] == y["R"] and x["base_curve"] == y["base_curve"] and x["write_tokens"] == y["write_tokens"]
        assert x["ppl_curve"] == pytest.approx(y["ppl_curve"], rel=1e-5) and x["ppl_curve"][-1] != x["ppl_curve"][0]
        assert x["liti"] == y["liti"]
    lines = (tmp_path / "both" / "metrics.jsonl").read_text().splitlines()
    assert sorted(json.loads(r)["medium"] for r in lines) == ["a", "a", "b", "b"]  # a record per write (sessions: 2)
