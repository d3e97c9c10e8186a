"""Every record the demo graph produces matches its shipped JSON Schema, and the
recording carries those schemas (engine/schemas, docs/protocol.md "Record streams")."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from mcap.reader import make_reader

from sensorfuse.engine import schemas
from sfhelpers import REPO, record_errors, recorded_records

pytestmark = pytest.mark.timeout(240)
#: what the demo's recording holds (the demo_run fixture adds the ticks)
RECORDED = {"perceive/detections", "perceive/objects", "perceive/scene", "perceive/speech", "perceive/sound", "perceive/events",
            "perceive/scores", "perceive/transcripts", "speech/events",
            "align/ticks"}


def test_every_recorded_record_matches_its_schema(demo_run: dict[str, Any]) -> None:
    counts: Counter[str] = Counter()
    errors: list[str] = []
    for stream, record in recorded_records(demo_run["out"] / "perception.mcap"):
        counts[stream] += 1
        errors += record_errors(stream, record)[:3]
    assert set(counts) == RECORDED and counts["align/ticks"] == len(demo_run["frames"]), counts
    assert counts["perceive/scores"] == counts["align/ticks"], counts  # one record per tick
    assert errors == []


def test_events_statuses_and_metrics_match_their_schemas(demo_run: dict[str, Any]) -> None:
    assert demo_run["events"] and demo_run["statuses"]
    lines = [*demo_run["events"], *demo_run["statuses"]]
    assert [e for line in lines for e in record_errors(line["stream"], line["record"])] == []
    assert [s["record"]["event"] for s in demo_run["statuses"]] == ["recorder_summary"]
    assert record_errors("sensorfuse/metrics", demo_run["status"]) == []


def test_the_recording_carries_each_record_stream_schema(demo_run: dict[str, Any]) -> None:
    with open(demo_run["out"] / "perception.mcap", "rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None
    found = {c.topic: c.metadata.get("sensorfuse.record_schema") for c in summary.channels.values()}
    assert set(found) == RECORDED
    for topic, text in found.items():
        name = topic.rsplit("/", 1)[-1]
        assert text == schemas.schema_text(name) and json.loads(text)["$id"].endswith(name), topic


def test_docs_snippet_reads_the_schemas_from_a_recording(demo_run: dict[str, Any], tmp_path: Path) -> None:
    """docs/replay.md's snippet, run as written on the demo's recording."""
    snippet = (REPO / "docs" / "replay.md").read_text().split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "demo-out").mkdir()
    (tmp_path / "demo-out" / "demo-perception.mcap").symlink_to(demo_run["out"] / "perception.mcap")
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "perceive/events perceive/events" in done.stdout
