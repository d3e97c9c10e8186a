"""Text queries matched against what perception knows, in one label space.

A query ("is anyone talking?", "tell me when you see a motorbike") is embedded once with
the text encoder (MiniLM) and compared with every *concept* the engine can perceive — each
object class of the detector (all 80 COCO names, with synonyms: "person" is also someone,
anyone, a man, a face...), each of the scene classifier's 1000 ImageNet labels, speech
("someone is speaking"), and the sound classes (alarm, tone, noise). The concepts it is
about, its *referents*, are those within `margin` of the best cosine and at least
`min_similarity`; a query near no concept ("mark this moment") has none and never matches.
A query about words ("did anyone say hello?", `said_phrase`) is not embedded: its one
referent is ``said:<phrase>``, present while a line heard lately holds the phrase's words
(`Perceived.heard`, `sensorfuse.perception.said`).

Per tick the match score is the strongest presence among the referents: an object's
detector score (a detection at `object_full` counts as sure), a face's score for "person",
the VAD's speech probability (1 while the VAD is in a speech segment), a sound class's
probability, and the scene's probability mass on its referent labels (`scene_full` of
mass counts as sure). So the score says whether the thing asked about is perceived now,
not how similar the query is to the scene as a whole: "is there a cat?" stays low while a
dog is in view.

Deterministic and cheap: concept phrases are embedded once (the ImageNet labels' vectors
are the ones cached for the scene's ConSE vector); a query's referents are cached by text,
so a tick costs a dictionary walk. Constants were chosen on the tuning half of
`tests/data/queries/paraphrases.json` and are reported on its held-out half (docs/queries.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import re

import numpy as np

from sensorfuse.perception.said import content_words

#: Other ways people name some COCO classes ("a <class>" is always a phrase).
OBJECT_SYNONYMS: dict[str, tuple[str, ...]] = {
    "person": ("a person", "people", "someone", "somebody", "anyone", "anybody", "a man", "a woman", "a human",
               "a face", "a human face", "is anyone there"),
    "motorcycle": ("a motorbike",),
    "bicycle": ("a bike",),
    "cup": ("a mug", "a coffee cup"),
    "tv": ("a television",),
    "cell phone": ("a mobile phone", "a smartphone"),
    "couch": ("a sofa",),
    "car": ("an automobile",),
}
#: Scene labels that are kinds of an object class but sit too far from "a <class>" in the
#: text space to be linked by similarity (ImageNet's "tabby" is "tabby, tabby cat").
SCENE_KINDS: dict[str, tuple[str, ...]] = {"cat": ("tabby",)}
SPEECH = "speech"
#: Phrases for the VAD's speech concept.
SPEECH_PHRASES = ("someone is speaking", "someone is talking", "is anyone speaking", "a person talking",
                  "a voice", "speech", "people talking")
#: Phrases per sound class of the sound-event classifier (speech and background are not queried here).
SOUND_PHRASES: dict[str, tuple[str, ...]] = {
    "alarm": ("an alarm", "an alarm is ringing", "a siren"),
    "tone": ("a beep", "a tone", "a beeping sound", "a whistle"),
    "noise": ("noise", "a loud noise", "static hiss", "white noise"),
}
#: How people wrap a query ("tell me when you see someone"): taken off the front before
#: embedding, so the wrapper does not drown what is asked about (MiniLM places "tell me when
#: you see someone" at 0.29 from "someone"). "hear" and "listen" stay: they say the query is
#: about a sound.
REQUEST_WRAPPERS = re.compile(
    r"^(?:(?:please|ok|okay|hey)\s+|(?:tell|let|alert|notify|warn|show|remind)\s+me\s+(?:know\s+)?"
    r"(?:when|if|whether|once|about)?\s*|(?:can|could|do|did|would)\s+(?:you|i|we)\s+"
    r"(?:see|spot|find|detect|notice|tell)?\s*|(?:watch|look)\s+(?:out\s+)?for\s+|"
    r"(?:you|i|we)\s+(?:see|spot)\s+)+")
#: A query about words ("did anyone say hello", "has someone mentioned coffee", "was the word
#: rocket spoken", "did they talk about the weather"): a saying verb and what was said after
#: it, or what was said before a passive one. "is anyone talking?" has no words after its
#: verb and stays a speech query.
SAYING = re.compile(
    r"\b(?:says?|said|saying|mention(?:s|ed|ing)?|utter(?:s|ed|ing)?|discuss(?:es|ed|ing)?|"
    r"(?:talk(?:s|ed|ing)?|speak(?:s|ing)?|spoken?|chat(?:s|ted|ting)?)\s+(?:about|of)|"
    r"(?:bring(?:s|ing)?|brought)\s+up|the\s+(?:words?|phrase))\s+(?P<phrase>.+)$")
SAID_PASSIVE = re.compile(
    r"^(?:was|were|is|are|has|have|had)\s+(?P<phrase>.+?)\s+(?:been\s+|being\s+)?"
    r"(?:said|mentioned|spoken(?:\s+about|\s+of)?|uttered|discussed|brought\s+up|talked\s+about)"
    r"(?:\s+(?:aloud|out\s+loud|yet|today|by\s+\w+))*$")
#: Words around a said phrase that are not part of it ("the word rocket spoken aloud").
SAID_AROUND = re.compile(
    r"^(?:(?:the\s+)?(?:words?|phrase|name)\s+|(?:something|anything)\s+(?:about|like)\s+|about\s+|that\s+)+|"
    r"(?:\s+(?:was|were|is|been|being|ever|just|already))*\s+(?:said|spoken|mentioned|uttered|heard)"
    r"(?:\s+(?:aloud|out\s+loud|yet|today|by\s+\w+))*$|\s+(?:aloud|out\s+loud)$")
SAID = "said"
MIN_SIMILARITY = 0.45
MARGIN = 0.08
#: A scene label this close to "a <class>" is a kind of that object class ("tabby" of cat):
#: a query about the class also counts the scene's mass on it.
LINK_SIMILARITY = 0.6
OBJECT_FULL = 0.5
SCENE_FULL = 0.2


@dataclass(frozen=True)
class Perceived:
    """What perception knows at a tick, as the matcher reads it."""

    objects: Mapping[str, float] = field(default_factory=dict)  # class → best score of its current objects
    face: float = 0.0  # best face score (0: no face)
    speech: float = 0.0  # VAD probability (1 while in a speech segment)
    sounds: Mapping[str, float] = field(default_factory=dict)  # sound class → probability
    scene: Mapping[str, float] = field(default_factory=dict)  # scene top-k label → probability
    heard: Sequence[str] = ()  # the transcribed lines said within the heard window (`perception.said`)


def perceived(*, objects: Sequence[tuple[str, float]], faces: Sequence[float], speech_prob: float | None,
              in_speech: bool, sounds: Mapping[str, float] | None,
              scene_top: Sequence[tuple[str, float]] | None, heard: Sequence[str] = ()) -> Perceived:
    """A tick's perception as the matcher reads it: the best score per object class, the
    best face, speech as the VAD's probability (1 inside its speech segment), the lines heard."""
    best: dict[str, float] = {}
    for name, score in objects:
        best[name] = max(best.get(name, 0.0), float(score))
    speech = 1.0 if in_speech else float(speech_prob or 0.0)
    return Perceived(objects=best, face=max(faces, default=0.0), speech=speech, sounds=dict(sounds or {}),
                     scene={name: float(p) for name, p in scene_top or ()}, heard=tuple(heard))


