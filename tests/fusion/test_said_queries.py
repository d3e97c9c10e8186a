"""Queries about words (perception.queries `said_phrase`, perception.said): which queries are
about what was said, what phrase they ask for, when a heard line holds it, and how long a
heard line counts. No model: the toy text space of test_query_matcher."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sensorfuse.perception.queries import Perceived, QueryMatcher, perceived, said_phrase
from sensorfuse.perception.said import HeardLines, content_words, stem

from toy_text import embed

pytestmark = pytest.mark.timeout(30)
S = 1_000_000_000
PARAPHRASES = Path(__file__).resolve().parents[1] / "data" / "queries" / "paraphrases.json"


@pytest.mark.parametrize(("query", "phrase"), [
    ("did anyone say hello?", "hello"),
    ("Has someone mentioned coffee", "coffee"),
    ("tell me when someone says stop", "stop"),
    ("was the word rocket spoken", "rocket"),
    ("did they talk about the weather", "the weather"),
    ("did someone say the word banana?", "banana"),
    ('did somebody say "good morning"?', "good morning"),
    ("was rocket mentioned?", "rocket"),
    ("has the launch been mentioned yet", "the launch"),
    ("is someone talking about the launch", "the launch"),
    ("did anyone bring up the weather", "the weather"),
    ("who said hello", "hello"),
    ("was the phrase good morning said aloud", "good morning"),
])
def test_a_query_about_words_asks_for_a_phrase(query: str, phrase: str) -> None:
    assert said_phrase(query) == phrase


@pytest.mark.parametrize("query", [
    "is anyone talking?", "who is speaking?", "did anyone say anything?", "what did they say?",
    "is someone saying something", "can you hear somebody speak", "do you hear anyone chatting",
    "is there a cat?", "stop", "cancel is anyone talking"])
def test_a_query_about_speech_or_things_is_not_about_words(query: str) -> None:
    assert said_phrase(query) is None


def test_no_paraphrase_of_the_query_set_is_taken_for_a_query_about_words() -> None:
    """Those queries score as before the `said` concept existed (their meanings are things and speech)."""
    queries = json.loads(PARAPHRASES.read_text())["queries"]
    assert [q["text"] for q in queries if said_phrase(q["text"]) is not None] == []


def test_words_are_compared_without_case_punctuation_plurals_or_inflections() -> None:
    assert {stem(w) for w in ("flowers", "flower")} == {"flower"}
    assert {stem(w) for w in ("launch", "launches", "launched", "launching")} == {"launch"}
    assert {stem(w) for w in ("stop", "stops", "stopped", "stopping")} == {"stop"}
    assert {stem(w) for w in ("open", "opened", "opening", "opens")} == {"open"}
    assert stem("class") == "class" and stem("bus") == "bus", "not plurals"
    assert content_words("The ROCKET'S launch, at noon!") == {"rocket", "launch", "noon"}
    assert content_words("the") == frozenset()


@pytest.fixture(scope="module")
def matcher() -> QueryMatcher:
    return QueryMatcher(embed, object_classes=["person", "cat"])


def test_a_phrase_is_present_when_a_heard_line_holds_all_its_words(matcher: QueryMatcher) -> None:
    heard = Perceived(heard=("Good morning, everyone.", "The rocket launch is at noon."))
    assert matcher.referents("did anyone say good morning?").concepts == ("said:good morning",)
    assert matcher.score(matcher.referents("did anyone say good morning?"), heard) == 1.0
    assert matcher.score(matcher.referents("did they talk about rockets"), heard) == 1.0, "a plural"
    assert matcher.score(matcher.referents("has anyone mentioned the launches"), heard) == 1.0
    assert matcher.score(matcher.referents("did someone say good night"), heard) == 0.0, "not every word"
    assert matcher.score(matcher.referents("did anyone say noon morning"), heard) == 0.0, "words of two lines"
    assert matcher.score(matcher.referents("did anyone say hello"), heard) == 0.0
    assert matcher.score(matcher.referents("did anyone say hello"), Perceived(speech=1.0, face=1.0)) == 0.0
    assert matcher.score(matcher.referents("did anyone say good morning?"), Perceived()) == 0.0, "nothing heard"


def test_speech_queries_do_not_read_the_words(matcher: QueryMatcher) -> None:
    talking = matcher.referents("is anyone talking?")
    assert talking.concepts == ("speech",)
    assert matcher.score(talking, Perceived(heard=("is anyone talking",))) == 0.0
    assert matcher.score(talking, Perceived(speech=1.0)) == 1.0


def test_a_topic_counts_only_with_a_similarity_fallback() -> None:
    strict = QueryMatcher(embed, object_classes=["cat"])
    topical = QueryMatcher(embed, object_classes=["cat"], said_similarity=0.35)  # toy cosine 1/sqrt(6) = 0.41
    heard = Perceived(heard=("weather sunny warm",))  # shares one of its words with the phrase
    assert strict.score(strict.referents("did they talk about the weather forecast"), heard) == 0.0
    assert topical.score(topical.referents("did they talk about the weather forecast"), heard) == 1.0
    assert topical.score(topical.referents("did anyone say banana"), heard) == 0.0


def test_perceived_carries_the_heard_lines() -> None:
    now = perceived(objects=[], faces=[], speech_prob=None, in_speech=False, sounds=None, scene_top=None,
                    heard=["hello there"])
    assert now.heard == ("hello there",)


def test_a_heard_line_counts_from_its_delay_until_its_window() -> None:
    heard = HeardLines(window_ns=30 * S, delay_ns=2 * S)
    assert heard.add(10 * S, "hello there", scored_until_ns=9 * S) is False
    assert heard.at(11 * S) == (), "not before end + delay"
    assert heard.at(12 * S) == ("hello there",)
    assert heard.at(39 * S) == ("hello there",)
    assert heard.at(40 * S) == (), "window over"
    heard.add(41 * S, "good morning", scored_until_ns=None)
    assert heard.at(43 * S) == ("good morning",)
    assert heard.received == 2 and heard.late == 0


def test_a_late_line_is_counted_and_used_from_then_on() -> None:
    heard = HeardLines(window_ns=30 * S, delay_ns=2 * S)
    assert heard.add(10 * S, "on time", scored_until_ns=11 * S) is False, "a tick before end + delay"
    assert heard.add(10 * S, "late", scored_until_ns=12 * S) is True, "the tick at end + delay was scored"
    assert heard.late == 1
    assert heard.at(12 * S + 1) == ("on time", "late")


def test_the_memory_is_bounded() -> None:
    heard = HeardLines(window_ns=30 * S, delay_ns=0, capacity=3)
    for i in range(4):
        heard.add(i * S, f"line {i}", scored_until_ns=None)
    assert heard.evicted == 1 and heard.at(4 * S) == ("line 1", "line 2", "line 3")
    heard.add(100 * S, "much later", scored_until_ns=100 * S)  # the others' windows ended: forgotten, not evicted
    assert heard.evicted == 1
    with pytest.raises(ValueError):
        HeardLines(window_ns=S, delay_ns=S)
