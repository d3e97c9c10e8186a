"""Hand-written paraphrased queries on recorded perceive states: P/R of the label-space
matcher (docs/queries.md). Seconds: the states come from `bench/query_states.py`, not graphs.

The bars are the values measured on the held-out half of the paraphrase set (never used to
choose the matcher's constants) minus a small margin for the text encoder's int8 kernels,
which round differently per CPU (docs/fusion.md, "Scores across machines")."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorfuse.engine.perception import Encoders
from sensorfuse.replay import query_eval

pytestmark = pytest.mark.timeout(120)
DATA = Path(__file__).resolve().parents[1] / "data" / "queries"
MARGIN = 0.03
#: measured (docs/queries.md): (precision, recall)
HELDOUT = {"perceivable": (0.98, 0.79), "all": (0.98, 0.49)}
UNDERSTANDING = {"all": (0.99, 0.79)}  # on perfect perception


@pytest.fixture(scope="module")
def setup(model_cache: Path) -> tuple:
    encoders = Encoders(model_cache)
    return query_eval.matcher_for(encoders, model_cache), query_eval.load_states(DATA / "states.json.gz")


def test_the_paraphrase_set_is_split_and_labelled() -> None:
    queries = query_eval.load_queries(DATA / "paraphrases.json")
    assert {q["split"] for q in queries} == {"tuning", "heldout", "heldout2"}
    assert len(query_eval.load_queries(DATA / "paraphrases.json", "heldout")) >= 45
    assert {q["meaning"] for q in queries} <= set(query_eval.MEANINGS)
    assert len({q["text"] for q in queries}) == len(queries), "no query twice"


def test_held_out_paraphrases(setup: tuple) -> None:
    matcher, states = setup
    queries = query_eval.load_queries(DATA / "paraphrases.json", "heldout")
    now = [[query_eval.perceived_at(t) for t in s["ticks"]] for s in states["sessions"]]
    counts = query_eval.evaluate(states, queries, "heldout", lambda s, t, q: matcher.score(matcher.referents(q),
                                                                                            now[s][t]))
    measured = {"perceivable": query_eval.combined(counts, query_eval.PERCEIVABLE), "all": counts["all"]}
    for name, (precision, recall) in HELDOUT.items():
        assert measured[name].precision >= precision - MARGIN, name
        assert measured[name].recall >= recall - MARGIN, name
    assert counts["nothing"].fp == 0, "commands and things the engine cannot perceive never match"
    assert counts["speech"].recall >= 0.95 and counts["speech"].precision >= 0.95
    oracle = [[query_eval.oracle_at(t) for t in s["ticks"]] for s in states["sessions"]]
    understood = query_eval.evaluate(states, queries, "heldout",
                                     lambda s, t, q: matcher.score(matcher.referents(q), oracle[s][t]))["all"]
    assert understood.precision >= UNDERSTANDING["all"][0] - MARGIN
    assert understood.recall >= UNDERSTANDING["all"][1] - MARGIN


def test_the_reported_queries_now_match(setup: tuple) -> None:
    """Issue 15's two queries, seen at 0.18 and 0.22 relevance: each while its thing is perceived."""
    matcher, _ = setup
    from sensorfuse.engine.perception.queries import Perceived

    assert matcher.score(matcher.referents("is anyone speaking?"), Perceived(speech=1.0)) == 1.0
    assert matcher.score(matcher.referents("is anyone speaking?"), Perceived(face=0.9)) == 0.0
    assert matcher.score(matcher.referents("person holding a camera"), Perceived(objects={"person": 0.8})) == 1.0
