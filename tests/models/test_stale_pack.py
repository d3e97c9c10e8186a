"""A cache built by an older sensorfuse is found out before it is used: the demo rebuilds
what is stale, and perceive refuses face models that take one crop at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import UsageError
from sensorfuse.models.builder import stale
from sensorfuse.models.pack import NAMES, PACK
from sensorfuse.nodes.perceive import PerceiveNode


def mirror(cache: Path, to: Path) -> Path:
    """A cache of links to `cache`'s files (manifests copied, so a test may edit them)."""
    to.mkdir()
    for f in cache.iterdir():
        if f.suffix == ".json" and f.name.endswith(mf.MANIFEST_SUFFIX):
            (to / f.name).write_text(f.read_text())
        elif f.is_file():
            (to / f.name).symlink_to(f)
    return to


def edit(cache: Path, name: str, change) -> None:
    path = cache / f"{name}{mf.MANIFEST_SUFFIX}"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def test_stale_names_the_missing_and_the_old_recipe(model_cache: Path, tmp_path: Path) -> None:
    assert stale(PACK, model_cache, NAMES) == []
    cache = mirror(model_cache, tmp_path / "c")
    edit(cache, "face_landmarks", lambda d: d.update(build_key="0" * 24))
    (cache / f"silero_vad{mf.MANIFEST_SUFFIX}").unlink()
    assert stale(PACK, cache, ["blazeface_short", "face_landmarks", "silero_vad"]) == ["face_landmarks", "silero_vad"]


def test_perceive_refuses_a_face_model_that_takes_one_crop(model_cache: Path, tmp_path: Path) -> None:
    cache = mirror(model_cache, tmp_path / "c")
    PerceiveNode.check(PerceiveNode.parse_params({"cache": str(cache)}))  # the current pack is fine
    edit(cache, "blazeface_short", lambda d: d["inputs"][0]["shape"].__setitem__(0, 1))
    with pytest.raises(UsageError, match="blazeface_short.*batch of 1.*sensorfuse models build"):
        PerceiveNode.check(PerceiveNode.parse_params({"cache": str(cache)}))