@dataclass(frozen=True)
class Referents:
    """The concepts a query is about (empty: about nothing the engine perceives)."""

    text: str
    concepts: tuple[str, ...]
    similarity: float  # the best concept's cosine


def core(text: str) -> str:
    """`text` without its request wrappers and end punctuation ("tell me when you see
    someone?" -> "someone"); the text itself when nothing would be left."""
    line = " ".join(text.lower().split()).rstrip("?!. ")
    stripped = REQUEST_WRAPPERS.sub("", line).strip()
    return stripped or line


def said_phrase(text: str) -> str | None:
    """What a query about words asks was said ("did anyone say hello?" -> "hello", "was the
    word rocket spoken" -> "rocket"); None for any other query, and for one whose phrase
    has no content word ("did anyone say anything?" is about speech)."""
    line = " ".join(re.sub(r"[\"“”‘’?!.,]", " ", text.lower()).split())
    found = SAID_PASSIVE.match(line) or SAYING.search(line)
    if found is None:
        return None
    phrase = SAID_AROUND.sub("", found["phrase"]).strip(" '")
    return phrase if content_words(phrase) else None


def _cached(cache: dict[str, Any], key: str, make: Callable[[str], Any], bound: int = 512) -> Any:
    """`cache[key]`, made on a miss; bounded: the oldest entry goes first."""
    if key not in cache:
        if len(cache) >= bound:
            del cache[next(iter(cache))]
        cache[key] = make(key)
    return cache[key]


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-9)


