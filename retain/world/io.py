"""Saving and loading worlds, and reading user sessions from text or JSONL files.

A world directory holds `config.yaml` (the WorldConfig), `entities.jsonl`, `sessions.jsonl`,
`stats.json` and `tokenizer/` (a Hugging Face fast tokenizer). User session files follow the schema in
`docs/world.md`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from retain.config import ConfigError, from_dict, read_yaml, to_yaml
from retain.errors import RetainError
from retain.runs.files import atomic_write_json, atomic_write_text
from retain.world import templates as T
from retain.world import vocab
from retain.world.world import Entity, Fact, Question, Session, World, WorldConfig


def tokenizer_corpus(world: World) -> list[str]:
    """Text that covers every word the world can produce: all values, all templates (held-out ones too,
    so they tokenize without <unk>; the model never trains on them), chatter, prompts and the world's text."""
    from retain.world.render import bio, oracle_notes
    import random

    rng = random.Random(0)
    words = [vocab.FIRST_NAMES, vocab.LAST_NAMES, vocab.CITIES, vocab.UNIVERSITIES, vocab.EMPLOYERS,
             vocab.FIELDS, vocab.MONTHS, vocab.DAYS, vocab.YEARS]  # fmt: skip
    corpus = [" ".join(w) for w in words]
    for group in (T.BIO, T.QUESTION, T.TWO_HOP, T.UPDATE):
        corpus += [t for ts in group.values() for t in ts]
    corpus += T.COMPARE + T.INTRO + vocab.CHATTER + vocab.REPLIES
    corpus += ["Q: A: User: Assistant: Summary: Session Notes: Transcript:"]
    corpus += [bio(e, rng) for e in world.entities.values()]
    corpus += [s.transcript + " " + oracle_notes(s) for s in world.sessions]
    return corpus


def build_tokenizer(world: World):
    from retain.world.tokenizer import train_tokenizer

    return train_tokenizer(tokenizer_corpus(world), world.config.tokenizer, world.config.bpe_vocab_size)


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def save_world(world: World, out: str | Path, tokenizer: Any | None = None) -> Path:
    """Write the world (and its tokenizer, trained here unless given) into directory `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", to_yaml(world.config))
    atomic_write_text(out / "entities.jsonl", _jsonl([asdict(e) for e in world.entities.values()]))
    atomic_write_text(out / "sessions.jsonl", _jsonl([asdict(s) for s in world.sessions]))
    atomic_write_json(out / "stats.json", world.stats())
    (tokenizer or build_tokenizer(world)).save_pretrained(str(out / "tokenizer"))
    return out


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise RetainError(f"file not found: {path}")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise RetainError(f"{path} line {i} is not valid JSON: {e.msg}") from None
    return rows


def load_world(path: str | Path) -> World:
    """Read a world directory written by `save_world` (or `retain world --out`)."""
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise RetainError(f"{path} is not a world directory (no config.yaml); create one with `retain world --out {path}`")
    try:
        cfg = from_dict(WorldConfig, read_yaml(path / "config.yaml"))
    except ConfigError as e:
        raise RetainError(f"{path / 'config.yaml'}: {e}") from None
    entities = {r["name"]: Entity(**r) for r in _read_jsonl(path / "entities.jsonl")}
    sessions = []
    for r in _read_jsonl(path / "sessions.jsonl"):
        sessions.append(Session(
            index=r["index"], turns=[tuple(t) for t in r["turns"]], new_entities=r["new_entities"],
            facts=[Fact(**f) for f in r["facts"]], updates=[Fact(**f) for f in r["updates"]],
            questions=[Question(**q) for q in r["questions"]],
        ))  # fmt: skip
    return World(cfg, entities, sessions)


def load_user_sessions(path: str | Path) -> list[Session]:
    """Sessions from a user's file: JSONL (one session per line) or plain text (one session per file,
    or several separated by a line holding only `---`). Schema: docs/world.md."""
    path = Path(path)
    if not path.is_file():
        raise RetainError(f"session file not found: {path}")
    if path.suffix == ".jsonl":
        return [_user_session(i, row, path) for i, row in enumerate(_read_jsonl(path))]
    chunks = [c.strip() for c in path.read_text().split("\n---\n")]
    sessions = [Session(i, [("User", c)], [], [], []) for i, c in enumerate(chunks) if c]
    if not sessions:
        raise RetainError(f"{path} holds no session text")
    return sessions


def _user_session(i: int, row: dict[str, Any], path: Path) -> Session:
    where = f"{path} session {i + 1}"
    if not isinstance(row, dict):
        raise RetainError(f"{where}: each line must be a JSON object with 'turns' or 'transcript'")
    unknown = set(row) - {"id", "turns", "transcript", "questions"}
    if unknown:
        raise RetainError(f"{where}: unknown keys {sorted(unknown)}; allowed: id, turns, transcript, questions")
    if "turns" in row:
        turns = []
        for t in row["turns"]:
            if not isinstance(t, dict) or "text" not in t:
                raise RetainError(f"{where}: each turn must be an object with 'role' and 'text'")
            turns.append((str(t.get("role", "User")), str(t["text"])))
    elif "transcript" in row:
        turns = [("User", str(row["transcript"]))]
    else:
        raise RetainError(f"{where}: needs 'turns' (a list of {{role, text}}) or 'transcript' (a string)")
    if not any(text.strip() for _, text in turns):
        raise RetainError(f"{where}: the session has no text")
    questions = []
    for q in row.get("questions", []):
        if not isinstance(q, dict) or "question" not in q or "answer" not in q:
            raise RetainError(f"{where}: each question must be an object with 'question' and 'answer'")
        questions.append(Question(q["question"], str(q["answer"]), q.get("kind", "recall"), q.get("entity", ""), ""))
    return Session(i, turns, [], [], [], questions)
