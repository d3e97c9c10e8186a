"""Event logic: per-tick scores in, `start` / `update` / `end` events out. Pure and bounded.

One `EventTracker` per event type; every tick it gets the score of each key (a face
track, a query, or the single key of a global event like ``speech.offscreen``). For a key:

- it starts when its score has stayed >= `on` for `min_duration_ns` of event time; the
  event's `start_ns` is the first tick of that run (not when it was confirmed). A
  flickering score (the fusion head's `speaking` swings 0.9 → 0.3 → 0.8 from tick to
  tick while a voice starts) can keep its run through short dips: a tick below `on` at
  most `bridge_ns` after the run's last tick at or above `on` does not end the run (it
  cannot confirm it either; 0: every dip ends the run). A slow
  score (the fusion head sees 600 ms of audio) can be dated by a fast detector: an
  observation's `since_ns` (the VAD's speech onset) at most `backdate_ns` before the run's
  first tick starts the run there instead, for `start_ns` and for `min_duration_ns`;
- while active it emits an `update` at most every `update_every_ns` (0: never);
- it ends when the score has stayed < `off` (hysteresis: `off` <= `on`) for `hold_ns`;
  the `end_ns` is the first tick of that quiet run; a key that is no longer observed
  scores 0;
- after an end the same key cannot start again for `cooldown_ns`.

Times are the ticks' event times, so live and replay give the same events. The record
schema is in docs/protocol.md ("Events"); `Event.record()` builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PHASES = ("start", "update", "end")
MAX_REFS = 16


@dataclass(frozen=True)
class Ref:
    """One input message behind a result: its stream and seq (and capture time), and the
    modality it feeds (``vision``, ``audio``, ``text``), so a result lists only the inputs
    of the modalities it used."""

    stream: str
    seq: int
    t_ns: int
    modality: str = ""


@dataclass(frozen=True)
class EventRule:
    type: str
    on: float
    off: float
    min_duration_ns: int = 0
    hold_ns: int = 0
    cooldown_ns: int = 0
    update_every_ns: int = 0
    #: how far before the score's run an observation's `since_ns` may date it (0: never)
    backdate_ns: int = 0
    #: a tick below `on` this soon after the run's last tick at or above `on` keeps the run
    #: (0: any dip ends it)
    bridge_ns: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.off <= self.on <= 1.0:
            raise ValueError(f"{self.type}: need 0 <= off ({self.off}) <= on ({self.on}) <= 1")
        if min(self.min_duration_ns, self.hold_ns, self.cooldown_ns, self.update_every_ns, self.backdate_ns,
               self.bridge_ns) < 0:
            raise ValueError(f"{self.type}: durations must be >= 0")


@dataclass(frozen=True)
class Observation:
    """One key's score in one tick, with what contributed and the inputs behind it."""

    score: float
    modalities: tuple[str, ...] = ()
    refs: tuple[Ref, ...] = ()
    subject: dict[str, Any] = field(default_factory=dict)
    #: when a fast detector says what this score is about began (the VAD's speech onset);
    #: None when unknown. Dates a starting event (`EventRule.backdate_ns`).
    since_ns: int | None = None


@dataclass(frozen=True)
class Event:
    type: str
    phase: str
    event_id: str
    key: str
    t_ns: int
    start_ns: int
    end_ns: int | None
    score: float
    peak_score: float
    modalities: tuple[str, ...]
    subject: dict[str, Any]
    refs: tuple[Ref, ...]

    def record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "type": self.type, "phase": self.phase, "event_id": self.event_id, "key": self.key,
            "t_ns": self.t_ns, "start_ns": self.start_ns, "score": round(self.score, 4),
            "peak_score": round(self.peak_score, 4), "modalities": list(self.modalities),
            "subject": self.subject,
            "provenance": [{"stream": r.stream, "seq": r.seq, "t_ns": r.t_ns} for r in self.refs],
        }
        if self.end_ns is not None:
            rec["end_ns"] = self.end_ns
            rec["duration_ns"] = self.end_ns - self.start_ns
        return rec


@dataclass
class _KeyState:
    above_since: int | None = None
    above_refs: tuple[Ref, ...] = ()
    above_last: int = 0  # the run's last tick at or above `on`
    active: bool = False
    event_id: str = ""
    start_ns: int = 0
    below_since: int | None = None
    last_emit_ns: int = 0
    cooldown_until: int | None = None
    peak: float = 0.0
    last: Observation | None = None


def _merge_refs(a: tuple[Ref, ...], b: tuple[Ref, ...]) -> tuple[Ref, ...]:
    seen = dict.fromkeys(a + b)
    return tuple(seen)[:MAX_REFS]


