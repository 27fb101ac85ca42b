"""The linearity probe: the reference's score on maps whose answer is known, and the command end to end."""

import json

import pytest
import torch

from retain.cli.main import main as cli
from retain.probes.linearity import linearity_score, scores


def test_the_score_is_one_for_a_linear_map_and_near_zero_for_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 16, generator=g)
    assert linearity_score(x, x @ torch.randn(16, 24, generator=g) + 3.0) == pytest.approx(1.0, abs=1e-9)
    noise = torch.randn(4000, 16, generator=g)
    assert linearity_score(x, noise) < 0.02  # what 16 free directions explain of 4000 random rows: ~16/4000
    # centring and normalising: shifts and scales of either side change nothing
    y = torch.tanh(x @ torch.randn(16, 16, generator=g))
    assert linearity_score(5 * x - 2, 0.1 * y + 7) == pytest.approx(linearity_score(x, y), abs=1e-6)  # fp32 inputs
    # and why the probe needs n >> d: with as many rows as dimensions anything maps onto anything
    assert linearity_score(x[:16], noise[:16]) == pytest.approx(1.0, abs=1e-6)


def test_without_the_residual_the_score_is_of_the_layers_own_update():
    g = torch.Generator().manual_seed(1)
    h0 = torch.randn(3000, 8, generator=g)
    h1 = h0 + 0.1 * torch.tanh(h0 @ torch.randn(8, 8, generator=g) * 3)  # a small nonlinear update on the stream
    s = scores([h0, h1])
    assert s["residual"][0] > 0.99 and s["without_residual"][0] < s["residual"][0] - 0.05


def test_retain_probe_linearity_writes_per_layer_scores_and_refuses_too_few_tokens(plain_base, tmp_path, capsys):
    assert cli(["probe", "linearity", "--model", str(plain_base), "--out", str(tmp_path / "p")]) == 0
    r = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert len(r["residual_per_layer"]) == len(r["without_residual_per_layer"]) == 2
    assert all(-1.0 <= v <= 1.0 for v in r["residual_per_layer"] + r["without_residual_per_layer"])
    assert r["tokens"] >= 4 * r["hidden_size"] and (tmp_path / "p" / "linearity.png").exists()
    assert "with the residual stream" in capsys.readouterr().out
    short = tmp_path / "short.txt"
    short.write_text("A few words only.")
    assert (
        cli(["probe", "linearity", "--model", str(plain_base), "--text", str(short), "--out", str(tmp_path / "q")]) == 2
    )
    assert "the score needs n >> d" in capsys.readouterr().err and not (tmp_path / "q").exists()
    assert cli(["probe", "linearity", "--model", str(plain_base), "--adapter", str(tmp_path)]) == 2
    assert "holds no PEFT adapter" in capsys.readouterr().err


def test_the_perturbation_is_shaped_like_the_initialisation(plain_base):
    from retain.models.build import load_model_and_tokenizer
    from retain.probes.sensitivity import init_std, perturbed, restore

    model, _ = load_model_and_tokenizer(plain_base)
    std = init_std(model)
    assert std["model.layers.0.mlp.up_proj.weight"] == pytest.approx(model.config.initializer_range, rel=0.1)
    assert std["model.layers.0.input_layernorm.weight"] == 0.0  # norms start at ones: not perturbed
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    saved = perturbed(model, std, 0.5, torch.Generator().manual_seed(0))
    for n, p in model.named_parameters():  # the noise of each tensor has the std of its init, times gamma
        noise = (p.detach() - before[n]).flatten()
        if std[n] > 0 and noise.numel() > 500:
            assert noise.std().item() == pytest.approx(0.5 * std[n], rel=0.15), n
        elif std[n] == 0:
            assert noise.abs().max() == 0, n
    restore(model, saved)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_retain_probe_sensitivity_grows_with_gamma(plain_base, tmp_path):
    assert cli(["probe", "sensitivity", "--model", str(plain_base), "--gammas", "[0.0, 0.1, 3.0]",
                "--samples", "2", "--out", str(tmp_path / "s")]) == 0  # fmt: skip
    r = json.loads((tmp_path / "s" / "probe.json").read_text())
    assert r["mean_change"][0] == 0.0 and r["mean_change"][2] > abs(r["mean_change"][1])
    assert (tmp_path / "s" / "sensitivity.png").exists()


def test_a_world_base_is_probed_one_document_a_sequence_a_plain_text_in_running_chunks(smoke_base, plain_base):
    """Pretraining never lets a world model attend from one document to the next, so a probe of a world base
    reads each biography and session as its own sequence after BOS; any other text runs on in chunks."""
    from retain.continual.stream import resolve_base
    from retain.models.build import load_model_and_tokenizer
    from retain.probes.run import ProbeConfig, default_documents, load

    cfg = ProbeConfig(model=str(smoke_base), chunk_tokens=48, max_tokens=600)
    _, chunks = load(cfg)
    base = resolve_base(str(smoke_base))
    _, tok = load_model_and_tokenizer(base.model_dir)
    docs = default_documents(base.world, cfg.seed)
    assert len(docs) > len(chunks) and sum(map(len, chunks)) <= 600
    bios = default_documents(base.world, cfg.seed, sessions=False)
    assert bios == docs[: len(bios)] and len(docs) - len(bios) == len(base.world.sessions)
    for chunk, doc in zip(chunks, docs):
        want = [tok.bos_token_id] + tok(doc, add_special_tokens=False)["input_ids"]
        assert chunk == want[: len(chunk)] and len(chunk) == min(48, len(want)) or chunk is chunks[-1]

    _, plain = load(ProbeConfig(model=str(plain_base), chunk_tokens=48, max_tokens=600))
    assert sum(map(len, plain)) == 600 and all(len(c) == 48 for c in plain[:-1])
