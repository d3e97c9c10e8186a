"""Event logic (engine.events): hysteresis, minimum duration, hold, cooldown, updates, provenance."""

from __future__ import annotations

import pytest

from sensorfuse.engine.events import EventRule, EventTracker, Observation
from sensorfuse.perception.ticks import Ref

MS = 1_000_000
pytestmark = pytest.mark.timeout(30)


def run(tracker: EventTracker, scores: list[float | None], key: str = "k", period_ms: int = 100) -> list:
    events = []
    for i, score in enumerate(scores):
        obs = {} if score is None else {key: Observation(score, ("audio",), (Ref("mic0/audio16k", i, i * period_ms * MS),))}
        events += tracker.step(i * period_ms * MS, obs)
    return events


def test_start_needs_min_duration_and_is_stamped_at_first_tick() -> None:
    tracker = EventTracker(EventRule("x", on=0.6, off=0.4, min_duration_ns=200 * MS))
    events = run(tracker, [0.1, 0.7, 0.7, 0.1, 0.7, 0.7, 0.7])
    starts = [e for e in events if e.phase == "start"]
    assert len(starts) == 1
    assert starts[0].start_ns == 400 * MS and starts[0].t_ns == 600 * MS
    # provenance: the inputs of the first tick above `on` and of the confirming tick
    assert [r.seq for r in starts[0].refs] == [4, 6]


def test_hysteresis_keeps_event_between_off_and_on() -> None:
    tracker = EventTracker(EventRule("x", on=0.6, off=0.4))
    events = run(tracker, [0.7, 0.5, 0.45, 0.5, 0.3])
    assert [e.phase for e in events] == ["start", "end"]
    assert events[1].end_ns == 400 * MS and events[1].record()["duration_ns"] == 400 * MS


def test_hold_bridges_short_dips() -> None:
    tracker = EventTracker(EventRule("x", on=0.6, off=0.4, hold_ns=250 * MS))
    events = run(tracker, [0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1])
    assert [e.phase for e in events] == ["start", "end"]
    assert events[1].end_ns == 400 * MS and events[1].t_ns == 700 * MS


