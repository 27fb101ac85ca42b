"""Decoding: the package's sampling equals `model.generate` with the same processors and seed; the
temperature mappings; the head's shapes and gradients (frozen vs joint); the world's diversity labels
against brute-force enumeration; reading facts back with the templates."""

import itertools
import random
from collections import Counter

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from retain.sampling import (
    AdaptiveTemperature,
    DecodingConfig,
    TemperatureHead,
    processors,
    sample,
    temperature,
)
from retain.sampling.labels import bio_with_labels, candidates, diversity
from retain.sampling.quality import distinct_n, fact_accuracy, parse, sentences, template_entropy, words
from retain.sampling.train import HeadConfig, train_head
from retain.world import render as R
from retain.world.world import Entity


class _Tok:
    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0


def tiny_lm(seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2,
                      pad_token_id=0)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize(
    "cfg",
    [
        DecodingConfig(temperature=0.7),
        DecodingConfig(temperature=1.3, top_k=10),
        DecodingConfig(temperature=1.0, top_p=0.8),
        DecodingConfig(temperature=1.2, min_p=0.1),
        DecodingConfig(temperature=0.9, typical_p=0.5),
    ],
    ids=lambda c: c.label(),
)
def test_sampling_matches_hf_generate_with_the_same_processors(cfg):
    model = tiny_lm()
    prompts = [[1, 5, 6, 7], [1, 9, 3, 8]]  # equal lengths: no padding on either side
    torch.manual_seed(123)
    ours = sample(model, _Tok, prompts, cfg, max_new_tokens=12)
    torch.manual_seed(123)
    hf = model.generate(torch.tensor(prompts), attention_mask=torch.ones(2, 4, dtype=torch.long), do_sample=True,
                        max_new_tokens=12, temperature=cfg.temperature, top_k=cfg.top_k or None, top_p=cfg.top_p,
                        min_p=cfg.min_p or None, typical_p=cfg.typical_p, eos_token_id=2, pad_token_id=0)  # fmt: skip
    for row, seq in zip(hf[:, 4:].tolist(), ours):
        expected = list(itertools.takewhile(lambda t: t != 2, row))
        assert seq == expected
    # and a different seed draws something else (the test would catch a sampler that ignores the RNG)
    torch.manual_seed(124)
    assert sample(model, _Tok, prompts, cfg, max_new_tokens=12) != ours or cfg.top_k == 1


def test_processors_follow_the_config_in_generate_order():
    cfg = DecodingConfig(temperature=0.5, top_k=5, top_p=0.9, min_p=0.05, typical_p=0.3)
    names = [type(p).__name__ for p in processors(cfg)]
    assert names == [
        "TemperatureLogitsWarper",
        "TopKLogitsWarper",
        "TopPLogitsWarper",
        "MinPLogitsWarper",
        "TypicalLogitsWarper",
    ]
    assert len(processors(DecodingConfig())) == 0 and not DecodingConfig().sampled
    for bad in (dict(temperature=-1), dict(top_p=0.0), dict(typical_p=1.5), dict(adaptive="linear"),
                dict(t_min=2.0, t_max=1.0), dict(min_p=1.0), dict(min_p=-0.1)):  # fmt: skip
        with pytest.raises(ValueError):
            DecodingConfig(**bad)


def test_sentence_start_temperature_rescales_only_the_first_tokens_of_a_sentence():
    from retain.sampling.decoding import SentenceStartTemperature

    end = 4  # '.'
    proc = SentenceStartTemperature(start=4.0, base=2.0, n=2, end_ids=[end])
    ids = torch.tensor(
        [
            [0, 7, 4],  # the next token opens a sentence: at start
            [7, 4, 9],  # second token of the sentence: still inside n=2
            [4, 9, 9],  # third: plain
            [7, 8, 9],  # no sentence end at all (left padding, no prompt end): plain
        ]
    )
    scores = torch.arange(12.0).reshape(4, 3)
    out = proc(ids, scores.clone())
    assert torch.equal(out[:2], scores[:2] * 0.5) and torch.equal(out[2:], scores[2:])
    # in the processor list it comes after the temperature warper, and it needs the sentence ends
    cfg = DecodingConfig(temperature=2.0, start_temperature=4.0, start_tokens=2)
    names = [type(p).__name__ for p in processors(cfg, end_ids=[end])]
    assert names == ["TemperatureLogitsWarper", "SentenceStartTemperature"]
    assert "T=4 at sentence starts" in cfg.label()
    with pytest.raises(ValueError, match="sentence-end ids"):
        processors(cfg)
    for bad in (
        dict(start_temperature=-1.0),
        dict(temperature=1.0, start_temperature=2.0, start_tokens=0),
        dict(start_temperature=2.0),  # greedy: nothing to rescale
    ):
        with pytest.raises(ValueError):
            DecodingConfig(**bad)


