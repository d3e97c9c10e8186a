"""Runtime perception (sensorfuse.perception): tick decoding, encoders at their rates, features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sensorfuse.perception import Encoders, Perception, label_embeddings, tick_from_record
from sensorfuse.perception.features import FEATURES, HIST
from sensorfuse.perception.ticks import BadTick

pytestmark = pytest.mark.timeout(120)


def record(**members: Any) -> dict[str, Any]:
    return {"tick": 0, "t_ns": 10, "streams": {"frame": "cam0/frame", "audio": "mic0/audio16k", "text": "text/in"},
            "status": {"frame": "ok"}, "members": members}


def test_tick_decoding_and_provenance() -> None:
    frame = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    audio = np.arange(8, dtype=np.float32).reshape(4, 2)
    tick = tick_from_record(record(
        frame={"seq": 4, "t_ns": 9, "dtype": "uint8", "shape": [2, 3, 3], "layout": "HWC/bgr8",
               "data": frame.tobytes()},
        audio={"sample0": 100, "n": 4, "rate": 16000, "channels": 2, "data": audio.tobytes(), "seqs": [7, 8],
               "t_end_ns": 10},
        text={"seq": 2, "t_ns": 5, "text": "is there a cat?"}))
    assert np.array_equal(tick.frame, frame) and tick.frame_layout == "HWC/bgr8"
    assert np.allclose(tick.audio, audio.mean(axis=1)) and tick.audio_sample0 == 100
    assert tick.text == "is there a cat?"
    assert [(r.stream, r.seq) for r in tick.refs] == [("cam0/frame", 4), ("mic0/audio16k", 8), ("text/in", 2)]
    assert tick.status == {"vision": "ok", "audio": "absent", "text": "absent"}


def test_the_query_is_the_newer_of_the_typed_and_the_said_line() -> None:
    """Say it or type it: a spoken line (the transcribe node's text, port `said`) is a query
    like a typed one; whichever came later is the one asked."""
    typed = {"seq": 2, "t_ns": 5, "text": "is there a cat?"}
    said = {"seq": 0, "t_ns": 7, "text": "Is anyone speaking?"}
    rec = record(text=typed, said=said)
    rec["streams"]["said"] = "speech/text"
    rec["status"].update(text="ok", said="ok")
    tick = tick_from_record(rec)
    assert tick.text == "Is anyone speaking?" and (tick.text_ref.stream, tick.text_ref.seq) == ("speech/text", 0)
    assert tick.status["text"] == "ok"
    assert tick_from_record(record(text=typed, said={**said, "t_ns": 5})).text == "is there a cat?"  # tie: typed
    assert tick_from_record(record(said=said)).text == "Is anyone speaking?"
    assert tick_from_record(record(text=typed)).text == "is there a cat?"
    with pytest.raises(BadTick):
        tick_from_record(record(text=typed, said={"seq": 0, "text": "no time"}))


@pytest.mark.parametrize("members", [
    {"frame": {"seq": 1, "t_ns": 1, "dtype": "float32", "shape": [2, 2, 3], "data": b""}},
    {"frame": {"seq": 1, "t_ns": 1, "dtype": "uint8", "shape": [2, 2, 3], "data": b"\x00" * 5}},
    {"audio": {"sample0": 0, "n": 3, "rate": 16000, "channels": 1, "data": b"\x00" * 8}},
])
def test_malformed_members_raise_bad_tick(members: dict[str, Any]) -> None:
    with pytest.raises(BadTick):
        tick_from_record(record(**members))
    with pytest.raises(BadTick):
        tick_from_record({"members": {}})


def test_perception_over_a_held_out_session(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    encoders = Encoders(model_cache)
    labels = label_embeddings(encoders)
    assert labels.shape == (1000, 384)
    assert np.allclose(label_embeddings(encoders), labels)  # second call: from the cache file
    perception = Perception(encoders, labels, scene_period_ns=500_000_000)
    feats = [perception.process(tick_from_record(r)) for r in short_ticks]
    for f in feats:
        assert {k: v.shape for k, v in f.inputs.items()} == FEATURES
        assert all(np.isfinite(v).all() for v in f.inputs.values())
    assert perception.frames == len(short_ticks)
    # the scene encoder runs at its own, lower rate; its text-space vector is unit length
    fresh = [f for f in feats if f.scene_fresh]
    assert 0 < len(fresh) <= len(feats) / 5
    assert np.linalg.norm(fresh[0].inputs["scene"]) == pytest.approx(1.0, abs=1e-4)
    # VAD sees every audio sample exactly once: 32 ms chunks ≈ session length
    duration_s = (feats[-1].t_ns - feats[0].t_ns) / 1e9
    assert abs(perception.audio_blocks * 0.032 - duration_s) < 1.0
    assert any(f.in_speech for f in feats)
    # every text line is embedded once, then cached
    texts = {f.text for f in feats if f.text}
    assert texts and set(perception._text_cache) == texts
    with_faces = [f for f in feats if f.slot_ids]
    assert with_faces
    hist = with_faces[-1].inputs["faces"][0, 0, :HIST]
    assert np.isfinite(hist).all()
