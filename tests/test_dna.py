"""HyenaDNA at CPU scale: the character tokenizer, the genome's repeats, the long-range task's construction,
one-line errors, and `retain dna` end to end through an interruption and `--resume`."""

import json
from pathlib import Path

import numpy as np
import pytest

from retain.cli.main import main as cli
from retain.dna.genome import LABELS, VOCAB, GenomeConfig, decode, encode, genome, holds, marker, motif, task
from retain.errors import RetainError

ROOT = Path(__file__).resolve().parents[1]


def test_the_tokenizer_is_the_reference_s_and_refuses_other_characters():
    assert encode("acgtN") == [7, 8, 9, 10, 11] and VOCAB == 12 and LABELS == {"A": 7, "N": 11}
    assert decode([1, 7, 11]) == "[SEP]AN"
    with pytest.raises(RetainError, match="character 'U' at position 2 is not a nucleotide"):
        encode("ACUG")


def kmers(g: np.ndarray, k: int, window: int) -> int:
    """How many positions start a k-mer that already occurred within `window` letters before."""
    seen, hits = {}, 0
    for i in range(len(g) - k):
        key = g[i : i + k].tobytes()
        if key in seen and i - seen[key] <= window:
            hits += 1
        seen[key] = i
    return hits


def test_the_genome_carries_copied_segments_the_chain_alone_does_not():
    with_repeats = genome(GenomeConfig(length=20000, repeat_rate=0.02, mutation=0.0))
    without = genome(GenomeConfig(length=20000, repeat_rate=0.0))
    assert set(np.unique(with_repeats)) <= {0, 1, 2, 3}
    assert kmers(with_repeats, 16, 1000) > 5 * max(1, kmers(without, 16, 1000))


def test_the_repeat_task_returns_the_key_only_in_its_positive_examples():
    cfg = GenomeConfig(length=2000, task_len=200, k=8, task="repeat")
    x, y = task(cfg, 200, "train")
    assert x.shape == (200, 200) and y.sum() == 100
    head = lambda row: {row[i : i + cfg.k].tobytes() for i in range(32)}  # noqa: E731  (the key's offsets)
    back = [row[-cfg.k :].tobytes() in head(row) for row in x]
    assert all(b for b, label in zip(back, y) if label)
    assert sum(b for b, label in zip(back, y) if not label) <= 5  # a fresh k-mer matches one of 32 by chance only
    test_x, _ = task(cfg, 200, "test")
    assert not any(np.array_equal(a, b) for a, b in zip(x, test_x))  # the splits are drawn apart


def test_the_motif_stands_near_the_start_of_positive_examples_and_nowhere_in_negative_ones():
    cfg = GenomeConfig(length=2000, task_len=200, k=6)  # k 6: chance occurrences are common, so the redraw is tested
    x, y = task(cfg, 200, "train")
    assert x.shape == (200, 200) and y.sum() == 100
    m = motif(cfg)
    at = [[i for i in range(200 - cfg.k + 1) if np.array_equal(row[i : i + cfg.k], m)] for row in x]
    assert all(a and min(a) < 32 for a, label in zip(at, y) if label)
    assert not any(a for a, label in zip(at, y) if not label)
    assert np.array_equal(m, motif(GenomeConfig(k=6))) and not np.array_equal(m, motif(GenomeConfig(k=6, seed=1)))


