"""Typed configs and the CLI's handling of bad input. `pytest tests/test_config.py`"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from retain.cli.main import COMMANDS, _load, build_parser, main
from retain.config import ConfigError, describe, field_docs, from_dict, load_config, read_yaml, to_yaml


@dataclass
class Train:
    lr: float = 1e-3
    """learning rate"""
    steps: int = 10
    """optimizer steps"""
    schedule: Literal["cosine", "constant"] = "cosine"
    """LR schedule"""
    warmup: int | None = None
    """warmup steps, None for none"""


@dataclass
class Root:
    name: str = "x"
    """run name"""
    train: Train = field(default_factory=Train)
    layers: list[int] = field(default_factory=lambda: [1, 2])
    """which layers"""


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: run\ntrain:\n  lr: 3e-4\n  steps: 5\n")
    cfg = load_config(Root, path, ["train.steps=7", "train.warmup=2", "layers=[3,4]"])
    assert cfg.name == "run" and cfg.train.lr == 3e-4 and cfg.train.steps == 7 and cfg.train.warmup == 2
    assert cfg.layers == [3, 4]
    assert load_config(Root, None, ["train.warmup=null"]).train.warmup is None
    # resolved config round-trips through YAML
    path.write_text(to_yaml(cfg))
    assert load_config(Root, path) == cfg


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["train.lrr=1"],
            "unknown config key 'train.lrr'; valid keys under 'train': lr, steps, schedule, warmup; did you mean 'lr'?",
        ),
        (["trian.lr=1"], "did you mean 'train'?"),
        (["train.steps=abc"], "config key 'train.steps': expected an integer, got 'abc'"),
        (["train.steps=1.5"], "expected an integer"),
        (["train.lr=fast"], "expected a number"),
        (["train.schedule=cosin"], "'cosin' is not one of cosine, constant; did you mean 'cosine'?"),
        (["name=3"], "expected a string"),
        (["train=5"], "expected a mapping"),
        (["nokey"], "must look like key.sub=value"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(Root, None, overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(Root, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Root, bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(Root, bad)


def test_override_indexes_lists():
    from retain.continual.loop import ContinualConfig

    cfg = load_config(ContinualConfig, Path(__file__).resolve().parents[1] / "configs" / "smoke" / "continual.yaml",
                      ["media.2.steps=7", "media.1.budget_tokens=99"])  # fmt: skip
    assert cfg.media[2].steps == 7 and cfg.media[1].budget_tokens == 99 and len(cfg.media) == 6


def test_field_docs_and_describe():
    assert field_docs(Train)["lr"] == "learning rate"
    rows = {k: (d, doc) for k, _, d, doc in describe(Root)}
    assert rows["train.lr"] == (1e-3, "learning rate")
    assert rows["layers"] == ([1, 2], "which layers")


def test_bool_is_not_an_int():
    @dataclass
    class C:
        n: int = 1
        flag: bool = False

    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(C, {"n": True})
    assert from_dict(C, {"flag": "yes"}).flag is True


def test_every_command_has_documented_config_fields():
    """Every field of every command's config carries a docstring (it becomes --help text)."""
    for name, cmd in COMMANDS.items():
        for key, _, _, doc in describe(_load(cmd.config)):
            assert doc, f"{name}: config key '{key}' has no docstring"


