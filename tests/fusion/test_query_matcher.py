"""The label-space query matcher (perception.queries) and query lifetimes
(perception.query_life), on a toy text space: no model needed."""

from __future__ import annotations

import pytest

from sensorfuse.perception.queries import Perceived, QueryMatcher, core, perceived
from sensorfuse.perception.query_life import ALL, ActiveQueries, cancel_target
from sensorfuse.perception.ticks import Ref
from toy_text import embed

pytestmark = pytest.mark.timeout(30)
S = 1_000_000_000
SCENE = ["tabby", "lakeside", "speedboat"]


@pytest.fixture(scope="module")
def matcher() -> QueryMatcher:
    return QueryMatcher(embed, object_classes=["person", "cat", "dog", "motorcycle"], scene_labels=SCENE,
                        scene_embeddings=embed(SCENE))


def test_a_query_is_about_the_concepts_nearest_it(matcher: QueryMatcher) -> None:
    assert matcher.referents("is there a cat?").concepts[0] == "object:cat"
    assert "object:dog" not in matcher.referents("is there a cat?").concepts
    assert matcher.referents("motorbike").concepts[0] == "object:motorcycle"  # a synonym
    assert matcher.referents("alarm").concepts == ("sound:alarm",)
    assert matcher.referents("mark this moment").concepts == (), "a command is about nothing"


def test_scene_kinds_of_an_object_count_for_it(matcher: QueryMatcher) -> None:
    assert "scene:tabby" in matcher.referents("cat").concepts  # SCENE_KINDS: tabby is a cat
    assert matcher.score(matcher.referents("cat"), Perceived(scene={"tabby": 0.1})) == pytest.approx(0.5)
    assert matcher.score(matcher.referents("cat"), Perceived(scene={"lakeside": 0.9})) == 0.0


def test_a_kind_of_an_object_class_is_about_the_class(matcher: QueryMatcher) -> None:
    assert "object:cat" in matcher.referents("tabby").concepts
    assert matcher.score(matcher.referents("tabby"), Perceived(objects={"cat": 0.9})) == 1.0


def test_request_wrappers_are_taken_off() -> None:
    assert core("Tell me when you see someone?") == "someone"
    assert core("let me know if a cat shows up") == "a cat shows up"
    assert core("can you see a face") == "a face"
    assert core("do you hear an alarm") == "hear an alarm", "hearing says it is a sound"
    assert core("is there a cat?") == "is there a cat"
    assert core("show me") == "show me", "nothing left: the line itself"


def test_the_score_is_the_most_present_referent(matcher: QueryMatcher) -> None:
    cat = matcher.referents("is there a cat")
    assert matcher.score(cat, Perceived(objects={"cat": 0.4})) == pytest.approx(0.8)  # 0.4 / object_full
    assert matcher.score(cat, Perceived(objects={"cat": 0.9})) == 1.0
    assert matcher.score(cat, Perceived(objects={"dog": 0.9})) == 0.0, "another animal is not a cat"
    person = matcher.referents("anyone")
    assert matcher.score(person, Perceived(face=0.8)) == 1.0, "a face is a person"
    assert matcher.score(person, Perceived()) == 0.0
    speech = matcher.referents("voice")
    assert matcher.score(speech, Perceived(speech=0.3)) == pytest.approx(0.3)
    alarm = matcher.referents("siren")
    assert matcher.score(alarm, Perceived(sounds={"alarm": 0.7, "tone": 0.2})) == pytest.approx(0.7)
    nothing = matcher.referents("mark this moment")
    assert matcher.score(nothing, Perceived(objects={"cat": 1.0}, face=1.0, speech=1.0)) == 0.0


def test_perceived_reads_a_tick() -> None:
    now = perceived(objects=[("cat", 0.3), ("cat", 0.6), ("person", 0.5)], faces=[0.7, 0.9], speech_prob=0.2,
                    in_speech=True, sounds={"alarm": 0.1}, scene_top=[("tabby", 0.25)])
    assert now.objects == {"cat": 0.6, "person": 0.5}
    assert now.face == 0.9 and now.speech == 1.0, "inside the VAD's speech segment speech is sure"
    assert perceived(objects=[], faces=[], speech_prob=None, in_speech=False, sounds=None, scene_top=None) == Perceived()


