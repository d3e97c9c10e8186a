"""Scoring text queries against recorded per-tick perception, with the sessions' truth.

Inputs: `tests/data/queries/paraphrases.json` (hand-written queries with their meaning,
split tuning / heldout) and a states file written by `bench/query_states.py` (per tick:
what perceive published — faces, VAD, scene top labels, sound classes, objects — and the
truth then). A (query, tick) pair is positive when the query's meaning holds at that tick
(`MEANINGS`); predicted positive when the score reaches the `query.match` rule's `on`
(0.6). Ticks within `GUARD_NS` of a change of the meaning's truth in that session are
not scored for it: every stage reports after its own delay (scene 100 ms, objects 200 ms
after the frame, the sound classifier's 0.5 s window), and the event rules' hysteresis
and minimum duration are what absorb that, not the matcher.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensorfuse.engine.perception.queries import Perceived, perceived

THRESHOLD = 0.6
GUARD_NS = 500_000_000
#: meaning → is it true, given a tick's truth record (`bench/query_states.truth_at`)
MEANINGS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "speech": lambda t: bool(t["speech"]),
    "person": lambda t: any(s.startswith("face") for s in t["visible"]),
    "cat": lambda t: "cat" in t["visible"],
    "motorcycle": lambda t: "motorcycle" in t["visible"],
    "coffee": lambda t: "coffee" in t["visible"],
    "rocket": lambda t: "rocket" in t["visible"],
    "alarm": lambda t: t["sound"] == "alarm",
    "tone": lambda t: t["sound"] == "tone",
    "noise": lambda t: t["sound"] == "noise",
    "nothing": lambda t: False,
}


@dataclass
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, truth: bool, predicted: bool) -> None:
        if truth and predicted:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif truth:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0


def load_queries(path: Path, split: str | None = None) -> list[dict[str, str]]:
    queries = json.loads(path.read_text())["queries"]
    return [q for q in queries if split is None or q["split"] == split]


def load_states(path: Path) -> dict[str, Any]:
    with gzip.open(path, "rt") as f:
        data: dict[str, Any] = json.load(f)
    return data


def perceived_at(state: dict[str, Any]) -> Perceived:
    """A recorded tick as the matcher reads it (what perceive builds from the same outputs)."""
    return perceived(objects=state["objects"], faces=state["faces"], speech_prob=state["speech"],
                     in_speech=state["in_speech"], sounds=state["sound"], scene_top=state["scene"])


def guarded(ticks: list[dict[str, Any]], meaning: str) -> list[bool]:
    """Per tick: True where the meaning's truth changes within GUARD_NS (not scored)."""
    truth = MEANINGS[meaning]
    flags = [truth(t["truth"]) for t in ticks]
    changes = [ticks[i]["t_ns"] for i in range(1, len(ticks)) if flags[i] != flags[i - 1]]
    return [any(abs(t["t_ns"] - c) < GUARD_NS for c in changes) for t in ticks]


def evaluate(states: dict[str, Any], queries: list[dict[str, str]], split: str,
             score: Callable[[int, int, str], float]) -> dict[str, Counts]:
    """Counts per meaning and ``all`` over the sessions of `split`; `score(session index,
    tick index, query text)` is the match score to judge."""
    out: dict[str, Counts] = {"all": Counts()}
    for s_i, session in enumerate(states["sessions"]):
        if session["split"] != split:
            continue
        ticks = session["ticks"]
        for q in queries:
            meaning = q["meaning"]
            skip = guarded(ticks, meaning)
            counts = out.setdefault(meaning, Counts())
            for t_i, tick in enumerate(ticks):
                if skip[t_i]:
                    continue
                truth, predicted = MEANINGS[meaning](tick["truth"]), score(s_i, t_i, q["text"]) >= THRESHOLD
                counts.add(truth, predicted)
                out["all"].add(truth, predicted)
    return out
