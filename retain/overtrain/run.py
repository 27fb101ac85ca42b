"""`retain overtrain`: catastrophic overtraining on the world (Springer et al. 2025). The same model is
pretrained at several token budgets (tokens per parameter), each its own run with the schedule annealed to
zero at its last step; each is then probed for its sensitivity to Gaussian weight perturbation shaped like
its initialisation (`retain probe sensitivity`), and one continual-loop write (`write`: LoRA and full
fine-tuning at a fixed lr) is made into it, whose base-knowledge drop and perplexity drift on the known
people's biographies are set against the pretraining tokens. The two-layer linear network of the paper's
theory runs beside it (retain/overtrain/linear.py).

    retain overtrain configs/overtrain/world.yaml --out runs/overtrain
    retain overtrain --out runs/overtrain --resume          # every finished step is read back

Each budget's pretraining, probe and write is a run directory under --out (pretrain-<tpp>, sensitivity-<tpp>,
write-<tpp>), read back when finished and resumed when stopped half-way.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retain.config import load_config, resume_config
from retain.errors import RetainError
from retain.overtrain.linear import LinearConfig, inflection, sweep
from retain.runs.files import atomic_write_json, atomic_write_text
from retain.runs.rundir import RunDir


@dataclass
class OvertrainConfig:
    """The budgets, the probe and the write of a catastrophic-overtraining study."""

    name: str = "overtrain"
    """Run name; the run directory defaults to runs/<name>-<timestamp>/."""
    pretrain: str = "configs/pretrain.yaml"
    """The pretraining config every budget trains (its world, model, mixture and optimiser)."""
    pretrain_set: list[str] = field(default_factory=list)
    """Overrides for every pretraining, as `--set` takes them (e.g. `train.eval_every=100000`)."""
    tokens_per_param: list[float] = field(default_factory=lambda: [1.0, 3.0, 10.0, 30.0])
    """Pretraining budgets in tokens per parameter; each sets train.steps (tokens / (batch_size x seq_len),
    rounded up) and train.min_lr_ratio = 0 (annealed to zero)."""
    gammas: list[float] = field(default_factory=lambda: [0.1, 0.3, 1.0, 3.0])
    """Perturbation scales: eps ~ N(0, gamma^2 Sigma_init)."""
    samples: int = 8
    """Perturbations drawn per gamma."""
    write: str = "configs/overtrain/write.yaml"
    """The continual config written into each pretrained model (its `base` is set to it)."""
    write_set: list[str] = field(default_factory=list)
    """Overrides for every write."""
    linear: LinearConfig = field(default_factory=LinearConfig)
    """The two-layer linear network of the theory."""
    seed: int = 0
    """Seed of the perturbations and of the biographies the probe and the write read."""

    def __post_init__(self) -> None:
        if not self.tokens_per_param or any(t <= 0 for t in self.tokens_per_param):
            raise ValueError(f"tokens_per_param must be positive budgets, got {self.tokens_per_param}")
        if not self.gammas or any(g < 0 for g in self.gammas):
            raise ValueError(f"gammas must be >= 0 and not empty, got {self.gammas}")
        if self.samples < 1:
            raise ValueError(f"samples must be positive, got {self.samples}")


def label(tpp: float) -> str:
    return f"{tpp:g}"


def plan(cfg: OvertrainConfig):
    """The pretraining config of each budget, the write config, and the model's parameter count; every
    check of the input runs here, before a run directory exists."""
    from retain.continual.loop import ContinualConfig
    from retain.models.build import build_model, param_count
    from retain.train.pretrain import PretrainConfig
    from retain.world.io import build_tokenizer
    from retain.world.world import build_world

    for path in (cfg.pretrain, cfg.write):
        if not Path(path).is_file():
            raise RetainError(f"config not found: {path}")
    base = load_config(PretrainConfig, cfg.pretrain, cfg.pretrain_set)
    if base.model.path:
        raise RetainError(f"{cfg.pretrain}: model.path loads a trained model; overtrain pretrains from scratch")
    write = load_config(ContinualConfig, cfg.write, cfg.write_set)
    params = param_count(build_model(base.model, build_tokenizer(build_world(base.world))))
    per_step = base.train.batch_size * base.train.seq_len
    budgets = {}
    for tpp in cfg.tokens_per_param:
        steps = math.ceil(tpp * params / per_step)
        if tpp * params < per_step:
            raise RetainError(f"tokens_per_param {tpp:g} is {tpp * params:,.0f} tokens, less than one batch "
                              f"({per_step:,}); raise it or lower train.batch_size / seq_len")  # fmt: skip
        budgets[tpp] = load_config(PretrainConfig, cfg.pretrain,
                                   [*cfg.pretrain_set, f"train.steps={steps}", "train.min_lr_ratio=0.0"])  # fmt: skip
    return budgets, write, params


def bios_text(pretrain_dir: Path, seed: int) -> str:
    """The known people's biographies, one paragraph each: the base knowledge a write may cost."""
    from retain.probes.run import default_documents
    from retain.world.io import load_world

    return "\n\n".join(default_documents(load_world(pretrain_dir / "world"), seed, sessions=False))


