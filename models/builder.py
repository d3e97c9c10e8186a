"""Build the model pack into a cache directory, idempotently.

Each pack entry (models/pack.py) has a *build key*: a hash of its recipe version and the
exact source files (package, version, path) it is made from, plus the keys of the models
it derives from. An entry is up to date when its manifest exists, carries that key, and
every file it names has the sha256 it records; then nothing is rebuilt, so a second
`sensorfuse models build` only re-hashes files (about a second for the whole pack).

Files are written into a private work directory and moved into the cache one by one,
manifest last: an interrupted build leaves no manifest, so the next run rebuilds that
entry instead of trusting half-written files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import msgspec
import numpy as np

from sensorfuse.engine import manifest as mf
from sensorfuse.engine import progressbar
from sensorfuse.models.npm import NpmFile
from sensorfuse.models.sources import PackagedFile

Source = PackagedFile | NpmFile  # a file in an installed PyPI package, or in an npm tarball


class Progress:
    """One line per step on stderr, with elapsed time, so a 1-minute build is not silent;
    on a terminal also a bar over the entries (`sensorfuse.engine.progressbar`)."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.index = 0
        self.stream = stream if stream is not None else sys.stderr
        self._started = time.monotonic()
        self.bar = progressbar.bar(total=total, desc="models build", unit="model", file=self.stream)

    def start(self, name: str) -> None:
        """A new entry begins."""
        self.index += 1
        self._started = time.monotonic()
        self._write(f"[{self.index}/{self.total}] {name}")

    def step(self, message: str) -> None:
        """A sub-step of the current entry (export, convert, quantise, reference...)."""
        self._write(f"      {message} (+{time.monotonic() - self._started:.1f}s)")

    def done(self, message: str) -> None:
        """The current entry is finished."""
        self._write(f"      {message} in {time.monotonic() - self._started:.1f}s")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()

    def _write(self, line: str) -> None:
        progressbar.say(line, file=self.stream)


@dataclass
class BuildContext:
    """What a build function gets: where to write, how to report, what exists already."""

    cache: Path
    work: Path
    progress: Progress

    def staged(self, filename: str) -> Path:
        """Path in the work directory for a file that will be moved into the cache."""
        return self.work / filename

    def cached_manifest(self, name: str) -> tuple[Path, mf.Manifest]:
        """An already-built entry this one derives from (int8 from fp32)."""
        path = self.cache / f"{name}{mf.MANIFEST_SUFFIX}"
        return path, mf.load(path)


@dataclass
class Artifact:
    """A built model: its manifest and the staged files to move into the cache."""

    manifest: mf.Manifest
    files: list[Path] = field(default_factory=list)


BuildFn = Callable[[BuildContext], Artifact]


@dataclass(frozen=True)
class PackEntry:
    """One model of the pack: name, how to build it, what it is made from."""

    name: str
    summary: str
    build: BuildFn
    sources: tuple[Source, ...]
    recipe: int = 1
    depends: tuple[str, ...] = ()
    needs_torch: bool = False


@dataclass(frozen=True)
class EntryResult:
    """What happened to one entry in a build run."""

    name: str
    rebuilt: bool
    seconds: float


def build_key(entry: PackEntry, dependency_keys: Sequence[str]) -> str:
    """Hash of everything that determines the entry's files."""
    recipe = {
        "name": entry.name,
        "recipe": entry.recipe,
        "sources": [f"{s.package}=={s.version}:{s.path}" for s in entry.sources],
        "depends": list(dependency_keys),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:24]


def is_up_to_date(cache: Path, name: str, key: str) -> bool:
    """True when the manifest carries `key` and every file it names checks out."""
    path = cache / f"{name}{mf.MANIFEST_SUFFIX}"
    try:
        manifest = mf.load(path)
        if manifest.build_key != key:
            return False
        mf.check_files(path, manifest)
    except mf.ManifestError:
        return False
    return True


