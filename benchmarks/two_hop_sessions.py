"""Two-hop questions on the world's own facts: is the second hop in a biography (pretrained into the base) or
in an earlier session (written into memory like the first)? Issue 31's question on the world, beside the
grokking study's synthetic composition (docs/grok.md).

A session file of fresh people, one per session, each stating all of that person's attributes. Every person's
mentor is a known person of the world (the second hop, the mentor's birth city, is in the base's weights:
kind `two_hop`) or, in every odd session, a person introduced in an earlier session (the second hop is in
that session: kind `two_hop_sessions`). `retain run` writes the sessions in order with the media of the
continual config named by --media; the table gives ACC after the last write per kind of question.

    python -m benchmarks.two_hop_sessions --base runs/base --out runs/two-hop --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from benchmarks.continual import run_config
from benchmarks.results import write_section

MEDIA = ["none", "context", "context-focus", "lora+replay", "lora-distill+replay"]


def session_file(world, n: int, seed: int, path: Path) -> Path:
    """`n` one-person sessions: odd ones take their mentor from an earlier session, even ones from the world."""
    from retain.world import render as R
    from retain.world.examples import fresh_people
    from retain.world.io import export_sessions
    from retain.world.world import Session

    rng = random.Random(seed)
    reserved, people, sessions = set(world.entities), [], []
    for i in range(n):
        p = fresh_people(world, 1, rng, reserved)[0]
        reserved.add(p.name)
        in_session = i % 2 == 1
        mentor = rng.choice(people) if in_session else world.entities[p.attrs["mentor"]]
        p.attrs["mentor"] = mentor.name
        turns, facts = R.session_turns([p], [], 1, rng)
        forms = world.config.question_forms
        hop = R.two_hop_question(p.name, "birth_city", mentor.attrs["birth_city"], rng, forms=forms)
        hop.kind = "two_hop_sessions" if in_session else "two_hop"
        sessions.append(Session(i, turns, [p.name], facts, [], R.entity_questions(p, rng, forms=forms) + [hop]))
        people.append(p)
    return export_sessions(sessions, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/continual.yaml")
    ap.add_argument("--base", default="runs/base")
    ap.add_argument("--out", required=True)
    ap.add_argument("--sessions", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--media", nargs="+", default=MEDIA, help="media of --config to run, by name")
    ap.add_argument("--set", action="append", default=[], help="override a config key")
    ap.add_argument("--section", default="two_hop_sessions")
    args = ap.parse_args()
    import yaml

    from retain.config import read_yaml
    from retain.errors import RetainError
    from retain.world.io import load_world

    try:  # bad input: one line, before any work
        world, cfg = load_world(Path(args.base) / "world"), read_yaml(args.config)
    except RetainError as e:
        raise SystemExit(f"error: {e}") from None
    out = Path(args.out)
    named = {m.get("name", m["kind"]): m for m in cfg["media"]}
    if unknown := set(args.media) - set(named):
        raise SystemExit(f"error: --media {sorted(unknown)} not in {args.config}; it has {sorted(named)}")
    out.mkdir(parents=True, exist_ok=True)
    config = out / "continual.yaml"  # the config's media named by --media, nothing else changed
    config.write_text(yaml.safe_dump({**cfg, "media": [named[m] for m in args.media]}, sort_keys=False))
    hits: dict[str, dict[str, list[float]]] = {}
    for seed in args.seeds:
        run = out / f"seed{seed}"
        run.mkdir(exist_ok=True)
        data = session_file(world, args.sessions, seed, run / "sessions.jsonl")
        run_config(str(config), run / "run", [f"base={args.base}", f"data={data}", "sessions=null", *args.set])
        kinds = [q["kind"] for line in data.read_text().splitlines() for q in json.loads(line)["questions"]]
        for name in args.media:
            record = json.loads((run / "run" / "media" / f"{name}.json").read_text())
            for h, k in zip(record["hits"], kinds, strict=True):
                hits.setdefault(name, {}).setdefault(k, []).append(h)
    kinds = sorted({k for v in hits.values() for k in v})
    counts = {k: len(next(iter(hits.values()))[k]) for k in kinds}
    lines = ["| medium | " + " | ".join(f"{k} ({counts[k]})" for k in kinds) + " |", "| --- |" + " ---: |" * len(kinds)]
    lines += [f"| {m} | " + " | ".join(f"{sum(v[k]) / len(v[k]):.3f}" for k in kinds) + " |" for m, v in hits.items()]
    body = (
        f"`{args.config}` on `{args.base}`, {args.sessions} one-person sessions per seed, seeds "
        f"{' '.join(map(str, args.seeds))}, run into `{out}`. `two_hop`: the mentor is a known person (the second "
        "hop is in the base's weights); `two_hop_sessions`: the mentor came in an earlier session (both hops "
        "written into memory). ACC after the last write, by kind of question (how many in brackets):\n\n"
        + "\n".join(lines)
    )
    write_section(args.section, "Two-hop questions: the second hop in the weights or in an earlier session", body)


if __name__ == "__main__":
    main()
