"""The perceive node's text queries: scored by the label-space matcher, alive until
`query_ttl_ms` or a cancel line (docs/queries.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sensorfuse.engine.node import Out
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.nodes.perceive import PerceiveNode
from sfhelpers import ticks_with_lines as with_lines

pytestmark = pytest.mark.timeout(180)
STREAMS = {"ticks": "align/ticks", "frame": "cam0/frame", "detections": "perceive/detections",
           "speech": "perceive/speech", "events": "perceive/events", "scores": "perceive/scores"}


def run(model_cache: Path, ticks: list[dict[str, Any]], **params: Any) -> dict[int, dict[str, Any]]:
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache), "classes": [], **params}, name="perceive",
                    streams=STREAMS)
    msgs = []
    for record in ticks:
        msgs += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    msgs += h.finish()
    h.close()
    return {m.record["tick"]: m.record for m in msgs if m.header.stream == "perceive/scores"}


def test_queries_live_until_cancelled(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    lines = {10: (10, "is anyone talking?"), 20: (11, "is there a giraffe?"), 40: (12, "cancel is anyone talking")}
    scores = run(model_cache, with_lines(short_ticks, lines, 90), query_ttl_ms=0, query_delay_ms=0)
    assert scores[5]["queries"] == {}
    assert scores[25]["queries"] == {"text:10": "is anyone talking?", "text:11": "is there a giraffe?"}
    # the aligner stopped repeating the lines at tick 26; they live on (ttl 0) until cancelled
    assert scores[39]["queries"].keys() == {"text:10", "text:11"}
    assert scores[40]["queries"] == {"text:11": "is there a giraffe?"}, "a cancel line is no query"
    assert scores[89]["queries"] == {"text:11": "is there a giraffe?"}
    assert all(s["scores"]["query.match"].get("text:11", 0.0) == 0.0 for s in scores.values())


def test_queries_live_from_their_delay_to_their_ttl(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    scores = run(model_cache, with_lines(short_ticks, {5: (0, "is anyone talking?")}, 40), query_ttl_ms=1000,
                 query_delay_ms=300)
    t0 = short_ticks[5]["t_ns"]  # the line's capture time
    alive = [i for i, s in scores.items() if s["queries"]]
    assert alive == [i for i, s in scores.items() if t0 + 300_000_000 <= s["t_ns"] < t0 + 1_000_000_000]


def test_a_query_delay_at_or_past_its_ttl_is_refused(model_cache: Path) -> None:
    with pytest.raises(Exception, match="query_delay_ms"):
        PerceiveNode.parse_params({"query_ttl_ms": 500, "query_delay_ms": 500})


def test_a_speech_query_follows_the_vad(model_cache: Path, short_ticks: list[dict[str, Any]]) -> None:
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache), "classes": [], "query_ttl_ms": 0,
                                   "query_delay_ms": 0}, name="perceive", streams=STREAMS)
    msgs = []
    for record in with_lines(short_ticks, {0: (0, "can you hear somebody speak")}, len(short_ticks)):
        msgs += h.send("ticks", Out.record("ticks", record, record["t_ns"]))
    h.close()
    speech = {m.record["tick"]: m.record for m in msgs if m.header.stream == "perceive/speech"}
    scores = {m.record["tick"]: m.record["scores"]["query.match"]["text:0"] for m in msgs
              if m.header.stream == "perceive/scores"}
    assert any(s["in_speech"] for s in speech.values()), "the session has speech"
    for tick, score in scores.items():
        assert score == (1.0 if speech[tick]["in_speech"] else pytest.approx(speech[tick]["probability"], abs=1e-4))
