"""A run directory is the unit of record: config.yaml, metrics.jsonl, summary.json, report.md, PNGs, ckpt/."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retain.config import to_yaml
from retain.runs.files import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json


class RunDir:
    """Files of one run. Every write is atomic; `metrics.jsonl` is appended one JSON object per line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, name: str, out: str | Path | None = None, root: str | Path = "runs") -> RunDir:
        """`out` if given, else a new `runs/<name>-<YYYYmmdd-HHMMSS>/` (suffixed if that exists)."""
        if out is not None:
            return cls(out)
        base = Path(root) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, n = base, 1
        while path.exists():
            path, n = Path(f"{base}-{n}"), n + 1
        return cls(path)

    @classmethod
    def open(cls, name: str, out: str | Path | None, resume: bool) -> RunDir:
        """A fresh run directory, or with `resume` the run at `out`; one-line errors for resuming what holds no
        run and for starting over a finished or interrupted one (nothing written is overwritten)."""
        from retain.errors import RetainError

        run = cls(out) if resume and out else cls.create(name, out)
        if resume and not (run / "config.yaml").exists():
            raise RetainError(f"--resume: {run.path} holds no run to resume (no config.yaml)")
        if not resume and (run / "config.yaml").exists():
            raise RetainError(f"{run.path} already holds a run; continue it with --resume or choose another --out")
        return run

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def ckpt_dir(self) -> Path:
        return self.path / "ckpt"

    def write_config(self, cfg: Any) -> Path:
        """The resolved config, so the run can be reproduced from this file alone."""
        return atomic_write_text(self.path / "config.yaml", to_yaml(cfg))

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (namespaced keys such as `train/loss`, plus `step`) to metrics.jsonl."""
        record = {"time": round(time.time(), 3), **record}
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def metrics(self) -> list[dict[str, Any]]:
        """All records of metrics.jsonl; a torn last line (killed mid-append) is skipped."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def keep_metrics(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite metrics.jsonl with only the records `keep` accepts, so resumed work is not logged twice."""
        kept = [r for r in self.metrics() if keep(r)]
        atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in kept))

    def truncate_metrics(self, step: int) -> None:
        """Drop records logged after `step`, so a resumed run does not log them twice."""
        self.keep_metrics(lambda r: r.get("step", -1) <= step)

    def write_summary(self, summary: dict[str, Any]) -> Path:
        return atomic_write_json(self.path / "summary.json", summary)

    def summary(self) -> dict[str, Any] | None:
        path = self.path / "summary.json"
        return read_json(path) if path.exists() else None

    def write_report(self, text: str) -> Path:
        return atomic_write_text(self.path / "report.md", text)

    def savefig(self, fig: Any, name: str, dpi: int = 130) -> Path:
        """Save a matplotlib figure as PNG atomically and close it."""
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        return atomic_write_bytes(self.path / name, buf.getvalue())