@pytest.mark.parametrize("mapping", ["linear", "exponential", "inverse_sigmoid"])
def test_mappings_are_bounded_and_monotone(mapping):
    s = torch.linspace(-0.5, 1.5, 81)  # clamped outside [0, 1]
    t = temperature(s, mapping, 0.2, 1.6)
    assert torch.allclose(t[s <= 0], torch.tensor(0.2)) and torch.allclose(t[s >= 1], torch.tensor(1.6))
    assert (t.diff() >= -1e-7).all() and (t[(s > 0) & (s < 1)].diff() > 0).all()
    mid = float(temperature(torch.tensor(0.5), mapping, 0.2, 1.6))
    assert mid == pytest.approx({"linear": 0.9, "exponential": (0.2 * 1.6) ** 0.5, "inverse_sigmoid": 0.9}[mapping])
    with pytest.raises(ValueError):
        temperature(s, "cubic", 0.2, 1.6)


def test_adaptive_processor_divides_by_the_heads_temperature():
    model, head = tiny_lm(), TemperatureHead(32, 8)
    with torch.no_grad():
        head.net[-1].bias.fill_(-50.0)  # score ~ 0 everywhere: temperature t_min
        head.net[-1].weight.zero_()
    x = torch.tensor([[1, 5, 6, 7]])
    with AdaptiveTemperature(model, head, "exponential", 0.25, 2.0) as proc:
        logits = model(x).logits[:, -1]
        assert torch.allclose(proc(x, logits.clone()), logits / 0.25, atol=1e-5)
    assert proc._hook is None
    with pytest.raises(Exception, match="16-wide states"):
        AdaptiveTemperature(model, TemperatureHead(16), "linear", 0.1, 1.0)


def test_head_shapes_and_where_gradients_go():
    head = TemperatureHead(32, 8)
    h = torch.randn(3, 5, 32, requires_grad=True)
    assert head(h).shape == (3, 5) and ((head(h) > 0) & (head(h) < 1)).all()
    head(h).sum().backward()
    assert h.grad is not None and all(p.grad is not None for p in head.parameters())


@pytest.fixture(scope="module")
def world_bits(smoke_base):
    from retain.models.build import load_model_and_tokenizer
    from retain.world.io import load_world

    return load_model_and_tokenizer(smoke_base / "model"), load_world(smoke_base / "world")


@pytest.mark.parametrize("mode", ["frozen", "joint"])
def test_head_training_frozen_leaves_the_model_joint_moves_it(world_bits, mode):
    (model, tok), world = world_bits
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    head, log = train_head(model, tok, world.known[:6], HeadConfig(mode=mode, bios=24, steps=15, batch_size=4))
    changed = any(not torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert changed == (mode == "joint")
    assert log[-1]["head_loss"] < log[0]["head_loss"]
    assert (log[0]["lm_loss"] > 0) == (mode == "joint")
    with torch.no_grad():  # put the model back for the other tests
        for n, p in model.named_parameters():
            p.copy_(before[n])


def test_labels_match_brute_force_enumeration(world_bits):
    (_, tok), world = world_bits
    person = world.known[0]
    e = Entity(person.name, {a: person.attrs[a] for a in ("birth_city", "field", "employer")}, person.split)
    cands = candidates(e, tok)
    # every biography render.bio can draw, with its probability
    bios = Counter()
    for order in itertools.permutations(e.attrs):
        for ts in itertools.product(*(range(len(cands[a])) for a in order)):
            body = [t for a, i in zip(order, ts) for t in cands[a][i]]
            bios[tuple([tok.bos_token_id, *body, tok.eos_token_id])] += 1
    total = sum(bios.values())
    ids, labels = bio_with_labels(e, tok, random.Random(3), cands)
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(labels) == len(ids)
    for i in range(len(ids) - 1):
        nxt = Counter()
        for b, c in bios.items():
            if list(b[: i + 1]) == ids[: i + 1]:
                nxt[b[i + 1]] += c / total
        assert labels[i] == pytest.approx(diversity(nxt), abs=1e-9), i
    # facts are fixed: inside a sentence, the value is forced (label 0) unless it opens the sentence
    pos = ids.index(tok(e.attrs["field"], add_special_tokens=False)["input_ids"][0])
    opens = tok.convert_ids_to_tokens(ids[pos - 1]) in (".", tok.bos_token)
    assert opens or labels[pos - 1] == 0.0
    assert labels[0] > 0.3 and labels[-2] == 0.0  # a sentence start is free; before the eos nothing is


def test_facts_read_back_with_the_templates(world_bits):
    _, world = world_bits
    e, rng = world.known[0], random.Random(0)
    names = {p.name for p in world.known}
    truth = {(e.name, a): " ".join(words(v)) for a, v in e.attrs.items()}
    bios = [R.bio(e, rng) for _ in range(30)]
    assert fact_accuracy(bios, [truth] * 30, names)["fact_acc"] == 1.0
    wrong_city = next(c for c in ("Lyon", "Porto", "Naples") if c != e.attrs["birth_city"])
    lie = R.fact_sentence(e.name, "birth_city", wrong_city, rng) + " Gibberish words here ."
    acc = fact_accuracy([lie], [truth], names)
    assert acc["fact_acc"] == 0.0 and acc["unread"] == 0.5 and acc["sentences"] == 2
    assert parse(sentences(R.fact_sentence(e.name, "field", e.attrs["field"], rng))[0]).value == e.attrs["field"]
    assert template_entropy(bios, names) > 0.7
    assert template_entropy([bios[0]] * 5, names) == 0.0
    assert distinct_n([[bios[0]] * 4]) < distinct_n([bios[:4]])