def resolve(entries: Sequence[PackEntry], only: Sequence[str] | None) -> list[PackEntry]:
    """Entries to consider, dependencies first. Unknown names raise KeyError."""
    by_name = {e.name: e for e in entries}
    wanted = list(only) if only else [e.name for e in entries]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise KeyError(", ".join(unknown))
    ordered: list[PackEntry] = []

    def add(name: str) -> None:
        entry = by_name[name]
        for dep in entry.depends:
            add(dep)
        if entry not in ordered:
            ordered.append(entry)

    for name in wanted:
        add(name)
    return ordered


def build(entries: Sequence[PackEntry], cache: Path, *, only: Sequence[str] | None = None,
          stream: TextIO | None = None) -> list[EntryResult]:
    """Build what is missing or stale; returns one result per considered entry."""
    selected = resolve(entries, only)
    cache.mkdir(parents=True, exist_ok=True)
    progress = Progress(len(selected), stream)
    keys: dict[str, str] = {}
    results = []
    with _exclusive(cache), tempfile.TemporaryDirectory(prefix=".build-", dir=cache) as work_dir, \
            contextlib.closing(progress):
        for entry in selected:
            key = build_key(entry, [keys[d] for d in entry.depends])
            keys[entry.name] = key
            progress.start(entry.name)
            started = time.monotonic()
            if is_up_to_date(cache, entry.name, key):
                progress.done("up to date (hashes verified)")
                results.append(EntryResult(entry.name, False, time.monotonic() - started))
                continue
            work = Path(work_dir) / entry.name
            work.mkdir()
            artifact = entry.build(BuildContext(cache, work, progress))
            install(cache, entry.name, artifact, key)
            progress.done(f"built {artifact.manifest.file}")
            results.append(EntryResult(entry.name, True, time.monotonic() - started))
    return results


@contextlib.contextmanager
def _exclusive(cache: Path) -> Iterator[None]:
    """One builder per cache at a time (two test runs or two shells sharing a cache would
    otherwise interleave file replacements and leave manifests naming the other's bytes).
    The second waits, then finds everything up to date."""
    with (cache / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def install(cache: Path, name: str, artifact: Artifact, key: str) -> None:
    """Move staged files into the cache, then write the manifest (atomically, last)."""
    manifest_path = cache / f"{name}{mf.MANIFEST_SUFFIX}"
    manifest_path.unlink(missing_ok=True)
    for staged in artifact.files:
        os.replace(staged, cache / staged.name)
    final = msgspec.structs.replace(artifact.manifest, build_key=key)
    mf.check_files(manifest_path, final)
    temporary = manifest_path.with_suffix(".tmp")
    temporary.write_bytes(mf.encode(final))
    os.replace(temporary, manifest_path)


# ---- helpers used by the build functions -----------------------------------------------


def extra_file(path: Path) -> mf.ExtraFile:
    """An ExtraFile record for a staged file (name in the cache + sha256)."""
    return mf.ExtraFile(path.name, mf.sha256_file(path))


def copy_into(ctx: BuildContext, source: Path, filename: str) -> Path:
    """Copy a file into the work directory under the name it will have in the cache."""
    target = ctx.staged(filename)
    shutil.copyfile(source, target)
    return target


def write_reference(ctx: BuildContext, name: str, feeds: dict[str, np.ndarray],
                    expected: dict[str, np.ndarray], *, atol: float, min_cosine: float,
                    origin: str) -> tuple[mf.Reference, Path]:
    """Store reference inputs and expected outputs for `models verify`."""
    path = ctx.staged(f"{name}.reference.npz")
    arrays = {f"input/{k}": v for k, v in feeds.items()}
    arrays.update({f"output/{k}": v for k, v in expected.items()})
    with path.open("wb") as stream:
        np.savez(stream, **arrays)
    reference = mf.Reference(path.name, mf.sha256_file(path), atol, min_cosine, origin)
    return reference, path


def provenance(source: Source) -> mf.Provenance:
    """Provenance record of a packaged source file (hash of the file actually used)."""
    return mf.Provenance(source.package, source.version, source.path,
                         mf.sha256_file(source.locate()))
