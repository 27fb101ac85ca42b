"""Write a benchmark's numbers into docs/RESULTS.md, in a section of its own, with command and machine.

Each section sits between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`; re-running a benchmark replaces
its section and leaves the others alone.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import sys
import time
from contextlib import contextmanager
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md"


@contextmanager
def resumable(out: Path | str):
    """A benchmark's run into `out`: Ctrl-C ends it with one line saying the same command resumes, not a
    traceback (finished work is already on disk); a run's own refusal (RetainError) is one line too."""
    from retain.errors import RetainError

    try:
        yield
    except KeyboardInterrupt:
        raise SystemExit(f"\ninterrupted: finished work is saved in {out}; the same command resumes") from None
    except RetainError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def cpu_name() -> str:
    """The CPU's model name, whether it has AMX (bf16 matrix tiles), and its vector ISA with whether bf16
    runs in hardware: the same code and seed train to different models on different CPU paths, and an
    AVX2-only CPU pretrains in fp32 (docs/log.md, 2026-11-26 and 2026-12-01)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    name = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    name = name.group(1).strip() if name else (platform.processor() or platform.machine())
    try:
        import torch

        from retain.train.optim import bf16_is_native

        isa = f"{torch.backends.cpu.get_cpu_capability()}, bf16 {'native' if bf16_is_native('cpu') else 'emulated'}"
    except ImportError:
        isa = "no torch"
    amx = "AMX, " if re.search(r"\bamx_bf16\b", info) else ""
    return f"{name} ({amx}{isa})"


def machine() -> str:
    """One line describing where the numbers were measured, with the versions the numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        import torch

        dev = f"torch {torch.__version__}, threads {torch.get_num_threads()}"
        if torch.cuda.is_available():
            dev += f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        dev = "no torch"
    for lib in ("transformers", "peft"):
        try:
            dev += f", {lib} {version(lib)}"
        except PackageNotFoundError:
            pass
    return f"{platform.system()} {cpu_name()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, {dev}"


def commit() -> str:
    """The git commit the numbers were measured at (`+changes` when the work tree differs from it)."""
    import subprocess

    root = RESULTS.parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def command() -> str:
    """The command line that is running, as a user would type it."""
    argv = sys.argv[:]
    rel = os.path.relpath(argv[0], RESULTS.parents[1]) if argv else ""
    if rel.endswith(".py") and not rel.startswith(".."):
        module = rel.removesuffix(".py").replace(os.sep, ".")
        return shlex.join(["python", "-m", module, *argv[1:]])
    return shlex.join(argv)


def write_section(name: str, title: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section `name` of RESULTS.md with `body`, stamped with command and machine."""
    from retain.runs.files import atomic_write_text

    stamp = f"Command: `{command()}`  \nCommit: {commit()}  \nMachine: {machine()}  \nDate: {time.strftime('%Y-%m-%d')}"
    block = f"<!-- bench:{name} -->\n## {title}\n\n{stamp}\n\n{body.strip()}\n<!-- /bench:{name} -->"
    text = (
        path.read_text()
        if path.exists()
        else "# Results\n\nMeasured numbers, each with the command that produced it.\n"
    )
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)
    print(f"wrote section '{name}' of {path}")


def run_or_resume(cls: type, run, config: str, overrides: list[str], out: Path):
    """Start `run` (a command's library function) with `config` and `overrides` into `out`, or resume the run
    already there with its own config, or read a finished one back. Returns (summary, the run's config)."""
    from retain.config import load_config

    resume = (out / "config.yaml").exists()
    cfg = load_config(cls, config, overrides)
    summary = run(cls() if resume else cfg, str(out), resume=resume)
    return summary, load_config(cls, out / "config.yaml")


def pretrain_or_resume(config: str, overrides: list[str], out: Path) -> dict:
    """`retain pretrain` of `config` with `overrides` into `out` (retain.train.pretrain.pretrain_or_resume: read
    back, resumed or started). Ctrl-C is one line. Returns the run's summary."""
    from retain.config import load_config
    from retain.train.pretrain import PretrainConfig
    from retain.train.pretrain import pretrain_or_resume as run

    with resumable(out):
        return run(load_config(PretrainConfig, config, overrides), out)