def test_the_genome_with_a_rule_ends_each_rule_window_with_the_marker_and_the_letter_the_motif_decides():
    cfg = GenomeConfig(length=20000, task_len=200, k=8, rule_rate=0.5)
    g, span = genome(cfg), cfg.task_len + cfg.k + 1
    assert np.array_equal(genome(GenomeConfig(length=20000, task_len=200)), genome(GenomeConfig(length=20000)))
    windows = [g[i : i + span] for i in range(0, len(g) - span + 1, span)]
    ruled = [w for w in windows if np.array_equal(w[cfg.task_len : -1], marker(cfg))]
    assert len(ruled) == round(0.5 * (len(g) // span))
    letters = [int(w[-1]) for w in ruled]
    present = [holds(w[: cfg.task_len], motif(cfg)) for w in ruled]
    assert letters == [0 if p else 3 for p in present]  # A after a window with the motif, T after one without
    assert 0.3 < sum(present) / len(ruled) < 0.7
    assert not np.array_equal(marker(cfg), motif(cfg))


@pytest.mark.parametrize("key,value,message", [
    ("lengths", "[64, 32]", "lengths must rise"),
    ("prompt_tokens", "[0]", "prompt_tokens must be positive"),
    ("model.order", "1", "model.order must be >= 2"),
    ("genome.k", "40", "need 2 <= k <= 16"),
    ("genome.task", "copy", "genome.task must be motif or repeat"),
    ("genome.rule_rate", "1.5", "genome.rule_rate must be in"),
    ("prompt_position", "middle", "is not one of prefix, suffix"),
    ("labels", "AG", "is not one of AN, AT"),
])  # fmt: skip
def test_bad_dna_config_is_one_line_before_any_run(key, value, message, tmp_path, capsys):
    assert (
        cli(
            [
                "dna",
                str(ROOT / "configs" / "smoke" / "dna.yaml"),
                "--set",
                f"{key}={value}",
                "--out",
                str(tmp_path / "d"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and not (tmp_path / "d").exists()


def test_retain_dna_runs_and_resumes_after_pretraining(tmp_path, monkeypatch):
    import retain.dna.train as T

    out, real = tmp_path / "d", T.arms
    monkeypatch.setattr(T, "arms", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    smoke = str(ROOT / "configs" / "smoke" / "dna.yaml")
    assert cli(["dna", smoke, "--set", "genome.rule_rate=0.5", "--out", str(out)]) == 130
    assert len(list((out / "ckpt").glob("step-*"))) == 2  # one checkpoint per warm-up stage
    monkeypatch.setattr(T, "arms", real)
    assert cli(["dna", "--out", str(out), "--resume"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert [t["length"] for t in s["stages"]] == [16, 32]
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in logged if "stage" in r] == [0, 1]  # resumed after pretraining: not trained again
    assert set(s["arms"]) == {"frozen", "prompt-2", "prompt-4", "finetune"}
    assert s["arms"]["prompt-2"]["trained"] == 2 * 32 and s["arms"]["finetune"]["trained"] > 10_000
    assert (out / "accuracy.png").exists() and "soft prompt" in (out / "report.md").read_text().lower()
    assert 0 <= s["rule_read"] <= 1 and f"reads the rule after the marker at {s['rule_read']:.3f}" in (
        out / "report.md"
    ).read_text().replace("\n", " ")
    assert s["reach"]["prompt_moves"] > 0 and "moves it by" in (out / "report.md").read_text()


def test_a_suffix_prompt_stands_after_sep_and_at_labels_are_the_rule_s_letters():
    import torch

    from retain.dna.train import DNAConfig, build, examples, label_logits

    cfg = DNAConfig(genome=GenomeConfig(length=4000, task_len=48, k=4, n_train=8, n_test=8), lengths=[16, 32],
                    prompt_tokens=[3], labels="AT", prompt_position="suffix")  # fmt: skip
    ids, labels = examples(cfg, "train", 8)
    assert set(labels.tolist()) == {encode("A")[0], encode("T")[0]} and (ids[:, -1] == 1).all()  # [SEP] last
    model = build(cfg).eval()
    prompt = torch.randn(1, 3, cfg.model.d_model)
    with torch.no_grad():
        emb = model.model.embed_tokens(ids)
        by_hand = model.lm_head(model.model(torch.cat([emb, prompt.expand(8, -1, -1)], 1))[0][:, -1])
        assert torch.allclose(label_logits(model, ids, prompt, suffix=True), by_hand)
        assert not torch.allclose(label_logits(model, ids, prompt), by_hand)  # a prefix reads differently