class QueryMatcher:
    """Concept vocabulary + per-tick scoring. `embed`: texts → unit vectors [N, D]."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray], *, object_classes: Sequence[str],
                 scene_labels: Sequence[str] = (), scene_embeddings: np.ndarray | None = None,
                 min_similarity: float = MIN_SIMILARITY, margin: float = MARGIN,
                 object_full: float = OBJECT_FULL, scene_full: float = SCENE_FULL,
                 link_similarity: float = LINK_SIMILARITY, said_similarity: float | None = None) -> None:
        self.embed = embed
        #: a said phrase is also present in a line this close to it in the text space (a
        #: topic: "the weather" / "it is sunny"); None: only a line with its words
        self.said_similarity = said_similarity
        self.min_similarity, self.margin = min_similarity, margin
        self.object_full, self.scene_full = object_full, scene_full
        phrases: list[str] = []
        owners: list[str] = []  # concept of each phrase
        for name in object_classes:
            for phrase in (f"a {name}", *OBJECT_SYNONYMS.get(name, ())):
                phrases.append(phrase)
                owners.append(f"object:{name}")
        for phrase in SPEECH_PHRASES:
            phrases.append(phrase)
            owners.append(SPEECH)
        for sound, names in SOUND_PHRASES.items():
            for phrase in names:
                phrases.append(phrase)
                owners.append(f"sound:{sound}")
        vectors = [_unit(np.asarray(embed(phrases), np.float32))]
        #: object concept → the scene labels that are kinds of it
        self.links: dict[str, tuple[str, ...]] = {}
        if len(scene_labels):
            if scene_embeddings is None or len(scene_embeddings) != len(scene_labels):
                raise ValueError("scene_embeddings must give one vector per scene label")
            scene_vectors = _unit(np.asarray(scene_embeddings, np.float32))
            vectors.append(scene_vectors)
            owners += [f"scene:{label}" for label in scene_labels]
            for name in object_classes:
                close = scene_vectors @ vectors[0][phrases.index(f"a {name}")]
                kinds = [scene_labels[i] for i in np.flatnonzero(close >= link_similarity)]
                kinds += [k for k in SCENE_KINDS.get(name, ()) if k in scene_labels and k not in kinds]
                linked = tuple(f"scene:{k}" for k in kinds)
                if linked:
                    self.links[f"object:{name}"] = linked
        #: scene label → the object classes it is a kind of
        self.kind_of: dict[str, tuple[str, ...]] = {}
        for obj, labels in self.links.items():
            for label in labels:
                self.kind_of[label] = (*self.kind_of.get(label, ()), obj)
        self.concepts = sorted(set(owners), key=owners.index)
        index = {c: i for i, c in enumerate(self.concepts)}
        self._owner = np.asarray([index[o] for o in owners])
        self._vectors = np.concatenate(vectors)
        self._cache: dict[str, Referents] = {}
        self._line_words: dict[str, frozenset[str]] = {}  # heard line or phrase → its content words
        self._line_vectors: dict[str, np.ndarray] = {}  # heard line or phrase → its unit embedding

    def referents(self, text: str, vector: np.ndarray | None = None) -> Referents:
        """The concepts `text` is about (cached per text, bounded); `vector`: its embedding,
        when the caller has it already."""
        return _cached(self._cache, text, lambda _: self._find_referents(text, vector), bound=256)

    def _find_referents(self, text: str, vector: np.ndarray | None) -> Referents:
        phrase = said_phrase(text)
        if phrase is not None:  # about words: what was said, not what is perceived
            return Referents(text, (f"{SAID}:{phrase}",), 1.0)
        asked = core(text)
        if asked != text or vector is None:
            vector = np.asarray(self.embed([asked]), np.float32)[0]
        query = _unit(np.asarray(vector, np.float32)[None])[0]
        per_phrase = self._vectors @ query
        per_concept = np.full(len(self.concepts), -1.0)
        np.maximum.at(per_concept, self._owner, per_phrase)
        best = float(per_concept.max())
        chosen = np.flatnonzero(per_concept >= max(self.min_similarity, best - self.margin))
        order = chosen[np.argsort(-per_concept[chosen], kind="stable")]
        concepts = [self.concepts[i] for i in order]
        for concept in list(concepts):  # a kind of an object class is about that class too
            concepts += [c for c in self.kind_of.get(concept, ()) if c not in concepts]
        for concept in list(concepts):
            concepts += [c for c in self.links.get(concept, ()) if c not in concepts]
        return Referents(text, tuple(concepts), round(best, 4))

    def presence(self, concept: str, now: Perceived) -> float:
        """How sure perception is, in [0, 1], that one (non-scene) concept is present now."""
        kind, _, name = concept.partition(":")
        if kind == "object":
            seen = now.objects.get(name, 0.0)
            if name == "person":  # every face is a person's
                seen = max(seen, now.face)
            return min(1.0, seen / self.object_full)
        if kind == SPEECH:
            return min(1.0, now.speech)
        if kind == "sound":
            return min(1.0, now.sounds.get(name, 0.0))
        if kind == SAID:
            return self.said_presence(name, now.heard)
        raise ValueError(f"not a concept the matcher scores one by one: {concept!r}")

    def said_presence(self, phrase: str, heard: Sequence[str]) -> float:
        """1 when a heard line holds every content word of `phrase` (normalised:
        `perception.said`), or with `said_similarity` when a line's embedding is that close to
        the phrase's; else 0."""
        wanted = _cached(self._line_words, phrase, content_words)
        if any(wanted <= _cached(self._line_words, line, content_words) for line in heard):
            return 1.0
        if self.said_similarity is None or not heard:
            return 0.0
        vector = _cached(self._line_vectors, phrase, self._unit_vector)
        best = max(float(_cached(self._line_vectors, line, self._unit_vector) @ vector) for line in heard)
        return 1.0 if best >= self.said_similarity else 0.0

    def _unit_vector(self, text: str) -> np.ndarray:
        return _unit(np.asarray(self.embed([text]), np.float32))[0]

    def score(self, referents: Referents, now: Perceived) -> float:
        """The match score of a query at a tick: its most present referent."""
        best = 0.0
        scene_mass = 0.0
        for concept in referents.concepts:
            if concept.startswith("scene:"):
                scene_mass += now.scene.get(concept[len("scene:"):], 0.0)
            else:
                best = max(best, self.presence(concept, now))
        return round(max(best, min(1.0, scene_mass / self.scene_full)), 4)
