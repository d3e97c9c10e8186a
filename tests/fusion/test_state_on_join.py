"""State on join (issue 17, item 5): a subscriber that joins `perceive/events` late gets the
events open at that moment first, marked `meta.snapshot`, so it never sees an `end` whose
`start` it missed without knowing the event; the graph's own consumers never see them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fusion.conftest import demo_graph
from sensorfuse.client import Subscriber
from sensorfuse.replay import sample
from sfhelpers import GraphRun, free_port, read_jsonl, wait_for

pytestmark = pytest.mark.timeout(150)


def test_a_late_subscriber_gets_the_open_events_first(model_cache: Path, tmp_path: Path) -> None:
    session = tmp_path / "s.mcap"
    sample.generate(session, seed=3, duration_s=10.0)
    ep = f"tcp://127.0.0.1:{free_port()}"
    graph = demo_graph(session, tmp_path, model_cache, rate=1.0)
    graph["nodes"]["perceive"]["expose"] = {"perceive/events": ep}
    run = GraphRun(graph, tmp_path)
    try:
        def open_now() -> set[str]:
            rows = [r["record"] for r in read_jsonl(tmp_path / "events.jsonl")]
            started = {r["event_id"] for r in rows if r["phase"] == "start"}
            return started - {r["event_id"] for r in rows if r["phase"] == "end"}

        wait_for(open_now, 60, "an open event")
        with Subscriber("perceive/events", endpoint=ep, timeout=30) as sub:
            known: set[str] = set()
            snapshots = []
            orphan_ends = []
            for msg in sub:
                if msg.end:
                    break
                rec = msg.record
                if msg.snapshot:
                    snapshots.append(rec)
                elif rec["phase"] == "end" and rec["event_id"] not in known:
                    orphan_ends.append(rec["event_id"])
                known.add(rec["event_id"])
        assert run.wait_exit(60) == 0, run.stderr()
        assert snapshots, "no snapshot of the open events reached the late subscriber"
        assert all(r["phase"] in ("start", "update") for r in snapshots), snapshots
        assert not orphan_ends, f"ends of events the late subscriber was never told about: {orphan_ends}"
        # the graph's own sink saw every event once, live, and no snapshot
        rows = read_jsonl(tmp_path / "events.jsonl")
        assert not any(r.get("meta", {}).get("snapshot") for r in rows)
        ids = [(r["record"]["event_id"], r["record"]["phase"]) for r in rows if r["record"]["phase"] != "update"]
        assert len(ids) == len(set(ids)), "the sink saw an event phase twice"
    finally:
        run.cleanup()
