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

from sensorfuse.engine import manifest as mf
from sensorfuse.perception import Encoders, label_embeddings
from sensorfuse.perception.objects import OBJECT_MODEL
from sensorfuse.perception.queries import Perceived, QueryMatcher, perceived
from sensorfuse.perception.prepost import imagenet

THRESHOLD = 0.6
#: Meanings the engine perceives on the generated sessions: the VAD, the face detector and
#: NanoDet's person, the sound classes. Not the cat (NanoDet and the scene classifier find
#: the photo's cat in under a tenth of its ticks), the motorcycle (never), coffee or rocket
#: (scene labels only, train media: absent from the held-out sessions).
PERCEIVABLE = ("speech", "person", "alarm", "tone", "noise")
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


def combined(counts: dict[str, Counts], meanings: tuple[str, ...]) -> Counts:
    """The counts of several meanings together (meanings not scored count nothing)."""
    out = Counts()
    for meaning in meanings:
        c = counts.get(meaning, Counts())
        out.tp, out.fp, out.fn, out.tn = out.tp + c.tp, out.fp + c.fp, out.fn + c.fn, out.tn + c.tn
    return out


def matcher_for(encoders: Encoders, cache: Path | None) -> QueryMatcher:
    """The matcher as the perceive node builds it (every COCO class, the scene's labels)."""
    manifest = mf.find_manifest(OBJECT_MODEL, cache)
    labels = mf.load(manifest).labels
    assert labels is not None, f"{manifest}: the object detector ships its labels"
    coco = imagenet.load_labels(manifest.parent / labels.file)
    return QueryMatcher(encoders.embed_texts, object_classes=coco, scene_labels=encoders.labels,
                        scene_embeddings=label_embeddings(encoders))


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


#: meaning → what perfect perception would report while it holds (`oracle_at`)
ORACLE: dict[str, dict[str, Any]] = {
    "speech": {"speech": 1.0}, "person": {"face": 1.0, "objects": {"person": 1.0}},
    "cat": {"objects": {"cat": 1.0}}, "motorcycle": {"objects": {"motorcycle": 1.0}},
    "coffee": {"objects": {"cup": 1.0}, "scene": {"coffee mug": 1.0}},
    "rocket": {"scene": {"missile": 1.0, "space shuttle": 1.0}},
    "alarm": {"sounds": {"alarm": 1.0}}, "tone": {"sounds": {"tone": 1.0}}, "noise": {"sounds": {"noise": 1.0}},
}


def oracle_at(state: dict[str, Any]) -> Perceived:
    """A tick as perfect perception would report it (from its truth): scores the query
    understanding alone, apart from what the detectors miss."""
    fields: dict[str, Any] = {"objects": {}, "sounds": {}, "scene": {}}
    for meaning, report in ORACLE.items():
        if MEANINGS[meaning](state["truth"]):
            for name, value in report.items():
                if isinstance(value, dict):
                    fields[name] = {**fields[name], **value}
                else:
                    fields[name] = value
    return Perceived(**fields)


def guarded(ticks: list[dict[str, Any]], meaning: str) -> list[bool]:
    """Per tick: True where the meaning's truth changes within GUARD_NS (not scored)."""
    truth = MEANINGS[meaning]
    flags = [truth(t["truth"]) for t in ticks]
    changes = [ticks[i]["t_ns"] for i in range(1, len(ticks)) if flags[i] != flags[i - 1]]
    return [any(abs(t["t_ns"] - c) < GUARD_NS for c in changes) for t in ticks]


def sessions_for(split: str) -> str:
    """The sessions a query split is scored on: tuning queries on tuning sessions, held-out
    queries (either set) on held-out sessions."""
    return "tuning" if split == "tuning" else "heldout"


def evaluate(states: dict[str, Any], queries: list[dict[str, str]], split: str,
             score: Callable[[int, int, str], float]) -> dict[str, Counts]:
    """Counts per meaning and ``all`` over the sessions for query split `split`;
    `score(session index, tick index, query text)` is the match score to judge."""
    out: dict[str, Counts] = {"all": Counts()}
    for s_i, session in enumerate(states["sessions"]):
        if session["split"] != sessions_for(split):
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
