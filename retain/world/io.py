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
    import random

    from retain.world.render import bio, oracle_notes

    rng = random.Random(0)
    words = [vocab.FIRST_NAMES, vocab.LAST_NAMES, vocab.CITIES, vocab.UNIVERSITIES, vocab.EMPLOYERS,
             vocab.FIELDS, vocab.MONTHS, vocab.DAYS, vocab.YEARS]  # fmt: skip
    corpus = [" ".join(w) for w in words]
    asked = T.phrasings(world.config.question_forms)  # the world's own forms: a 4-form world tokenizes as before
    for group in (T.BIO, asked.question, asked.two_hop, T.UPDATE):
        corpus += [t for ts in group.values() for t in ts]
    corpus += asked.compare + T.INTRO + vocab.CHATTER + vocab.REPLIES
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
        raise RetainError(
            f"{path} is not a world directory (no config.yaml); create one with `retain world --out {path}`"
        )
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


def read_text(path: Path) -> str:
    """The file as UTF-8 text, or a one-line error naming the line of the first byte that is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise RetainError(f"{path} line {line} is not UTF-8 text; save the file as UTF-8") from None


def load_user_sessions(path: str | Path) -> list[Session]:
    """Sessions from a user's file: JSONL (one session per line) or plain text (one session per file, or several
    separated by a line holding only `---`). Schema: docs/world.md. Every problem is a one-line RetainError
    naming the file and line, raised before anything runs."""
    path = Path(path)
    text = _user_file(path, "session file", "write one session per line (docs/world.md)")
    if path.suffix in (".jsonl", ".json"):
        return [_user_session(i, line, row, path) for i, (line, row) in enumerate(_json_lines(path, text))]
    chunks = [c.strip() for c in text.split("\n---\n")]
    return [Session(i, [("", c)], [], [], [], sep="\n") for i, c in enumerate(c for c in chunks if c)]


def load_questions(path: str | Path) -> list[Question]:
    """A JSONL of `{"question", "answer"}` objects (answer: a string or a list of accepted strings; `kind` and
    `topic` allowed), such as the base probe; one-line errors naming the file and line."""
    path = Path(path)
    text = _user_file(path, "question file", "write one {question, answer} object per line")
    out = []
    for i, (line, row) in enumerate(_json_lines(path, text)):
        if not isinstance(row, dict):
            raise RetainError(f"{path} line {line}: each line must be an object with 'question' and 'answer'")
        extra = sorted(k for k in row if k not in ("question", "answer", "kind", "topic"))
        if extra:
            raise RetainError(f"{path} line {line}: unknown keys {extra}; allowed: question, answer, kind, topic")
        q = {k: row[k] for k in ("question", "answer", "kind") if k in row}
        out += _user_session(i, line, {"transcript": "-", "questions": [q]}, path).questions
    return out


def _user_file(path: Path, what: str, hint: str) -> str:
    """The text of a user's file; one-line errors for a missing, non-UTF-8 or empty one."""
    if not path.is_file():
        raise RetainError(f"{what} not found: {path}")
    text = read_text(path)
    if not text.strip():
        raise RetainError(f"{path} is empty; {hint}")
    return text


def _json_lines(path: Path, text: str) -> list[tuple[int, Any]]:
    """(line number, value) of each non-blank line; a file that is one JSON document (a list, or an object
    spread over lines) is told to become JSONL."""
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((i, json.loads(line)))
        except json.JSONDecodeError as e:
            try:
                whole = json.loads(text)
            except json.JSONDecodeError:
                raise RetainError(f"{path} line {i} is not valid JSON: {e.msg}") from None
            what = f"one JSON {'list' if isinstance(whole, list) else type(whole).__name__}"
            raise RetainError(f"{path} is {what}, not JSONL; write one session object per line") from None
    if len(rows) == 1 and isinstance(rows[0][1], list):
        raise RetainError(f"{path} is one JSON list, not JSONL; write one session object per line")
    return rows


def _user_session(i: int, line: int, row: Any, path: Path) -> Session:
    where = f"{path} line {line}"
    if not isinstance(row, dict):
        raise RetainError(f"{where}: each line must be a JSON object with 'turns' or 'transcript'")
    unknown = set(row) - {"id", "turns", "transcript", "questions"}
    if unknown:
        raise RetainError(f"{where}: unknown keys {sorted(unknown)}; allowed: id, turns, transcript, questions")
    if "turns" in row:
        if not isinstance(row["turns"], list):
            raise RetainError(f"{where}: 'turns' must be a list of {{role, text}} objects, got "
                              f"{type(row['turns']).__name__}")  # fmt: skip
        turns = []
        for t in row["turns"]:
            if not isinstance(t, dict) or not isinstance(t.get("text"), str):
                raise RetainError(f"{where}: each turn must be an object with 'role' and 'text' (a string)")
            turns.append((str(t.get("role", "User")), t["text"]))
    elif "transcript" in row:
        if not isinstance(row["transcript"], str):
            raise RetainError(f"{where}: 'transcript' must be a string")
        turns = [("", row["transcript"])]
    else:
        raise RetainError(f"{where}: needs 'turns' (a list of {{role, text}}) or 'transcript' (a string)")
    if not any(text.strip() for _, text in turns):
        raise RetainError(f"{where}: the session has no text")
    qs = row.get("questions", [])
    if not isinstance(qs, list):
        raise RetainError(f"{where}: 'questions' must be a list of {{question, answer}} objects")
    questions = []
    for k, q in enumerate(qs, 1):
        if not isinstance(q, dict) or not isinstance(q.get("question"), str) or not q["question"].strip():
            raise RetainError(f"{where}: question {k} must be an object with 'question' (text) and 'answer'")
        answers = q.get("answer")
        answers = [answers] if isinstance(answers, (str, int, float)) and not isinstance(answers, bool) else answers
        if not isinstance(answers, list) or not answers or not all(
                isinstance(a, (str, int, float)) and str(a).strip() for a in answers):  # fmt: skip
            raise RetainError(f"{where}: question {k} ('{q['question'][:40]}') needs an 'answer': a string, or a "
                              "list of accepted strings")  # fmt: skip
        kind = q.get("kind", "recall")
        if not isinstance(kind, str):
            raise RetainError(f"{where}: question {k}: 'kind' must be a string")
        answers = [str(a) for a in answers]
        questions.append(Question(q["question"], answers[0], kind, str(q.get("entity", "")), "",
                                  aliases=answers[1:]))  # fmt: skip
    return Session(i, turns, [], [], [], questions, sep="\n")


def export_sessions(sessions: list[Session], path: str | Path) -> Path:
    """Write sessions as a user session file (JSONL, docs/world.md): turns on their own lines, and answers with
    the forms the text uses as aliases ("Ravenmoor University" beside "Ravenmoor"), so a model that never saw
    the world reads them as plain text and is graded as free text."""
    rows = []
    for s in sessions:
        qs = []
        for q in s.questions:
            answers = [q.answer, *q.aliases]
            if q.attribute == "university" and f"{q.answer} University" in s.transcript:
                answers.append(f"{q.answer} University")
            qs.append({"question": q.text, "answer": answers if len(answers) > 1 else q.answer, "kind": q.kind})
        rows.append({"id": f"world-{s.index + 1}", "turns": [{"role": r, "text": t} for r, t in s.turns],
                     "questions": qs})  # fmt: skip
    return atomic_write_text(Path(path), _jsonl(rows))
