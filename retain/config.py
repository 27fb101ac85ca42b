"""Typed configs: dataclasses with a docstring under every field, YAML files and dotted overrides.

    cfg = load_config(PretrainConfig, "configs/pretrain.yaml", ["train.lr=3e-4", "model.size=tiny"])

Every key is checked against the dataclass: an unknown key, a value of the wrong type or a missing file
raises `ConfigError` with one line that names the key and the valid choices (with a close match).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from retain.errors import RetainError

T = TypeVar("T")


class ConfigError(RetainError):
    """A config file or override that does not match its dataclass."""


def _suggest(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (litgpt style), keyed by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def type_name(tp: Any) -> str:
    """A short readable name for a type annotation: `float`, `int | None`, `one of a, b`."""
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) if isinstance(a, str) else str(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in get_args(tp))
    if origin in (list, tuple):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting the harmless cases (1e-3 as text, 2 for 2.0)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=key + ".")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as e:
                errors.append(e)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"config key '{key}': expected {type_name(tp)}, got {value!r}")
    if origin is Literal:
        choices = get_args(tp)
        if value in choices and type(value) is type(choices[choices.index(value)]):
            return value
        shown = ", ".join(str(c) for c in choices)
        raise ConfigError(f"config key '{key}': {value!r} is not one of {shown}{_suggest(value, choices)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise ConfigError(f"config key '{key}': expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = _number(value)
        if number is not None and float(number).is_integer():
            return int(number)
        raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
    if tp is float:
        number = _number(value)
        if number is not None:
            return float(number)
        raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"config key '{key}': expected a string, got {value!r} ({type(value).__name__})")
    if origin in (list, tuple):
        if isinstance(value, str):  # a flag such as --plot-ranks 8,32,128
            value = [yaml.safe_load(v) for v in value.split(",") if v.strip()]
        if isinstance(value, (int, float, bool)):  # --set liti=0.5: a one-element list
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        args = [a for a in get_args(tp) if a is not Ellipsis]
        items = [_coerce(v, args[0], f"{key}[{i}]") if args else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        _, vt = get_args(tp) or (Any, Any)
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(f"unsupported config annotation {tp!r} for '{key}'")


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return None
    return None


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a nested mapping, checking every key and value.

    Args:
        cls: the dataclass to build.
        data: keys are field names; nested dataclass fields take nested mappings.
        prefix: dotted path of `cls` inside the root config, used in error messages.

    Raises:
        ConfigError: on an unknown key or a value of the wrong type.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            where = f" under '{prefix.rstrip('.')}'" if prefix else ""
            raise ConfigError(
                f"unknown config key '{prefix}{key}'; valid keys{where}: {', '.join(names)}{_suggest(key, names)}"
            )
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:  # __post_init__ validation names the field itself
        raise ConfigError(f"config '{prefix.rstrip('.') or cls.__name__}': {e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as a plain nested dict (tuples as lists), ready for YAML or JSON."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


OPERATIONAL = ("threads", "train.threads", "device")
"""Keys a resumed run may change: where and on how many threads it computes, not what it computes."""


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as dotted keys: {"train": {"lr": 1}} -> {"train.lr": 1}."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def shown(keys: list[str], was: dict[str, Any], asked: dict[str, Any]) -> str:
    """The first five of `keys` (dotted) as `key (was -> asked)`, and how many more: what a refusal names."""
    more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
    return ", ".join(f"{k} ({was.get(k)!r} -> {asked[k]!r})" for k in keys[:5]) + more


def resume_config(given: T, out: str | Path | None) -> T:
    """The config a resumed run continues with: the run's own (the config.yaml in `out`), plus any operational
    key (`OPERATIONAL`) the given config sets. A given config that asks for anything else the run was not
    started with is refused, the keys listed; a given config equal to the defaults (none given) asks nothing.
    One-line errors when `out` is missing or holds no run."""
    if out is None:
        raise RetainError("--resume needs --out DIR naming the run directory to continue")
    path = Path(out) / "config.yaml"
    if not path.is_file():
        raise RetainError(f"--resume: {out} holds no run to resume (no config.yaml); start it without --resume")
    cls = type(given)
    saved = from_dict(cls, read_yaml(path))
    asked, default, was = flat(to_dict(given)), flat(to_dict(cls())), flat(to_dict(saved))
    changed = [k for k, v in asked.items() if v != default.get(k) and v != was.get(k)]
    refused = [k for k in changed if k not in OPERATIONAL]
    if refused:
        raise ConfigError(f"--resume: {path} was started with other values of {shown(refused, was, asked)}; resume "
                          f"with no config (only {', '.join(OPERATIONAL)} may change), or start a new run in "
                          "another --out")  # fmt: skip
    data = to_dict(saved)
    for k in changed:  # operational keys only
        *parents, leaf = k.split(".")
        node = data
        for p in parents:
            node = node[p]
        node[leaf] = asked[k]
    return from_dict(cls, data)


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text, keys in field order."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping with `yaml.safe_load`; a missing or malformed file is a one-line ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path}{where} is not valid YAML: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one `a.b.c=value` override to a nested dict in place; the value is parsed as YAML. A numeric
    part indexes a list: `media.2.steps=100` sets the third medium's steps."""
    key, sep, raw = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override '{override}' must look like key.sub=value (e.g. train.lr=3e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node: Any = data
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"override '{key}': '{part}' is not an index of the {len(node)} items of "
                                  f"'{'.'.join(parts[:i])}'")  # fmt: skip
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
            continue
        if last:
            node[part] = value
        elif isinstance(node.get(part), (dict, list)):
            node = node[part]
        else:
            node[part] = {}
            node = node[part]


def load_config(cls: type[T], path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> T:
    """Build `cls` from an optional YAML file and dotted overrides (later ones win)."""
    data = read_yaml(path) if path is not None else {}
    for override in overrides:
        apply_override(data, override)
    return from_dict(cls, data)


def describe(cls: type, prefix: str = "", instance: Any = None) -> list[tuple[str, str, Any, str]]:
    """Every leaf key of a config tree as (dotted key, type, default, docstring), for help text. A nested
    config's defaults are those its parent's default factory gives (`instance`), not its own class's."""
    rows = []
    hints = get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            sub = getattr(instance, f.name) if instance is not None else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)  # fmt: skip
            rows += describe(tp, prefix + f.name + ".", sub)
            continue
        if instance is not None:
            default = getattr(instance, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = "(required)"
        rows.append((prefix + f.name, type_name(tp), default, docs.get(f.name, "")))
    return rows
