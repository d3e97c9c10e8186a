"""Writing outputs without destroying what was there.

Every command that writes a file writes it under a temporary name in the same directory
and renames it into place only on success; a failure removes the temporary, so an
existing OUTPUT is never left truncated. An existing OUTPUT is refused unless the caller
passes ``force``. A path that cannot be written (missing directory, no permission, a
filesystem like /proc) is refused up front by actually creating a file next to it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from sensorfuse.engine.errors import UsageError

TMP_PREFIX = ".sf-tmp-"


def check_output(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Refuse an existing `path` (unless `force`) or one whose directory cannot take a new
    file; the check creates and removes a temporary file beside it."""
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{out} is a directory, not a file name")
    if out.exists() and not force:
        raise UsageError(f"{out} exists (use --force to overwrite it)")
    fd, tmp = _temp_beside(out)
    os.close(fd)
    os.unlink(tmp)
    return out


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[IO[bytes]]:
    """A binary file to write `path` through: a temporary beside it, renamed onto `path`
    when the block ends without an exception, removed when it raises."""
    out = check_output(path, force=force)
    fd, tmp = _temp_beside(out)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        _publish(Path(tmp), out, force=force)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """A temporary directory inside `path` (created if missing) to write outputs into.
    On success its files move into `path`; any file that would replace an existing one
    is refused, before anything moves, unless `force`. On failure nothing is left: the
    temporary goes, and so does `path` if this call created it."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out))
    except OSError as exc:
        raise UsageError(f"cannot write into {out}: {exc.strerror or exc}") from None
    try:
        yield tmp
        files = sorted(p.relative_to(tmp) for p in tmp.rglob("*") if not p.is_dir())
        clashes = [rel for rel in files if (out / rel).exists()]
        if clashes and not force:
            raise UsageError(f"{out / clashes[0]} exists ({len(clashes)} file(s) in {out} would be replaced; "
                             "use --force to overwrite them)")
        for rel in files:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / rel, out / rel)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _temp_beside(out: Path) -> tuple[int, str]:
    # Not mkstemp: its 0600 mode would stick to the output; this one gets the umask's.
    tmp = str(out.parent / f"{TMP_PREFIX}{out.name}.{secrets.token_hex(4)}")
    try:
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
    except FileNotFoundError as exc:
        if not out.parent.is_dir():
            raise UsageError(f"cannot write {out}: no such directory {out.parent}") from None
        raise UsageError(f"cannot write {out}: {out.parent} takes no new file ({exc.strerror})") from None
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror or exc}") from None


def _publish(tmp: Path, out: Path, *, force: bool) -> None:
    if force:
        os.replace(tmp, out)
        return
    # A hard link fails if `out` appeared meanwhile: never replace a file nobody said to.
    try:
        os.link(tmp, out)
    except FileExistsError:
        raise UsageError(f"{out} exists (use --force to overwrite it)") from None
    except OSError:  # filesystems without hard links
        os.replace(tmp, out)
        return
    tmp.unlink()
