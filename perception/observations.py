"""What each event rule is given per tick: a tick's features and fusion-head scores, for one
camera or several, as observations keyed like the events they start and end.

One tick's `views` are `(camera, features, head scores)` per camera (camera None: the one
camera of a one-camera graph, keys without a camera). What a camera sees is keyed by it
(``cam1:track:7``, subject with ``camera``): faces (score: detector confidence), speakers
(the head's `speaking` per face slot), objects (the camera's object stage's last result).
What is heard and asked is observed once: `speech.offscreen` is the least offscreen of the
cameras that have a frame (no face on any camera is speaking), sounds from the first
camera's perception (which hears for all), and every live query scored by the label-space
matcher against everything any camera sees and what is heard, words included (the lines
said lately, `HeardLines`; docs/queries.md), or by the head's relevance (``query_score: head``).

A face that lies on a tracked object of the `face_veto` classes (a cat's face, a
motorcycle's headlight: both score like faces to both face models) and on no tracked
person is not observed by the face and speaker rules (`face_on_object`; docs/fusion.md,
"False faces").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from sensorfuse.engine.events import EventTracker, Observation, Ref
from sensorfuse.perception.features import TickFeatures
from sensorfuse.perception.objects import ObjectStage, TrackedObject
from sensorfuse.perception.queries import QueryMatcher, perceived
from sensorfuse.perception.query_life import ActiveQueries
from sensorfuse.perception.said import HeardLines
from sensorfuse.perception.tracking import intersection

#: Sound classes that become `sound.<class>` events (speech has its own events; background is none).
SOUND_EVENTS = ("alarm", "tone", "noise")
View = tuple[str | None, TickFeatures, Mapping[str, Any]]
#: Tracked objects whose faces are not people's: animals and the headlights of a motorcycle
#: (the face-free clips of bench/faces.py). Not cars: a driver behind a windscreen lies
#: on the car, and NanoDet does not always box the driver.
FACE_VETO = ("cat", "dog", "motorcycle")
#: a face lies on an object when this fraction of its box is inside the object's box
ON_OBJECT = 0.5


def face_on_object(box: Sequence[float], objects: Iterable[TrackedObject], veto: Sequence[str]) -> str | None:
    """The class of the object of a `veto` class the face `box` lies on, when it lies on no
    person; None when it is a person's face as far as the objects say."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    if area <= 0:
        return None
    on = [o for o in objects if intersection(box, o.box) >= ON_OBJECT * area]
    if any(o.label == "person" for o in on):
        return None
    return next((o.label for o in on if o.label in veto), None)


def used(views: Iterable[View], modalities: tuple[str, ...]) -> tuple[Ref, ...]:
    """Provenance lists the inputs of the modalities an observation used, no others (each
    once: the cameras' features share the audio and text refs)."""
    return tuple(dict.fromkeys(r for _, feats, _ in views for r in feats.refs if r.modality in modalities))


def query_key(feats: TickFeatures) -> str:
    """A query's event key: ``text:<seq>`` typed, ``said:<seq>`` spoken (two streams, two
    seq counts), ``text:<text>`` for a line without a reference."""
    ref = feats.text_ref
    if ref is None:
        return f"text:{feats.text}"
    return f"{'said' if feats.said else 'text'}:{ref.seq}"


