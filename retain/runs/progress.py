"""Progress bars that stay quiet when output is not a terminal (CI logs, pipes)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def progress(iterable: Iterable | None = None, quiet: bool = False, **kwargs: Any) -> tqdm:
    """`tqdm` with `disable=None` (off when stderr is not a TTY); `RETAIN_PROGRESS=0/1` forces it; `quiet`
    (a rank other than 0) turns it off."""
    forced = os.environ.get("RETAIN_PROGRESS")
    disable = True if quiet else None if forced is None else forced in ("0", "false", "no")
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=disable, **kwargs)
