"""report.md and accuracy.png of `retain dna`: the task's accuracy against soft-prompt length, beside
fine-tuning and the frozen model alone, and the pretraining loss at each warm-up length."""

from __future__ import annotations

from typing import Any

from retain.runs.rundir import RunDir


def write_report(run: RunDir, cfg, s: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = s["arms"]
    prompts = sorted((int(k.split("-")[1]), v["accuracy"]) for k, v in arms.items() if k.startswith("prompt-"))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot([p for p, _ in prompts], [a for _, a in prompts], "o-", label="soft prompt (model frozen)")
    ax.axhline(arms["finetune"]["accuracy"], color="C1", ls="--", label="fine-tuned")
    ax.axhline(arms["frozen"]["accuracy"], color="C2", ls=":", label="frozen, no prompt")
    ax.axhline(0.5, color="grey", lw=0.5)
    ax.set(xscale="log", xlabel="prompt tokens", ylabel="test accuracy", ylim=(0.4, 1.02),
           title=f"Long-range {cfg.genome.task} task ({cfg.genome.task_len} nt)")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    run.savefig(fig, "accuracy.png")
    plt.close(fig)
    rows = "\n".join(f"| {k} | {v['accuracy']:.3f} | {v['trained']:,} | {v['seconds']:.0f} |" for k, v in arms.items())
    stages = "\n".join(f"| {t['length']} | {t['loss']:.4f} | {t['seconds']:.0f} |" for t in s["stages"])
    ratio = ", ".join(f"{k} {v:.2f}x" for k, v in s["prompt_vs_finetune"].items() if v is not None)
    g = cfg.genome
    asked = (f"does a fixed {g.k}-mer stand within the first 32 letters of a {g.task_len}-nt sequence (or nowhere)?"
             if g.task == "motif" else
             f"does the first {g.k}-mer of a {g.task_len}-nt sequence come back as its last?")  # fmt: skip
    rule = (
        f" and the task's rule laid over {g.rule_rate:.0%} of it (windows, then a marker and A or T; the "
        f"pretrained model reads the rule after the marker at {s['rule_read']:.3f})"
        if s.get("rule_read") is not None
        else ""
    )
    r = s.get("reach")
    yes, no, where = (
        "A",
        cfg.labels[1],
        "in front of the sequence" if cfg.prompt_position == "prefix" else "after [SEP]",
    )
    reach = (f" What a prompt has to move: the frozen model's margin of {yes} over {no} after [SEP] is "
             f"{r['margin_motif']:.2f} with the motif and {r['margin_none']:.2f} without; a random prompt of "
             f"{max(cfg.prompt_tokens)} tokens {where} at the letters' embedding scale moves it by "
             f"{r['prompt_moves']:.2f} on average." if r else "")  # fmt: skip
    run.write_report(f"""# HyenaDNA on a synthetic genome: {cfg.name}

A Hyena backbone ({cfg.model.n_layers} layers of {cfg.model.d_model}, order {cfg.model.order}, {s["params"]:,}
parameters, filters of {s["l_max"]} positions) pretrained by next-nucleotide prediction on a {cfg.genome.length:,}-nt
synthetic genome with repeats{rule}, at lengths {", ".join(map(str, cfg.lengths))} ({cfg.stage_steps} steps each, batch
{cfg.batch_size}). The task ({g.task}): {asked} Label nucleotide {yes} or {no} after [SEP], the soft
prompt {where}; {g.n_train} training and
{g.n_test} test examples.

| arm | test accuracy | trained values | seconds |
| --- | ---: | ---: | ---: |
{rows}

Soft prompt against fine-tuning: {ratio}.{reach}

![accuracy against prompt tokens](accuracy.png)

| pretraining length | loss (last 20 steps) | seconds |
| ---: | ---: | ---: |
{stages}
""")
