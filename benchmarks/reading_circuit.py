"""Why some bases read the birth city and the home city at chance: where each base looks when it answers.

For every base given, fresh people born in one city and living in another (each sentence from the training
templates), then one question on each city:
- `contrast`: share answered right (0.5 is chance: the other city of the context is the usual wrong answer);
- `relation probe, layer l`: whether the city token's hidden state after layer l tells "born" from "lives"
  (a logistic probe trained on 1,800 cities, tested on 600), for the templates that state the relation first;
- `attention, layer l`: at the answer position, the head of layer l that looks most at the right city (mean
  over questions): its mean attention on the right city and on the wrong one.

    python -m benchmarks.reading_circuit runs/worlds/seed0 runs/worlds/seed2 --section reading_circuit
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import torch

from benchmarks.results import write_section

N_PEOPLE = 200  # contrast and attention: 400 questions per base
N_PROBE = 1200  # probe: two cities per person, 1,800 to train and 600 to test


def contrast_items(world, n: int, seed: int, relation_first: bool = False):
    """(context, [(attribute, right city, wrong city)]) for `n` fresh people born in one city, living in
    another; `relation_first` keeps only templates that state the relation before the city."""
    from retain.world import templates as T
    from retain.world import vocab
    from retain.world.examples import fresh_people

    rng = random.Random(seed)
    templates = {a: [t for t in T.split(T.BIO[a], False) if not relation_first or not t.startswith("{value}")]
                 for a in ("birth_city", "home_city")}  # fmt: skip
    items = []
    for p in fresh_people(world, n, rng, set(world.entities)):
        born, home = rng.sample(vocab.CITIES, 2)
        sentences = [
            rng.choice(templates[a]).format(name=p.name, value=v)
            for a, v in (("birth_city", born), ("home_city", home))
        ]
        rng.shuffle(sentences)
        items.append((p.name, " ".join(sentences), [("birth_city", born, home), ("home_city", home, born)]))
    return items


def contrast_questions(world, tok, n: int, seed: int = 1) -> list[tuple[tuple[str, str], str, str]]:
    """(prompt, right city, wrong city): one question on each city of `n` fresh people (`contrast_items`)."""
    from retain.models.text import text_format
    from retain.world import render as R

    fmt, rng, forms = text_format(tok), random.Random(seed), world.config.question_forms
    return [(fmt.prompt(R.question(name, attr, right, rng, forms=forms).text, context), right, wrong)
            for name, context, asks in contrast_items(world, n, seed) for attr, right, wrong in asks]  # fmt: skip


def contrast_accuracy(model, tok, questions: list[tuple[tuple[str, str], str, str]]) -> float:
    """Share of `contrast_questions` answered with the right city (0.5 is chance)."""
    from retain.eval.qa import answer

    said = answer(model, tok, [prompt for prompt, _, _ in questions])
    return sum(s == right for s, (_, right, _) in zip(said, questions)) / len(questions)


@torch.no_grad()
def measure(run: str) -> dict:
    """The contrast accuracy, the relation probe per layer and the answer position's attention per layer."""
    from retain.eval.qa import encode
    from retain.models.build import load_model_and_tokenizer
    from retain.world.io import load_world

    model, tok = load_model_and_tokenizer(f"{run}/model")
    model.eval().set_attn_implementation("eager")  # attention weights out
    world = load_world(f"{run}/world")
    token = lambda ids, word: ids.index(tok(" " + word, add_special_tokens=False)["input_ids"][-1])  # noqa: E731

    questions, attn = contrast_questions(world, tok, N_PEOPLE), {}
    for prompt, right, wrong in questions:
        ids = encode(tok, prompt[0]) + encode(tok, prompt[1], bos=False)  # as `answer` reads it
        out = model(torch.tensor([ids]), output_attentions=True)
        r, w = token(ids, right), token(ids, wrong)
        for layer, a in enumerate(out.attentions):
            attn.setdefault(layer, []).append(a[0, :, -1][:, [r, w]])  # heads x (right, wrong)
    contrast = contrast_accuracy(model, tok, questions)

    states, labels = [], []
    for _, context, asks in contrast_items(world, N_PROBE, seed=2, relation_first=True):
        ids = encode(tok, context)
        hidden = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
        for attr, city, _ in asks:
            i = token(ids, city)
            states.append(torch.stack([h[0, i] for h in hidden[1:]]).float())
            labels.append(float(attr == "birth_city"))
    probe = [probe_accuracy(torch.stack(states)[:, layer], torch.tensor(labels)) for layer in range(len(hidden) - 1)]
    heads = [torch.stack(v).mean(0) for _, v in sorted(attn.items())]  # per layer: heads x (right, wrong)
    best = [h[int(h[:, 0].argmax())].tolist() for h in heads]  # the head looking most at the right city
    return {"contrast": contrast, "probe": probe, "attention": best}


def probe_accuracy(x: torch.Tensor, y: torch.Tensor, train: float = 0.75) -> float:
    """Held-out accuracy of an L2-regularised logistic probe (standardised features, L-BFGS)."""
    n = int(train * len(x))
    mu, sd = x[:n].mean(0), x[:n].std(0) + 1e-6
    a, b = (x[:n] - mu) / sd, (x[n:] - mu) / sd
    w = torch.zeros(x.shape[1], requires_grad=True)
    c = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, c], max_iter=300)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a @ w + c, y[:n]) + 1e-2 * w.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return float(((b @ w + c > 0).float() == y[n:]).float().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="pretraining run directories (each with model/ and world/)")
    ap.add_argument("--section", default="reading_circuit")
    args = ap.parse_args()
    if missing := [r for r in args.runs if not (Path(r, "model").is_dir() and Path(r, "world").is_dir())]:
        raise SystemExit(f"error: {', '.join(missing)}: not a pretraining run (needs model/ and world/)")
    rows = {}
    for run in args.runs:
        rows[run] = m = measure(run)
        print(f"{run}: contrast {m['contrast']:.3f}, probe {m['probe']}, attention {m['attention']}")
    layers = len(next(iter(rows.values()))["probe"])
    head = [f"probe after layer {i + 1}" for i in range(layers)] + [f"attention layer {i + 1}" for i in range(layers)]
    lines = ["| base | contrast | " + " | ".join(head) + " |", "| --- |" + " ---: |" * (1 + 2 * layers)]
    for run, m in rows.items():
        cells = [f"{p:.2f}" for p in m["probe"]] + [f"{r:.2f} / {w:.2f}" for r, w in m["attention"]]
        lines.append(f"| `{run}` | {m['contrast']:.3f} | " + " | ".join(cells) + " |")
    body = (
        f"Fresh people born in one city and living in another, one question on each city ({2 * N_PEOPLE} "
        "questions per base). *contrast*: share answered right (0.5 is chance). *probe after layer l*: a "
        "logistic probe's held-out accuracy at telling birth city from home city by the city token's hidden "
        f"state ({2 * N_PROBE} cities, relation-first templates). *attention layer l*: at the answer position, "
        "the head of layer l that looks most at the right city on average: its mean attention on the right city "
        "/ on the wrong one.\n\n" + "\n".join(lines)
    )
    write_section(args.section, "Where a base looks when it reads one of two cities", body)


if __name__ == "__main__":
    main()
