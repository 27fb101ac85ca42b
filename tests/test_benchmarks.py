"""The seed-spread benchmark's arithmetic (benchmarks/seeds.py): means, spreads and verdicts on hand-made
summaries of two seeds; a continual benchmark refuses a run directory of another config."""

from benchmarks.seeds import seeds_table, spread


def summary(ctx: float, lora: float, drop: float) -> dict:
    media = {"context-focus": {"kind": "context", "acc": ctx, "bwt": 0.0, "base_acc_drop": 0.0,
                               "bytes_ratio_vs_kv": 1.0},
             "d": {"kind": "lora", "acc": lora, "bwt": -0.1, "base_acc_drop": drop,
                   "bytes_ratio_vs_kv": 36.5}}  # fmt: skip
    return {"media": media}


def test_spread_is_mean_sd_and_range():
    assert spread([0.7, 0.9]) == "0.800 +- 0.141 (0.700..0.900)"
    assert spread([0.02, 0.04], 100, ".1f") == "3.0 +- 1.4 (2.0..4.0)"
    assert spread([0.5]) == "0.500 +- 0.000 (0.500..0.500)"


def test_targets_are_judged_on_the_mean_ratio_of_each_seed():
    # seed 0: 0.72 / 0.9 = 0.8; seed 1: 0.9 / 1.0 = 0.9 -> mean 0.85 (the ratio of the means would be 0.853)
    table, verdicts = seeds_table([summary(0.9, 0.72, 0.02), summary(1.0, 0.9, 0.06)])
    assert "| d | 0.810 +- 0.127 (0.720..0.900) | 0.85 +- 0.07 (0.80..0.90) | 36.5 |" in table
    assert "| 4.0 +- 2.8 (2.0..6.0) | 0.720 0.900 |" in table
    loop, distill = verdicts  # one line per target, lora media only
    assert "0.85 x" in loop and loop.endswith(": met")  # 0.8 asked; mean base drop 4 pt <= 5
    assert "0.85 x" in distill and distill.endswith(": not met")  # 0.9 asked
    _, verdicts = seeds_table([summary(0.9, 0.72, 0.02), summary(1.0, 0.9, 0.10)])
    assert verdicts[0].endswith(": not met")  # mean base drop 6 pt


def test_a_run_of_another_config_is_refused_not_re_reported(tmp_path):
    import pytest

    from benchmarks.continual import run_config
    from retain.config import load_config, to_yaml
    from retain.continual.loop import ContinualConfig

    other = load_config(ContinualConfig, "configs/smoke/continual.yaml", ["sessions=1"])
    (tmp_path / "config.yaml").write_text(to_yaml(other))
    (tmp_path / "summary.json").write_text('{"media": {}}')
    with pytest.raises(SystemExit, match="holds a run of another config"):
        run_config("configs/smoke/continual.yaml", tmp_path, [])
    assert run_config("configs/smoke/continual.yaml", tmp_path, ["sessions=1"]) == {"media": {}}  # the same: read back
