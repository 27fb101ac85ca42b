"""Run several pretraining configs side by side and tabulate their summaries.

    python -m benchmarks.pretrain_sweep --config configs/pretrain.yaml --grid grid.yaml --out runs/sweep --jobs 2

The grid file holds `runs:`, a list of {name, set: [key=value, ...]}; each entry runs `retain pretrain` with those
overrides into <out>/<name>. Finished runs (with a summary.json) are skipped, so a sweep can be resumed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from retain.config import read_yaml

KEYS = ["closed_book_acc", "closed_book_acc_bio_split", "open_book_acc", "heldout_template_acc", "session_icl_acc",
        "session_stream_acc", "seconds"]  # fmt: skip


def run_one(config: str, entry: dict, out: Path, extra: list[str]) -> dict:
    run_dir = out / entry["name"]
    if (run_dir / "summary.json").exists():
        return json.loads((run_dir / "summary.json").read_text())
    cmd = [sys.executable, "-m", "retain.cli.main", "pretrain", "--config", config, "--out", str(run_dir)]
    for s in list(entry.get("set", [])) + extra:
        cmd += ["--set", s]
    t0 = time.time()
    log = out / f"{entry['name']}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)
    print(f"{entry['name']}: exit {rc} after {time.time() - t0:.0f}s", flush=True)
    return json.loads((run_dir / "summary.json").read_text()) if rc == 0 else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--grid", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], help="override applied to every run")
    args = ap.parse_args()
    grid = read_yaml(args.grid)["runs"]
    out = Path(args.out)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda e: run_one(args.config, e, out, args.set), grid))
    lines = ["| run | overrides | " + " | ".join(KEYS) + " |", "| --- | --- |" + " ---: |" * len(KEYS)]
    for entry, s in zip(grid, results):
        cells = [f"{s[k]:.3f}" if isinstance(s.get(k), float) else str(s.get(k, "-")) for k in KEYS]
        lines.append(f"| {entry['name']} | {' '.join(entry.get('set', []))} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
