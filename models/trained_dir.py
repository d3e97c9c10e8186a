"""Where `sensorfuse fusion train` and `sensorfuse sound train` write what they train.

Default: a user directory, `$XDG_DATA_HOME/sensorfuse/<model>` (`~/.local/share/sensorfuse/
<model>` when XDG_DATA_HOME is unset); `--out DIR` elsewhere. The models shipped inside the
package (models/fusion/data, models/sound/data) are what graphs load by default and are
never written by default. Files a run would replace are refused before any training starts
(`--force` replaces them), so a mistyped command costs nothing and destroys nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from sensorfuse.engine.errors import UsageError

DATA_HOME_ENV = "XDG_DATA_HOME"


def default_out_dir(model: str) -> Path:
    """`$XDG_DATA_HOME/sensorfuse/<model>`, or `~/.local/share/sensorfuse/<model>`."""
    data_home = os.environ.get(DATA_HOME_ENV) or str(Path.home() / ".local" / "share")
    return Path(data_home) / "sensorfuse" / model


def claim_out_dir(out: str | None, model: str, files: Iterable[str], *, force: bool) -> Path:
    """The directory a training run writes `files` into, created; a usage error when it is
    not a directory or already holds one of `files` and `force` is not set."""
    out_dir = Path(out) if out else default_out_dir(model)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out: {out_dir} is not a directory")
    existing = sorted(name for name in files if (out_dir / name).exists())
    if existing and not force:
        raise UsageError(f"{out_dir} already holds {', '.join(existing)} from an earlier training run "
                         "(--force replaces them, --out DIR writes elsewhere)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out: cannot create {out_dir}: {exc.strerror or exc}") from None
    if not os.access(out_dir, os.W_OK):
        raise UsageError(f"--out: {out_dir} is not writable")
    return out_dir
