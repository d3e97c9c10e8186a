"""A cache built by an older sensorfuse is found out before it is used: the demo rebuilds
what it lacks or cannot use, and perceive refuses face models that take one crop at a time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sensorfuse.engine import manifest as mf
from sensorfuse.engine.errors import UsageError
from sensorfuse.nodes import demo
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


def test_the_demo_rebuilds_what_is_missing_or_takes_one_crop(model_cache: Path, tmp_path: Path) -> None:
    assert demo.pack_to_build(model_cache) == []
    cache = mirror(model_cache, tmp_path / "c")
    edit(cache, "face_landmarks", lambda d: d["inputs"][0]["shape"].__setitem__(0, 1))
    (cache / f"silero_vad{mf.MANIFEST_SUFFIX}").unlink()
    (cache / f"nanodet_m_416{mf.MANIFEST_SUFFIX}").write_text("{not json")
    assert demo.pack_to_build(cache) == ["face_landmarks", "silero_vad", "nanodet_m_416"]


def test_perceive_refuses_a_face_model_that_takes_one_crop(model_cache: Path, tmp_path: Path) -> None:
    cache = mirror(model_cache, tmp_path / "c")
    PerceiveNode.check(PerceiveNode.parse_params({"cache": str(cache)}))  # the current pack is fine
    edit(cache, "blazeface_short", lambda d: d["inputs"][0]["shape"].__setitem__(0, 1))
    with pytest.raises(UsageError, match="blazeface_short.*batch of 1.*sensorfuse models build"):
        PerceiveNode.check(PerceiveNode.parse_params({"cache": str(cache)}))
