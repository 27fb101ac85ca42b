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


def test_two_hop_session_files_put_the_second_hop_in_an_earlier_session_or_in_the_world(tmp_path):
    from benchmarks.two_hop_sessions import session_file
    from retain.world.io import load_user_sessions
    from retain.world.world import WorldConfig, build_world

    world = build_world(WorldConfig(n_known=40, n_eval=10, n_sessions=2))
    sessions = load_user_sessions(session_file(world, 8, 0, tmp_path / "s.jsonl"))
    assert len(sessions) == 8
    for i, s in enumerate(sessions):
        (hop,) = [q for q in s.questions if q.kind.startswith("two_hop")]
        mentor = next(q.answer for q in s.questions if "mentor" in q.text and q.kind == "recall")
        assert hop.kind == ("two_hop_sessions" if i % 2 else "two_hop")
        if i % 2:  # the mentor was introduced earlier, and that session states the answer
            assert any(mentor in e.transcript and hop.answer in e.transcript for e in sessions[:i])
            assert mentor not in world.entities
        else:
            assert world.entities[mentor].attrs["birth_city"] == hop.answer


def test_the_reading_probe_separates_what_is_separable_and_nothing_else():
    import torch

    from benchmarks.reading_circuit import probe_accuracy

    g = torch.Generator().manual_seed(0)
    x = torch.randn(800, 16, generator=g)
    y = (x[:, 3] > 0).float()
    assert probe_accuracy(x, y) > 0.95
    assert abs(probe_accuracy(x, (torch.rand(800, generator=g) > 0.5).float()) - 0.5) < 0.1


def test_contrast_items_state_two_different_cities_and_ask_each():
    from benchmarks.reading_circuit import contrast_items
    from retain.world.world import WorldConfig, build_world

    world = build_world(WorldConfig(n_known=20, n_eval=5, n_sessions=1))
    items = contrast_items(world, 30, seed=0, relation_first=True)
    assert len(items) == 30 and not {name for name, _, _ in items} & set(world.entities)  # fresh people only
    for name, context, asks in items:
        (a1, born, home), (a2, home2, born2) = asks
        assert (a1, a2) == ("birth_city", "home_city") and born != home and (born, home) == (born2, home2)
        assert name in context and born in context and home in context
        for sentence in context.split(". "):  # relation_first: no sentence opens with its city
            assert not sentence.startswith((born, home))
    assert items == contrast_items(world, 30, seed=0, relation_first=True)  # seeded
    opens = [s for _, context, asks in contrast_items(world, 30, seed=0) for s in context.split(". ")
             if s.startswith((asks[0][1], asks[0][2]))]  # fmt: skip
    assert opens  # without relation_first some sentences do open with the city


def test_every_results_section_with_a_command_names_its_commit():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md").read_text()
    sections = re.findall(r"<!-- bench:(\S+) -->(.*?)<!-- /bench:\1 -->", text, re.S)
    assert len(sections) > 50
    unstamped = [name for name, body in sections if "Command: " in body and "\nCommit: " not in body]
    assert not unstamped, f"sections without a Commit line: {unstamped}"


def test_world_seeds_names_each_target_a_world_misses_with_the_sampling_error_of_a_fall():
    from benchmarks.world_seeds import missed

    ref = {"closed_book_acc": 0.97, "open_book_acc": 0.98, "seconds": 500, "heldout_template_acc": 0.5,
           "heldout_template/n": 200, "session_icl_acc": 0.9, "session_icl/n": 90}  # fmt: skip
    assert missed(ref, ref) == ""
    assert missed({**ref, "heldout_template_acc": 0.46, "session_icl_acc": 0.99}, ref) == ""  # within 5 points
    worse = {**ref, "open_book_acc": 0.81, "seconds": 700, "heldout_template_acc": 0.3}
    # SE of the fall: sqrt(0.3 * 0.7 / 200 + 0.5 * 0.5 / 200) = 4.8 points
    assert missed(worse, ref) == "open-book, time, held-out templates -20.0 pt (SE 4.8)"
