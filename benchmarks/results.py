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
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md"


def machine() -> str:
    """One line describing where the numbers were measured."""
    try:
        import torch

        dev = f"torch {torch.__version__}, threads {torch.get_num_threads()}"
        if torch.cuda.is_available():
            dev += f", {torch.cuda.get_device_name(0)}"
    except ImportError:
        dev = "no torch"
    cpu = platform.processor() or platform.machine()
    return f"{platform.system()} {cpu}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, {dev}"


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

    stamp = f"Command: `{command()}`  \nMachine: {machine()}  \nDate: {time.strftime('%Y-%m-%d')}"
    block = f"<!-- bench:{name} -->\n## {title}\n\n{stamp}\n\n{body.strip()}\n<!-- /bench:{name} -->"
    text = path.read_text() if path.exists() else "# Results\n\nMeasured numbers, each with the command that produced it.\n"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)
    print(f"wrote section '{name}' of {path}")
