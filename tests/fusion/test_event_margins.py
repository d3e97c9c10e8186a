"""How far scores can move before the demo's events change.

The demo session runs through the perceive node in-process (the node's own code, no
sockets); every tick's observations (the scores each event tracker gets) are recorded.
The event logic is a pure function of them, so it can be replayed with perturbed scores:
per-tick random and uniform shifts of up to ±`EVENT_MARGIN` must give exactly the same
events (before the demo's last second, as the golden test). Larger moves change some
events by design of any threshold logic; docs/fusion.md ("Scores across machines") lists
which, at which size, and what the measured cross-machine drift is.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sensorfuse.engine.events import EventTracker, Observation
from sensorfuse.engine.node import Out
from sensorfuse.engine.testing import NodeHarness
from sensorfuse.models.fusion import dataset
from sensorfuse.nodes import demo
from sensorfuse.nodes.perceive import PerceiveNode
from sensorfuse.replay.compare import EVENT_MARGIN

pytestmark = pytest.mark.timeout(180)
STREAMS = {"ticks": "align/ticks", "frame": "cam0/frame", "detections": "perceive/detections",
           "scene": "perceive/scene", "speech": "perceive/speech", "sound": "perceive/sound",
           "events": "perceive/events"}
Recorded = dict[str, list[tuple[int, dict[str, Observation]]]]
Perturb = Callable[[str, str, float], float]


@pytest.fixture(scope="module")
def recorded(demo_session: Path, model_cache: Path) -> tuple[Recorded, dict[str, Any], list[tuple]]:
    """(observations per tracker per tick, the trackers' rules, the node's own events)."""
    h = NodeHarness(PerceiveNode, {"cache": str(model_cache)}, name="perceive", streams=STREAMS)
    rec: Recorded = {}
    for name, tracker in h.node.trackers.items():
        rec[name] = []

        def step(t_ns: int, obs: dict[str, Observation], _step=tracker.step, _log=rec[name]) -> Any:
            _log.append((t_ns, dict(obs)))
            return _step(t_ns, obs)

        tracker.step = step  # type: ignore[method-assign]
    published = []
    for port, item in dataset.aligned_inputs(demo_session):
        published += h.send(port, item if port == "frame" else Out.record("ticks", item, item["t_ns"]))
    published += h.finish()
    h.close()
    rules = {name: tracker.rule for name, tracker in h.node.trackers.items()}
    own = [_key(m.record) for m in published if m.header.stream == "perceive/events"]
    return rec, rules, own


def _key(rec: dict[str, Any]) -> tuple:
    return rec["type"], rec["phase"], rec["key"], rec["t_ns"], rec["start_ns"], rec.get("end_ns"), rec["event_id"]


def replay(rec: Recorded, rules: dict[str, Any], perturb: Perturb | None = None) -> list[tuple]:
    """The event logic again over recorded observations, scores optionally perturbed."""
    events: list[tuple] = []
    for name, ticks in rec.items():
        tracker, last = EventTracker(rules[name]), 0
        for t_ns, obs in ticks:
            if perturb is not None:
                obs = {k: dataclasses.replace(o, score=min(1.0, max(0.0, perturb(name, k, o.score))))
                       for k, o in obs.items()}
            events += [(t_ns, e) for e in tracker.step(t_ns, obs)]
            last = t_ns
        events += [(last, e) for e in tracker.flush(last)]
    ordered = sorted(events, key=lambda te: te[0])  # stable: per tick, tracker order as in the node
    return [_key(PerceiveNode._event_record(e)) for _, e in ordered]


def stable(events: list[tuple]) -> list[tuple]:
    return sorted(e for e in events if e[3] < demo.STABLE_UNTIL_NS)


def test_replayed_observations_give_the_nodes_events(recorded: tuple) -> None:
    rec, rules, own = recorded
    assert own, "the demo session gives events"
    assert sorted(replay(rec, rules)) == sorted(own)


@pytest.mark.parametrize("shift", [+EVENT_MARGIN, -EVENT_MARGIN])
def test_events_survive_a_uniform_shift_within_the_tolerance(recorded: tuple, shift: float) -> None:
    rec, rules, own = recorded
    assert stable(replay(rec, rules, lambda _n, _k, s: s + shift)) == stable(own)


@pytest.mark.parametrize("seed", range(10))
def test_events_survive_per_tick_noise_within_the_tolerance(recorded: tuple, seed: int) -> None:
    rec, rules, own = recorded
    rng = random.Random(seed)
    assert stable(replay(rec, rules, lambda _n, _k, s: s + rng.uniform(-EVENT_MARGIN, EVENT_MARGIN))) == stable(own)


def test_the_replay_sees_a_score_that_crosses_a_threshold(recorded: tuple) -> None:
    """Not vacuous: silencing one event's scores removes it, lifting all scores adds events."""
    rec, rules, own = recorded
    speaker = next(e for e in own if e[0] == "speaker.active")
    gone = replay(rec, rules, lambda n, k, s: 0.0 if (n, k) == ("speaker.active", speaker[2]) else s)
    assert not any(e[0] == "speaker.active" and e[2] == speaker[2] for e in gone)
    assert len(replay(rec, rules, lambda _n, _k, s: s + 0.5)) > len(own)