def test_cooldown_blocks_restart_of_the_same_key() -> None:
    tracker = EventTracker(EventRule("x", on=0.6, off=0.4, cooldown_ns=300 * MS))
    events = run(tracker, [0.9, 0.1, 0.9, 0.9, 0.9, 0.9])
    assert [(e.phase, e.t_ns // MS) for e in events] == [("start", 0), ("end", 100), ("start", 400)]


def test_updates_at_most_every_period_and_ids_are_stable() -> None:
    tracker = EventTracker(EventRule("x", on=0.6, off=0.4, update_every_ns=200 * MS))
    events = run(tracker, [0.9] * 6 + [0.0])
    assert [e.phase for e in events] == ["start", "update", "update", "end"]
    assert len({e.event_id for e in events}) == 1
    assert events[-1].peak_score == pytest.approx(0.9)


def test_unobserved_key_scores_zero_and_flush_ends_active() -> None:
    tracker = EventTracker(EventRule("x", on=0.6, off=0.4))
    events = run(tracker, [0.9, None])
    assert [e.phase for e in events] == ["start", "end"]
    tracker2 = EventTracker(EventRule("x", on=0.6, off=0.4))
    run(tracker2, [0.9, 0.9])
    flushed = tracker2.flush(500 * MS)
    assert [e.phase for e in flushed] == ["end"] and flushed[0].end_ns == 500 * MS
    assert tracker2.flush(600 * MS) == []


def test_keys_are_independent_and_memory_is_bounded() -> None:
    tracker = EventTracker(EventRule("x", on=0.6, off=0.4, cooldown_ns=10**12), max_keys=8)
    for i in range(100):
        tracker.step(i * MS, {f"k{i}": Observation(0.9)})
        tracker.step(i * MS + 1, {})
    assert len(tracker._keys) <= 8


def test_record_schema() -> None:
    tracker = EventTracker(EventRule("speaker.active", on=0.5, off=0.5))
    (event,) = tracker.step(5, {"track:1": Observation(0.8, ("vision", "audio"), (Ref("cam0/frame", 3, 5),),
                                                     {"track_id": 1})})
    rec = event.record()
    assert rec == {"type": "speaker.active", "phase": "start", "event_id": "speaker.active:1", "key": "track:1",
                   "t_ns": 5, "start_ns": 5, "score": 0.8, "peak_score": 0.8, "modalities": ["vision", "audio"],
                   "subject": {"track_id": 1}, "provenance": [{"stream": "cam0/frame", "seq": 3, "t_ns": 5}]}


@pytest.mark.parametrize("kwargs", [dict(on=0.3, off=0.5), dict(on=1.5, off=0.5), dict(on=0.5, off=0.4, hold_ns=-1)])
def test_invalid_rules_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        EventRule("x", **kwargs)


def test_keys_starting_in_one_tick_get_ids_in_observation_order() -> None:
    """Event ids must not depend on string hashing (it changes per process): replay of the
    same session gives the same ids. 20 keys in a set would keep this order by chance ~never."""
    tracker = EventTracker(EventRule("face", on=0.5, off=0.5))
    keys = [f"track:{n}" for n in (17, 3, 11, 5, 19, 2, 13, 7, 23, 1, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67)]
    obs = {k: Observation(1.0, ("vision",), ()) for k in keys}
    ids = {e.key: e.event_id for e in tracker.step(0, obs)}
    assert [ids[k] for k in keys] == [f"face:{i}" for i in range(1, 21)]


def test_a_fast_detectors_onset_dates_the_start_within_backdate() -> None:
    """A slow score (the head's 600 ms audio window) crosses `on` late; the VAD's onset
    (`since_ns`) dates the event, at most `backdate_ns` back, and confirmation still
    needs `min_duration_ns` of the score itself (the same events, earlier start times)."""
    def starts(since_ms: int | None, backdate_ms: int) -> list[tuple[int, int]]:
        tracker = EventTracker(EventRule("x", on=0.6, off=0.4, min_duration_ns=200 * MS, backdate_ns=backdate_ms * MS))
        events = []
        for i, score in enumerate([0.1, 0.1, 0.1, 0.1, 0.7, 0.7, 0.7, 0.7]):
            since = None if since_ms is None else since_ms * MS
            events += tracker.step(i * 100 * MS, {"k": Observation(score, since_ns=since)})
        return [(e.start_ns // MS, e.t_ns // MS) for e in events if e.phase == "start"]

    assert starts(None, 600) == [(400, 600)]
    assert starts(100, 600) == [(100, 600)]  # 300 ms before the run: dated from the onset
    assert starts(100, 200) == [(400, 600)]  # further back than backdate_ns: not this run's onset
    assert starts(100, 0) == [(400, 600)]  # the rule does not date from onsets
    assert starts(500, 600) == [(400, 600)]  # an onset after the run began says nothing about it


def test_a_short_dip_keeps_the_run_within_bridge() -> None:
    """A flickering score (the head's `speaking` while a voice starts) keeps its run of
    scores >= `on` through a dip at most `bridge_ns` after the run's last tick above; a
    longer dip, or a key not observed, ends the run, and a dip tick never confirms it."""
    def starts(scores: list[float | None], bridge_ms: int) -> list[tuple[int, int]]:
        tracker = EventTracker(EventRule("x", on=0.6, off=0.4, min_duration_ns=200 * MS, bridge_ns=bridge_ms * MS))
        events = []
        for i, score in enumerate(scores):
            obs = {} if score is None else {"k": Observation(score)}
            events += tracker.step(i * 67 * MS, obs)
        return [(e.start_ns // MS, e.t_ns // MS) for e in events if e.phase == "start"]

    flicker = [0.1, 0.9, 0.3, 0.8, 0.9, 0.2, 0.7, 0.7, 0.7, 0.7]
    assert starts(flicker, 0) == [(402, 603)]  # every dip restarts the run: only the last one
    # one-tick dips bridged: started at the first 0.9 (and again after it ended below `off`)
    assert starts(flicker, 100) == [(67, 268), (402, 603)]
    assert starts([0.1, 0.9, 0.3, 0.3, 0.9, 0.9, 0.9, 0.9], 100) == [(268, 469)]  # two ticks: too long
    assert starts([0.1, 0.9, None, 0.9, 0.9, 0.9, 0.9], 100) == [(201, 402)]  # unobserved: no bridge
    assert starts([0.1, 0.9, 0.9, 0.9, 0.3, 0.2], 100) == []  # the dip reached 200 ms, confirms nothing