class Observer:
    """Turns views into observations for the rules named by `trackers` (state: the last
    sound result, the live queries)."""

    def __init__(self, trackers: Mapping[str, EventTracker], object_stages: Mapping[str | None, ObjectStage],
                 matcher: QueryMatcher | None, queries: ActiveQueries,
                 text_embedding: Callable[[str], np.ndarray], heard: HeardLines | None = None, *,
                 face_veto: Sequence[str] = FACE_VETO) -> None:
        self.trackers = trackers
        #: what was said lately (the transcribe node's lines), for queries about words
        self.heard = heard
        self.object_stages = object_stages
        self.matcher = matcher
        self.queries = queries
        self.text_embedding = text_embedding
        self.face_veto = tuple(face_veto)
        self.last_sound: dict[str, float] = {}
        #: this tick's faces not observed, (camera, track id) -> the object class they lie on
        self.vetoed: dict[tuple[str | None, int], str] = {}
        self.vetoed_total = 0  # face observations declined so far

    def observe(self, views: list[View]) -> dict[str, dict[str, Observation]]:
        """Rule -> key -> observation for one tick."""
        obs: dict[str, dict[str, Observation]] = {name: {} for name in self.trackers}
        self.vetoed = {}
        for camera, feats, scores in views:
            self._camera(obs, camera, feats, scores)
        _, first, first_scores = views[0]
        sensors = tuple(m for m in ("vision", "audio") if any(f.present[m] for _, f, _ in views))
        if first.present["audio"]:
            # no face on any camera is speaking: the least offscreen of the cameras that see
            offscreen = [float(s["offscreen"][0, 0]) for _, f, s in views if f.present["vision"]] \
                or [float(first_scores["offscreen"][0, 0])]
            obs["speech.offscreen"]["offscreen"] = Observation(min(offscreen), sensors, used(views, sensors),
                                                               since_ns=first.speech_since_ns)
            if first.sound_probs is not None:
                self.last_sound = first.sound_probs
            for name in SOUND_EVENTS if self.last_sound else ():
                obs["sound"][name] = Observation(self.last_sound.get(name, 0.0), ("audio",),
                                                 used(views, ("audio",)), {"sound": name})
        if self.matcher is not None:
            self._queries(views, obs["query.match"], sensors)
        elif first.present["query"] and first.text is not None:
            text_ref = first.text_ref
            modalities = ("text", *sensors)
            obs["query.match"][query_key(first)] = Observation(
                float(first_scores["relevance"][0, 0]), modalities, used(views, modalities),
                {"query": first.text, "text_seq": text_ref.seq if text_ref else None})
        return obs

    def _camera(self, obs: dict[str, dict[str, Observation]], camera: str | None, feats: TickFeatures,
                scores: Mapping[str, Any]) -> None:
        """Faces, speakers and objects one camera sees."""
        prefix, named = (f"{camera}:", {"camera": camera}) if camera is not None else ("", {})
        sensors = tuple(m for m in ("vision", "audio") if feats.present[m])
        view = [(camera, feats, scores)]
        seen = used(view, ("vision",))
        boxes = {f.track_id: f.box for f in feats.faces}
        stage = self.object_stages.get(camera)
        current = stage.current if stage is not None else None
        if feats.present["vision"]:
            on = {f.track_id: face_on_object(f.box, current.objects, self.face_veto)
                  for f in feats.faces} if current is not None and self.face_veto else {}
            vetoed = {(camera, tid): label for tid, label in on.items() if label is not None}
            self.vetoed.update(vetoed)
            self.vetoed_total += len(vetoed)
            for f in feats.faces:  # a face's score is its detector confidence
                if (camera, f.track_id) in self.vetoed:
                    continue
                obs["face"][f"{prefix}track:{f.track_id}"] = Observation(
                    f.score, ("vision",), seen, {"track_id": f.track_id, "box": f.box, **named})
            for i, tid in enumerate(feats.slot_ids):
                if (camera, tid) in self.vetoed:
                    continue
                obs["speaker.active"][f"{prefix}track:{tid}"] = Observation(
                    float(scores["speaking"][0, i]), sensors, used(view, sensors),
                    {"track_id": tid, "box": boxes[tid], **named}, feats.speech_since_ns)
        else:  # no frame this tick: keep the camera's faces as they were last seen rather than ending them
            face = self.trackers["face"]
            for key in face.active:
                last = face.last_observation(key)
                if last is not None and key.startswith(f"{prefix}track:"):
                    obs["face"][key] = last
        for o in current.objects if current is not None else ():  # the last result holds until the next
            obs["object"][f"{prefix}track:{o.track_id}"] = Observation(
                o.score, ("vision",), seen, {"class": o.label, "track_id": o.track_id, "box": o.box, **named})

    def _queries(self, views: list[View], out: dict[str, Observation], sensors: tuple[str, ...]) -> None:
        """Every live query scored by the label-space matcher (`sensorfuse.perception.queries`)
        against what any camera sees and what is heard."""
        assert self.matcher is not None
        _, feats, _ = views[0]
        if feats.present["query"] and feats.text is not None:
            ref = feats.text_ref
            self.queries.offer(ref.t_ns if ref else feats.t_ns, query_key(feats), feats.text, ref)
        live = self.queries.live(feats.t_ns)
        if not live:
            return
        objects = [(o.label, o.score) for stage in self.object_stages.values() if stage.current is not None
                   for o in stage.current.objects]
        scene: dict[str, float] = {}
        for _, f, _ in views:
            for name, p in f.scene_top or ():
                scene[name] = max(scene.get(name, 0.0), p)
        now = perceived(objects=objects, faces=[f.score for _, v, _ in views for f in v.faces],
                        speech_prob=feats.speech_prob, in_speech=feats.in_speech, sounds=self.last_sound,
                        scene_top=list(scene.items()) if any(f.scene_top is not None for _, f, _ in views) else None,
                        heard=self.heard.at(feats.t_ns) if self.heard is not None else ())
        modalities = ("text", *sensors)
        all_refs = {r for _, f, _ in views for r in f.refs}
        for query in live:
            referents = self.matcher.referents(query.text, self.text_embedding(query.text))
            # the line of this tick is among its refs; an older query's line is added after them
            refs = used(views, modalities) if query.ref is None or query.ref in all_refs \
                else (*used(views, sensors), query.ref)
            out[query.key] = Observation(self.matcher.score(referents, now), modalities, refs,
                                         {"query": query.text, "text_seq": query.ref.seq if query.ref else None})