def test_help_lists_options_with_defaults(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args([name, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "--config" in out and "--set" in out and "with defaults" in out
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["fermi", "--set", "rnak=8"]) == 2
    err = capsys.readouterr().err
    assert err == "error: unknown config key 'rnak'; valid keys: " + err.split("valid keys: ")[1]
    assert "did you mean 'rank'?" in err and err.count("\n") == 1
    assert main(["fermi", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["fermi", "--rank", "-3"]) == 2
    assert "--rank must be positive" in capsys.readouterr().err
    assert main(["fermi", "--kv-dtype", "fp9"]) == 2
    assert "'fp9' is not one of" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["fermi", "--rnak", "8"])
    assert e.value.code == 2 and "did you mean '--rank'?" in capsys.readouterr().err
    # `retain run CONFIG` takes the config as a positional argument too, but not two different ones
    assert main(["run", "configs/continual.yaml", "--config", "configs/smoke/continual.yaml"]) == 2
    assert "two configs given" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert main(["run", "configs/smoke/continual.yaml", "--set", "media.9.kind=lora"]) == 2
    assert "'9' is not an index of the 6 items of 'media'" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")  # fmt: skip
def test_every_shipped_config_loads(path):
    """configs/<dir>/<command>[_variant].yaml, or configs/<command>/<anything>.yaml, is a valid config of that
    command: no stale key survives a rename."""
    data = read_yaml(path)
    command = "run" if "media" in data else path.stem.split("_")[0]  # retain run configs/distill.yaml; rl_budget
    if path.parent.name in COMMANDS and "media" not in data:  # configs/grok/composition.yaml (a run config
        command = path.parent.name  # beside its study, configs/overtrain/write.yaml, stays a run config)
    assert command in COMMANDS, f"{path.name} names no command"
    cls = _load(COMMANDS[command].config)
    cfg = from_dict(cls, data)
    assert from_dict(cls, yaml.safe_load(to_yaml(cfg))) == cfg  # what a run saves is what it resumes with


def test_a_resumed_run_keeps_its_config_and_takes_only_operational_changes(tmp_path):
    from retain.config import resume_config
    from retain.train.pretrain import PretrainConfig

    started = load_config(PretrainConfig, None, ["train.steps=3", "world.seed=2"])
    path = tmp_path
    (tmp_path / "config.yaml").write_text(to_yaml(started))
    assert resume_config(PretrainConfig(), path) == started  # no config given: the run's own
    assert resume_config(started, path) == started  # the same config given again
    moved = resume_config(load_config(PretrainConfig, None, ["train.threads=1", "device=cpu"]), path)
    assert moved.train.threads == 1 and moved.device == "cpu" and moved.train.steps == 3 and moved.world.seed == 2
    with pytest.raises(
        ConfigError, match=r"other values of train.steps \(3 -> 5\).*only threads, train.threads, device"
    ):
        resume_config(load_config(PretrainConfig, None, ["train.steps=5"]), path)


def test_a_scalar_for_a_list_key_is_a_one_element_list_and_files_are_not_directories(tmp_path, capsys):
    assert load_config(Root, None, ["layers=3"]).layers == [3]
    with pytest.raises(ConfigError, match="expected a list"):
        load_config(Root, None, ["layers={a: 1}"])
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["fermi", "--model", "llama-3-70b", "--plot", str(afile)]) == 2
    assert "is a file; give a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["merge", "--inputs", f"{tmp_path / 'empty'},{tmp_path / 'empty'}", "--out", str(tmp_path / "m")]) == 2
    assert "holds neither a PEFT adapter" in capsys.readouterr().err and not (tmp_path / "m").exists()
    assert main(["merge", "--inputs", f"{tmp_path / 'empty'},{tmp_path / 'empty'}", "--out", str(afile)]) == 2
    assert "is a file" in capsys.readouterr().err and afile.read_text() == "x"


def test_help_and_the_world_and_fermi_import_no_torch():
    import subprocess
    import sys

    code = ("import sys\nimport retain.world, retain.world.world, retain.fermi.estimate\n"
            "from retain.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "try:\n    main(['fermi', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_key_a_medium_ignores_is_refused_naming_the_kinds_it_applies_to(capsys):
    from retain.memory.base import MediumConfig

    with pytest.raises(ValueError, match=r"media 'ctx': rank set on a context medium, which ignores it "
                                         r"\(rank applies to lora\); remove it"):  # fmt: skip
        MediumConfig(kind="context", name="ctx", rank=4)
    MediumConfig(kind="context", rank=8)  # a default value is no choice
    MediumConfig(kind="kv_prefix", prompt_tokens=4, route="entity", objective="distill")
    assert main(["run", "configs/smoke/continual.yaml", "--set", "media.0.steps=5", "--out", "unused"]) == 2
    assert "steps set on a none medium" in capsys.readouterr().err


def test_a_distill_key_on_an_sft_medium_is_refused():
    from retain.memory.base import MediumConfig

    with pytest.raises(
        ValueError, match=r"media 'w': queries, n_queries set on an sft medium; only objective: distill"
    ):
        MediumConfig(kind="lora", name="w", queries="oracle", n_queries=8)
    MediumConfig(kind="lora", objective="distill", queries="oracle", n_queries=8)