class EventTracker:
    """Hysteresis, minimum duration, hold and cooldown for one event type."""

    def __init__(self, rule: EventRule, *, max_keys: int = 256) -> None:
        self.rule = rule
        self.max_keys = max_keys
        self._keys: dict[str, _KeyState] = {}
        self._counter = 0

    @property
    def active(self) -> list[str]:
        return [k for k, s in self._keys.items() if s.active]

    def last_observation(self, key: str) -> Observation | None:
        """The last observation of an active key (what carries it through a tick that could
        not observe it, e.g. a face in a tick without a frame)."""
        state = self._keys.get(key)
        return state.last if state is not None and state.active else None

    def step(self, t_ns: int, observations: dict[str, Observation]) -> list[Event]:
        events: list[Event] = []
        # Known keys in the order they came, then new ones in observation order: a set union
        # here iterated in string-hash order, which changes with every process (PYTHONHASHSEED),
        # so two faces appearing in one tick got their event ids in a different order per run.
        for key in [*self._keys, *(k for k in observations if k not in self._keys)]:
            obs = observations.get(key)
            state = self._keys.get(key)
            if state is None:
                if obs is None or obs.score < self.rule.on:
                    continue  # nothing to remember about a key that never came close
                state = self._keys[key] = _KeyState()
            event = self._advance(key, state, t_ns, obs)
            if event is not None:
                events.append(event)
        self._forget(t_ns)
        return sorted(events, key=lambda e: (PHASES.index(e.phase) != 2, e.key))

    def flush(self, t_ns: int) -> list[Event]:
        """End every active event (end of stream). The `end` carries the key's last observed
        score, modalities, subject and provenance: the input ended, not the event's evidence."""
        events = []
        for key, state in sorted(self._keys.items()):
            if state.active:
                end = state.below_since if state.below_since is not None else t_ns
                events.append(self._event(key, state, "end", t_ns, state.last or Observation(0.0), end))
                state.active = False
        return events

    def _advance(self, key: str, state: _KeyState, t_ns: int, obs: Observation | None) -> Event | None:
        rule = self.rule
        score = obs.score if obs is not None else 0.0
        if not state.active:
            if state.cooldown_until is not None and t_ns < state.cooldown_until:
                state.above_since, state.above_refs = None, ()
                return None
            if score < rule.on:
                if obs is None or state.above_since is None or t_ns - state.above_last > rule.bridge_ns:
                    state.above_since, state.above_refs = None, ()
                return None  # a short dip (a tick within `bridge_ns` of the run's last) keeps the run
            assert obs is not None
            if state.above_since is None:
                state.above_since, state.above_refs, state.peak = t_ns, obs.refs, score
            state.above_last = t_ns
            state.peak = max(state.peak, score)
            if t_ns - state.above_since < rule.min_duration_ns:
                return None
            self._counter += 1
            began = self._run_start(state.above_since, obs)
            state.active, state.event_id, state.start_ns = True, f"{rule.type}:{self._counter}", began
            state.below_since, state.last, state.last_emit_ns = None, obs, t_ns
            refs = _merge_refs(state.above_refs, obs.refs)
            return self._event(key, state, "start", t_ns, obs, None, refs)
        if obs is not None:
            state.last = obs
            state.peak = max(state.peak, score)
        if score >= rule.off:
            state.below_since = None
            if rule.update_every_ns and t_ns - state.last_emit_ns >= rule.update_every_ns and obs is not None:
                state.last_emit_ns = t_ns
                return self._event(key, state, "update", t_ns, obs, None)
            return None
        if state.below_since is None:
            state.below_since = t_ns
        if t_ns - state.below_since < rule.hold_ns:
            return None
        state.active, state.above_since = False, None
        state.cooldown_until = t_ns + rule.cooldown_ns
        last = state.last or Observation(0.0)
        return self._event(key, state, "end", t_ns, Observation(score, last.modalities, last.refs, last.subject),
                           state.below_since)

    def _run_start(self, above_since: int, obs: Observation) -> int:
        """When the run of scores >= `on` began: its first tick, or the observation's
        `since_ns` when that is at most `backdate_ns` earlier."""
        since = obs.since_ns
        if self.rule.backdate_ns and since is not None and above_since - self.rule.backdate_ns <= since < above_since:
            return since
        return above_since

    def _event(self, key: str, state: _KeyState, phase: str, t_ns: int, obs: Observation,
               end_ns: int | None, refs: tuple[Ref, ...] | None = None) -> Event:
        return Event(self.rule.type, phase, state.event_id, key, t_ns, state.start_ns, end_ns, obs.score,
                     state.peak, obs.modalities, obs.subject, refs if refs is not None else obs.refs)

    def _forget(self, t_ns: int) -> None:
        """Bound memory: drop idle keys whose cooldown is over, oldest first."""
        idle = [k for k, s in self._keys.items()
                if not s.active and s.above_since is None and (s.cooldown_until is None or t_ns >= s.cooldown_until)]
        for key in idle:
            del self._keys[key]
        while len(self._keys) > self.max_keys:
            oldest = next(k for k, s in self._keys.items() if not s.active) if any(
                not s.active for s in self._keys.values()) else next(iter(self._keys))
            del self._keys[oldest]


def format_event(ev: dict[str, Any]) -> str:
    """One readable line for an event record (docs/protocol.md, "Events"): the console
    sink's line and the recorder's Foxglove log line. A record off the schema (a missing
    or odd field, as in a hostile log) still gives a line."""
    subject = ev.get("subject")
    query = subject.get("query") if isinstance(subject, dict) else None
    said = subject.get("text") if isinstance(subject, dict) else None
    what = f"query {query!r}" if query else f"said {said!r}" if said else str(ev.get("key", ""))
    modalities = ev.get("modalities")
    mods = "+".join(map(str, modalities)) if isinstance(modalities, (list, tuple)) and modalities else "-"
    score = ev.get("score", 0.0)
    score_text = f"{score:.2f}" if isinstance(score, (int, float)) else repr(score)
    duration_ns = ev.get("duration_ns")
    ended = ev.get("phase") == "end" and isinstance(duration_ns, (int, float))
    extra = f" lasted {duration_ns / 1e9:.2f} s" if ended else ""
    return f"{ev.get('type', '')!s:<17} {ev.get('phase', '')!s:<6} {what:<24} score {score_text}  [{mods}]{extra}"
