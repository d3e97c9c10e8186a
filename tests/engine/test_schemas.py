"""The shipped record schemas: lookup, validity, docs in step, and that they refuse what
they should (the demo's records are checked in tests/fusion/test_demo_records.py)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import jsonschema
import pytest

from sensorfuse.engine import schemas
from sensorfuse.engine.schemas import render
from sfhelpers import REPO, record_errors

EVENT: dict[str, Any] = {
    "type": "face.left", "phase": "end", "event_id": "face.present:1", "key": "track:1", "t_ns": 9,
    "start_ns": 2, "end_ns": 7, "duration_ns": 5, "score": 0.0, "peak_score": 0.86, "modalities": ["vision"],
    "subject": {"track_id": 1, "box": [0.0, 38.2, 117.3, 81.1]},
    "provenance": [{"stream": "cam0/frame", "seq": 3, "t_ns": 9}],
}


def test_streams_select_their_schema_by_last_component() -> None:
    assert schemas.schema_for("perceive/events")["title"] == "perceive/events"
    assert schemas.schema_name("recorder/status") == schemas.schema_name("cam0/status") == "status"
    assert schemas.schema_name("sensorfuse/metrics") == "metrics"
    assert schemas.schema_for("cam0/frame") is None and schemas.schema_for("text/in") is None
    with pytest.raises(KeyError, match="no record schema 'frame'"):
        schemas.schema_text("frame")


@pytest.mark.parametrize("name", schemas.RECORD_SCHEMAS)
def test_each_schema_is_valid_json_schema_2020_12(name: str) -> None:
    schema = schemas.schema_for(f"x/{name}")
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == f"urn:sensorfuse:record:{name}" and schema["description"]


def test_protocol_md_tables_are_in_step_with_the_schema_files() -> None:
    text = (REPO / "docs" / "protocol.md").read_text()
    assert render.stale(text) == [], "run: python -m sensorfuse.engine.schemas.render docs/protocol.md"
    assert render.update(text) == text


def test_a_changed_schema_makes_its_docs_block_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    text = (REPO / "docs" / "protocol.md").read_text()
    original = schemas.schema_for

    def changed(stream: str) -> dict[str, Any] | None:
        schema = original(stream)
        if schema is not None and stream.endswith("speech"):
            schema["properties"]["probability"]["description"] = "something else"
        return schema

    monkeypatch.setattr(render, "schema_for", changed)
    assert render.stale(text) == ["speech"]


def test_a_valid_event_passes() -> None:
    assert record_errors("perceive/events", EVENT) == []


@pytest.mark.parametrize("change, expected", [
    ({"score": 1.5}, "1.5 is greater than the maximum of 1"),
    ({"score": "high"}, "'high' is not of type 'number'"),
    ({"phase": None}, "'phase' is a required property"),
    ({"type": "face.blinked"}, "'face.blinked' is not one of"),
    ({"subject": {"track_id": 1, "box": [1.0, 2.0, 3.0]}}, "is not valid under any of the given schemas"),
    ({"subject": {"track_id": 1, "box": [-16.8, 2.0, 3.0, 4.0]}}, "is not valid under any of the given schemas"),
    ({"end_ns": None}, "'end_ns' is a required property"),
    ({"modalities": ["smell"]}, "'smell' is not one of"),
    ({"surprise": 1}, "Additional properties are not allowed ('surprise' was unexpected)"),
])
def test_a_wrong_event_fails_with_the_reason(change: dict[str, Any], expected: str) -> None:
    event = {k: v for k, v in {**EVENT, **change}.items() if v is not None}
    errors = record_errors("perceive/events", event)
    assert errors and any(expected in e for e in errors), errors


@pytest.mark.parametrize("stream, record, expected", [
    ("perceive/speech", {"tick": 1, "t_ns": 2, "probability": 0.3}, "'in_speech' is a required property"),
    ("perceive/sound", {"tick": 1, "t_ns": 2, "probabilities": {"speech": 1.2, "alarm": 0, "tone": 0, "noise": 0,
                                                                 "background": 0}}, "greater than the maximum"),
    ("perceive/scene", {"tick": 1, "t_ns": 2, "frame_t_ns": 1, "labels": [["cat", 0.5]], "embedding_f32": b"\0" * 6},
     "does not match"),
    ("recorder/status", {"event": "recorder_summary", "files": []}, "is not valid under any of the given schemas"),
    ("align/ticks", {"tick": 0, "t_ns": 0, "mask": {}, "status": {"frame": "fine"}, "late_ns": {},
                     "emitted_by": "watermark", "members": {}, "streams": {}}, "'fine' is not one of"),
])
def test_other_streams_refuse_wrong_records(stream: str, record: dict[str, Any], expected: str) -> None:
    errors = record_errors(stream, record)
    assert any(expected in e for e in errors), errors


def test_bytes_are_checked_as_hex() -> None:
    scene = {"tick": 1, "t_ns": 2, "frame_t_ns": 1, "labels": [["cat", 0.5]], "embedding_f32": b"\x00\x00\x80?"}
    assert schemas.as_json(scene)["embedding_f32"] == "0000803f"
    assert record_errors("perceive/scene", scene) == []


def test_protocol_md_validation_snippet_runs() -> None:
    text = (REPO / "docs" / "protocol.md").read_text()
    snippet = text.split("## Record streams", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