def sensitivity_of(run: Path, cfg: OvertrainConfig, pretrain_dir: Path) -> dict[str, Any]:
    from retain.probes.run import ProbeConfig
    from retain.probes.sensitivity import sensitivity

    if not (run / "probe.json").exists():
        sensitivity(ProbeConfig(action="sensitivity", model=str(pretrain_dir), gammas=cfg.gammas,
                                samples=cfg.samples, seed=cfg.seed, sessions=False), out=str(run))  # fmt: skip
    return json.loads((run / "probe.json").read_text())


def write_into(run: Path, write, pretrain_dir: Path, bios: Path) -> dict[str, Any]:
    from dataclasses import replace

    from retain.continual.loop import continual

    if not (run / "summary.json").exists():
        cfg = replace(write, base=str(pretrain_dir), heldout_text=str(bios))
        continual(cfg, str(run), resume=(run / "config.yaml").exists())
    return json.loads((run / "summary.json").read_text())


def overtrain(cfg: OvertrainConfig, out: str | None = None, resume: bool = False) -> dict[str, Any]:
    """Every budget pretrained, probed and written into, then the linear theory; writes summary.json,
    report.md and the plots."""
    from retain.train.pretrain import pretrain_or_resume

    if resume:
        cfg = resume_config(cfg, out)
    budgets, write, params = plan(cfg)
    run = RunDir.open(cfg.name, out, resume)
    if not resume:
        run.write_config(cfg)
    rows = []
    for i, (tpp, pcfg) in enumerate(budgets.items()):
        tag = label(tpp)
        print(f"budget {i + 1}/{len(budgets)}: {tpp:g} tokens per parameter ({pcfg.train.steps} steps)")
        pre = pretrain_or_resume(pcfg, run / f"pretrain-{tag}")
        bios = run / f"bios-{tag}.txt"
        if not bios.exists():
            atomic_write_text(bios, bios_text(run / f"pretrain-{tag}", cfg.seed))
        probe = sensitivity_of(run / f"sensitivity-{tag}", cfg, run / f"pretrain-{tag}")
        written = write_into(run / f"write-{tag}", write, run / f"pretrain-{tag}", bios)
        rows.append({"tokens_per_param": tpp, "steps": pcfg.train.steps, "tokens": pre["tokens_seen"],
                     "closed_book_acc": pre["closed_book_acc"], "open_book_acc": pre["open_book_acc"],
                     "loss": probe["loss"], "loss_change": dict(zip(map(str, cfg.gammas), probe["mean_change"])),
                     "media": {n: {k: m.get(k) for k in ("kind", "base_acc", "base_acc_drop", "ppl_drift", "acc")}
                               for n, m in written["media"].items() if m["kind"] != "none"}})  # fmt: skip
    linear = sweep(cfg.linear)
    summary = {"params": params, "budgets": rows, "trends": trends(rows, cfg.gammas),
               "linear": {"config": asdict(cfg.linear), "rows": linear,
                          "inflection_t": inflection(linear)}}  # fmt: skip
    atomic_write_json(run / "summary.json", summary)
    from retain.overtrain.report import write_report

    write_report(run, cfg, summary)
    return summary


def ranks(v: list[float]) -> list[float]:
    """Ranks from 0, ties given their mean rank."""
    order = sorted(range(len(v)), key=v.__getitem__)
    out, i = [0.0] * len(v), 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in order[i : j + 1]:
            out[k] = (i + j) / 2
        i = j + 1
    return out


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation; None with fewer than three points or when either side is constant."""
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def trends(rows: list[dict], gammas: list[float]) -> dict[str, Any]:
    """Whether the loss change at each gamma grows monotonically with pretraining tokens, and the rank
    correlation of tokens with each medium's base drop and perplexity drift."""
    tokens = [r["tokens"] for r in rows]
    out: dict[str, Any] = {"monotone": {}, "drop_vs_tokens": {}, "ppl_vs_tokens": {}}
    for g in map(str, (g for g in gammas if g > 0)):  # gamma 0 changes nothing
        ch = [r["loss_change"][g] for r in rows]
        out["monotone"][g] = all(b > a for a, b in zip(ch, ch[1:]))
    for name in rows[0]["media"]:
        out["drop_vs_tokens"][name] = spearman(tokens, [r["media"][name]["base_acc_drop"] for r in rows])
        if all(r["media"][name]["ppl_drift"] is not None for r in rows):
            out["ppl_vs_tokens"][name] = spearman(tokens, [r["media"][name]["ppl_drift"] for r in rows])
    return out


def main(cfg: OvertrainConfig, out: str | None = None, resume: bool = False) -> None:
    """CLI entry point of `retain overtrain`."""
    s = overtrain(cfg, out, resume)
    for r in s["budgets"]:
        change = "  ".join(f"dL(gamma {g}) {v:+.4f}" for g, v in r["loss_change"].items())
        drops = "  ".join(f"{n} base {0.0 - m['base_acc_drop'] * 100:+.1f} pt" for n, m in r["media"].items())
        print(f"{r['tokens_per_param']:g} tok/param ({r['tokens']:,} tokens): {change}  {drops}")
    print(
        f"monotone in tokens: {s['trends']['monotone']}; linear theory inflection at t = {s['linear']['inflection_t']}"
    )