def test_referents_are_cached_and_bounded(matcher: QueryMatcher) -> None:
    calls = []
    counting = QueryMatcher(lambda texts: (calls.append(texts), embed(texts))[1], object_classes=["cat"])
    calls.clear()
    counting.referents("cat")
    counting.referents("cat")
    assert len(calls) == 1
    counting.referents("dog", embed(["dog"])[0])  # a caller's vector: no embedding
    assert len(calls) == 1
    for i in range(300):
        counting.referents(f"query {i}", embed(["x"])[0])
    assert len(counting._cache) <= 256


def test_cancel_lines() -> None:
    assert cancel_target("Cancel") == ALL
    assert cancel_target(" stop all! ") == ALL
    assert cancel_target("never mind") == ALL
    assert cancel_target("cancel Is there a cat?") == "is there a cat"
    assert cancel_target("stop the car") == "the car"
    assert cancel_target("is there a cat?") is None
    assert cancel_target("stopwatch") is None


def test_queries_live_until_their_ttl() -> None:
    q = ActiveQueries(ttl_ns=2 * S)
    q.offer(0, "text:0", "is there a cat?")
    q.offer(S, "text:0", "is there a cat?")  # the aligner repeats the line: not a new query
    assert [x.since_ns for x in q.live(S)] == [0]
    q.offer(S, "text:1", "anyone talking?")
    assert [x.key for x in q.live(S)] == ["text:0", "text:1"], "queries live side by side"
    assert [x.key for x in q.live(2 * S)] == ["text:1"]
    assert q.live(3 * S) == []


def test_queries_live_until_cancelled() -> None:
    ref = Ref("text/in", 0, 0, "text")
    q = ActiveQueries(ttl_ns=0)
    q.offer(0, "text:0", "is there a cat?", ref)
    q.offer(S, "text:1", "anyone talking?")
    assert len(q.live(3600 * S)) == 2, "ttl 0: no end by time"
    assert q.live(0)[0].ref == ref
    q.offer(2 * S, "text:2", "cancel IS THERE A CAT")
    assert [x.text for x in q.live(2 * S)] == ["anyone talking?"]
    q.offer(3 * S, "text:3", "stop a giraffe")  # cancels nothing, and is no query
    assert [x.text for x in q.live(3 * S)] == ["anyone talking?"]
    q.offer(4 * S, "text:4", "stop")
    assert q.live(4 * S) == []


def test_a_query_is_scored_from_its_delay_after_its_line() -> None:
    q = ActiveQueries(ttl_ns=3 * S, delay_ns=S // 2)
    q.offer(S // 10, "text:0", "is there a cat?")  # the tick that carried it is later than its line
    assert q.live(S // 2) == []
    assert [x.key for x in q.live(S // 2 + S // 10)] == ["text:0"]
    assert q.live(3 * S + S // 10) == [], "the ttl counts from the line"
    q.offer(4 * S, "text:1", "anyone talking?")
    q.offer(5 * S, "text:2", "cancel")
    q.offer(5 * S + 1, "text:3", "is there a dog?")  # asked after the cancel: not cancelled
    assert [x.key for x in q.live(5 * S + S // 2 - 1)] == ["text:1"], "a cancel acts after the same delay"
    assert [x.key for x in q.live(5 * S + S // 2 + 1)] == ["text:3"]


def test_at_most_capacity_queries_live() -> None:
    q = ActiveQueries(ttl_ns=0, capacity=2)
    for i in range(3):
        q.offer(i, f"text:{i}", f"query {i}")
    assert [x.key for x in q.live(3)] == ["text:1", "text:2"], "a new query ends the oldest"
    with pytest.raises(ValueError):
        ActiveQueries(ttl_ns=-1)
    with pytest.raises(ValueError):
        ActiveQueries(ttl_ns=0, delay_ns=-1)
