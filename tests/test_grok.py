"""The grokking datasets: split rules, downsampling counts, and no OOD fact leaking into training."""

import pytest

from retain.errors import RetainError
from retain.grok.data import ComparisonConfig, CompositionConfig, comparison, composition

COMP = dict(entities=300, relations=40, facts_per_entity=8, phi=5.0, id_test_fraction=0.05)


def test_composition_splits_two_hop_facts_by_their_hops_and_downsamples_to_phi():
    cfg = CompositionConfig(**COMP)
    d = composition(cfg)
    E = cfg.entities
    atomic = {(x[0], x[1] - E): t for x, t in d.train if len(x) == 2}
    assert set(atomic) == d.atomic_id | d.atomic_ood and len(atomic) == cfg.entities * cfg.facts_per_entity
    assert len(d.atomic_ood) == round(cfg.ood_fraction * len(atomic))  # 95 / 5

    def hops(x):  # the two atomic facts a two-hop fact goes through
        h, r1, r2 = x[0], x[1] - E, x[2] - E
        return (h, r1), (atomic[(h, r1)], r2)

    inferred = [x for x, _ in d.train if len(x) == 3]
    assert len(inferred) == round(cfg.phi * len(d.atomic_id))  # downsampled to phi x |atomic ID|
    assert all(a in d.atomic_id and b in d.atomic_id for a, b in map(hops, inferred))
    assert all(a in d.atomic_id and b in d.atomic_id for a, b in (hops(x) for x, _ in d.id_test))
    assert d.ood_test and all(a in d.atomic_ood and b in d.atomic_ood for a, b in (hops(x) for x, _ in d.ood_test))
    assert not {x for x, _ in d.ood_test + d.id_test} & set(inferred)  # no test fact in training
    assert all(t == atomic[hops(x)[1]] for x, t in d.train + d.ood_test if len(x) == 3)  # answers composed


def test_comparison_splits_entities_per_attribute_and_keeps_ood_pairs_out_of_training():
    cfg = ComparisonConfig(entities=120, attributes=4, values=10, phi=3.0)
    d = comparison(cfg)
    E, A = cfg.entities, cfg.attributes
    value = {(x[0], x[1] - E): t - E - A for x, t in d.train if len(x) == 2}
    assert len(value) == E * A and len(d.atomic_ood) == A * round(cfg.ood_fraction * E)
    queries = [x for x, _ in d.train if len(x) == 3]
    assert len(queries) == round(cfg.phi * len(d.atomic_id))
    side = lambda x: {(x[1], x[0] - E), (x[2], x[0] - E)}  # noqa: E731
    assert all(side(x) <= d.atomic_id for x in queries) and all(side(x) <= d.atomic_id for x, _ in d.id_test)
    assert d.ood_test and all(side(x) <= d.atomic_ood for x, _ in d.ood_test)
    labels = E + A + cfg.values
    for x, t in d.train[len(value) :] + d.ood_test:  # the label is the comparison of the two stored values
        v1, v2 = value[(x[1], x[0] - E)], value[(x[2], x[0] - E)]
        assert t - labels == (0 if v1 < v2 else 1 if v1 == v2 else 2)


def test_comparison_atomic_order_only_reorders_the_atomic_facts():
    kw = dict(entities=60, attributes=3, values=8, phi=2.0)
    ref, flipped = (
        comparison(ComparisonConfig(**kw)),
        comparison(ComparisonConfig(**kw, atomic_order="attribute_first")),
    )
    n = 60 * 3  # the atomic facts come first in training
    assert [(x[::-1], t) for x, t in ref.train[:n]] == flipped.train[:n]
    assert all(x[0] >= 60 > x[1] for x, _ in flipped.train[:n])  # attribute token, then entity token
    assert ref.train[n:] == flipped.train[n:] and ref.ood_test == flipped.ood_test and ref.id_test == flipped.id_test


@pytest.mark.parametrize("cls,kw,message", [
    (CompositionConfig, {"phi": 0}, "phi must be positive"),
    (CompositionConfig, {"ood_fraction": 1.0}, r"ood_fraction must be in \(0, 1\)"),
    (ComparisonConfig, {"ood_fraction": 0.0}, r"ood_fraction must be in \(0, 1\)"),
    (ComparisonConfig, {"phi": -1}, "phi must be positive"),
    (ComparisonConfig, {"atomic_order": "value_first"}, "atomic_order must be entity_first or attribute_first"),
])  # fmt: skip
def test_bad_settings_are_one_line_errors(cls, kw, message):
    with pytest.raises(ValueError, match=message):
        cls(**kw)
    with pytest.raises(RetainError, match="phi asks for .* but only .* exist"):
        composition(CompositionConfig(**{**COMP, "phi": 1000.0}))


def test_warmdown_keeps_the_constant_rate_until_its_last_steps_then_falls_to_zero():
    from retain.grok.train import GrokConfig, rate

    plain, down = GrokConfig(steps=1000, lr=1e-3, warmup_steps=100), GrokConfig(steps=1000, lr=1e-3, warmup_steps=100,
                                                                                 warmdown_steps=400)  # fmt: skip
    assert [rate(plain, s) for s in range(601)] == [rate(down, s) for s in range(601)]  # same run up to step 600
    assert rate(down, 800) == pytest.approx(0.5e-3) and rate(down, 1000) == 0 and rate(plain, 1000) == 1e-3
    with pytest.raises(ValueError, match="warmdown_steps must be in"):
        GrokConfig(steps=1000, warmup_steps=100, warmdown_steps=901)
    with pytest.raises(ValueError, match="loss_every must be >= 0"):
        GrokConfig(loss_every=-1)
    with pytest.raises(ValueError, match=r"beta2 must be in \(0, 1\)"):
        GrokConfig(beta2=1.0)


