"""`sensorfuse log view` on what the demo graph wrote: the session's inputs and the demo's
perception recording in one Rerun recording, read back with the Rerun SDK (docs/view.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import rerun as rr
from sfhelpers import REPO, SENSORFUSE, rrd_rows

pytestmark = pytest.mark.timeout(240)


def test_log_view_shows_the_demo_session_with_its_perception(demo_run: dict[str, Any], demo_session: Path,
                                                              tmp_path: Path) -> None:
    rrd = tmp_path / "demo.rrd"
    done = subprocess.run([*SENSORFUSE, "log", "view", str(demo_session), str(demo_run["out"] / "perception.mcap"),
                           "--save", str(rrd)], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    rows = rrd_rows(rrd)
    frames = sorted(f["t_ns"] for f in demo_run["frames"])
    assert [t for t, _ in rows["/camera/image"]] == frames
    # a detections record per frame, at the frame's capture time, with the faces perceive found
    faces = rows["/camera/faces"]
    assert [t for t, _ in faces] == frames and any(row["Boxes2D:half_sizes"] for _, row in faces)
    labels = [label for _, row in faces for label in row["Boxes2D:labels"] or []]
    assert labels and all(label.startswith("#") for label in labels)
    assert len(rows["/audio/waveform"]) >= 200 * 19 and len(rows["/audio/vad"]) == len(frames)
    perceived = [e for e in demo_run["events"] if e["stream"] == "perceive/events"]  # not speech/events
    assert len(rows["/events/log"]) == len(perceived)
    # every tick's scores as the event rules saw them, with the rules' thresholds as lines
    ticks = [t for t, _ in rows["/scores/speech.offscreen/offscreen"]]
    assert ticks == frames  # a point per tick (the demo ticks on every frame)
    for rule in ("face", "speaker.active", "speech.offscreen", "query.match", "sound"):
        assert [t for t, _ in rows[f"/scores/{rule}/threshold/on"]] == frames
    assert len(rows["/scores/sound/alarm"]) == len(frames)
    speaking = [p for p in rows if p.startswith("/scores/speaker.active/track\\:")]  # entity path escapes `:`
    assert speaking and sum(len(rows[p]) for p in speaking) == sum(
        len(row["Boxes2D:half_sizes"] or []) for _, row in faces)  # a score per face seen
    queries = {e["record"]["subject"]["query"] for e in perceived if e["record"]["type"] == "query.match"}
    assert queries and all(f"/scores/query.match/{rr.escape_entity_path_part(q)}" in rows for q in queries)
