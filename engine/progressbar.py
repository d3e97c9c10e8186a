"""Progress bars for the long commands (models build, sample, fusion/sound train and eval,
log import/export), on tqdm.

A bar is drawn on stderr only when stderr is a terminal (tqdm's ``disable=None``): piped
or captured output (CI, tests, `2> log`) carries no bar and no carriage returns, and the
commands' own lines are unchanged. Lines a command prints while a bar is up go through
`say`, so they do not tear the bar.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def bar(iterable: Iterable[T] | None = None, *, total: float | None = None, desc: str, unit: str = "it",
        file: TextIO | None = None) -> tqdm:
    """A bar on `file` (default stderr), drawn only when it is a terminal: iterate over it
    (wrapping `iterable`) or use it as a context manager and `update(n)` it;
    `reach(bar, position)` sets an absolute position."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=file if file is not None else sys.stderr, disable=None,
                dynamic_ncols=True, leave=False)


def reach(progress: tqdm, position: float, total: float | None = None) -> None:
    """Advance `progress` to `position` (never backwards); `total`: learnt on the way."""
    if total is not None and progress.total != total:
        progress.total = total
        progress.refresh()
    if position > progress.n:
        progress.update(position - progress.n)


def say(line: str, *, file: TextIO | None = None) -> None:
    """Print a line without tearing a bar that is being drawn (stdout unless `file`)."""
    out = file if file is not None else sys.stdout
    tqdm.write(line, file=out)
    out.flush()