def test_a_grok_run_learns_logs_and_resumes_to_the_same_end(tmp_path):
    import json
    from pathlib import Path

    from retain.config import load_config
    from retain.grok.train import GrokConfig, grok

    cfg = load_config(
        GrokConfig,
        Path(__file__).resolve().parents[1] / "configs" / "smoke" / "grok.yaml",
        ["threads=1", "loss_every=10"],
    )
    whole = grok(cfg, out=str(tmp_path / "whole"))
    run = tmp_path / "whole"
    assert {"summary.json", "report.md", "accuracy.png", "metrics.jsonl"} <= {p.name for p in run.iterdir()}
    losses = [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r.get("loss")]
    assert losses[-1] < losses[0]  # it trains
    # as if killed after the checkpoint at step 20: the last checkpoint and the end removed, then resumed
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    (cut / "ckpt" / "step-0000040.safetensors").unlink()
    (cut / "summary.json").unlink()
    again = grok(GrokConfig(), out=str(cut), resume=True)  # the documented resume: the run's own config
    assert {k: again[k] for k in ("train", "id_test", "ood_test")} == {
        k: whole[k] for k in ("train", "id_test", "ood_test")
    }

    # the resumed log is the uninterrupted one: each evaluation and each loss window once, with the same numbers
    def records(path):
        return [{k: v for k, v in r.items() if k not in ("time", "seconds")}
                for r in map(json.loads, (path / "metrics.jsonl").read_text().splitlines())]  # fmt: skip

    assert records(cut) == records(run)
    windows = [r for r in records(run) if "loss_mean" in r]
    assert [r["step"] for r in windows] == [10, 20, 30, 40] and all(r["window"] == 10 for r in windows)
    assert all(w["loss_max"] >= w["loss_mean"] > 0 and w["grad_norm_max"] > 0 for w in windows)


def test_beta2_reaches_the_optimizer_and_its_checkpoint(tmp_path):
    from pathlib import Path

    from retain.config import load_config
    from retain.grok.train import GrokConfig, grok
    from retain.runs.checkpoint import latest_checkpoint, load_checkpoint

    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke" / "grok.yaml"
    grok(load_config(GrokConfig, smoke, ["threads=1", "steps=2", "ckpt_every=2", "beta2=0.95"]), out=str(tmp_path))
    _, meta = load_checkpoint(latest_checkpoint(tmp_path / "ckpt"))
    assert {tuple(g["betas"]) for g in meta["optim"]["param_groups"]} == {(0.9, 0.95)}


def test_precision_bf16_computes_the_grok_run_under_autocast(tmp_path):
    import json
    from pathlib import Path

    from retain.config import load_config
    from retain.grok.train import GrokConfig, grok
    from retain.models.device import bf16_is_native

    if not bf16_is_native("cpu"):
        pytest.skip("this CPU has no bf16 hardware")
    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke" / "grok.yaml"
    losses = {}
    for precision in ("fp32", "bf16"):
        cfg = load_config(GrokConfig, smoke, ["threads=1", "steps=20", "ckpt_every=20", f"precision={precision}"])
        grok(cfg, out=str(tmp_path / precision))
        records = map(json.loads, (tmp_path / precision / "metrics.jsonl").read_text().splitlines())
        losses[precision] = [r["loss"] for r in records if r.get("loss")]
    # the same data, init and batches: the curves start together and part only by rounding
    assert losses["bf16"] != losses["fp32"]
    assert losses["bf16"][-1] == pytest.approx(losses["fp32"][-1], rel=0.05)


def test_the_gap_table_splits_each_test_by_the_values_compared_and_adds_up(tmp_path):
    from pathlib import Path

    from benchmarks.grok_gaps import GAPS, measure
    from retain.config import load_config
    from retain.grok.train import GrokConfig, build, grok

    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke" / "grok.yaml"
    sets = ["threads=1", "task=comparison", "comparison.entities=60", "comparison.attributes=3", "comparison.phi=2.0",
            "comparison.atomic_order=attribute_first"]  # fmt: skip
    cfg = load_config(GrokConfig, smoke, sets)
    grok(cfg, out=str(tmp_path / "c"))
    m, data = measure(tmp_path / "c"), build(cfg)
    for split in ("id_test", "ood_test"):
        parts = {g: v for g, v in m[split].items() if g != "all"}
        assert set(parts) <= set(GAPS) and sum(n for _, n in parts.values()) == len(getattr(data, split))
        mean = sum(a * n for a, n in parts.values()) / len(getattr(data, split))
        assert abs(mean - m[split]["all"][0]) < 1e-9
    ties = [x for x, t in data.ood_test if t == data.vocab_size - 2]  # the "=" label
    assert m["ood_test"].get(0, (0, 0))[1] == len(ties)  # gap 0 is exactly the ties
    assert 0 <= m["atomic"] <= 1 and m["step"] == cfg.steps
