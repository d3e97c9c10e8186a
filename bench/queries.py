"""Precision/recall of text queries on hand-written paraphrases: the label-space matcher vs the head.

    .venv/bin/python bench/query_states.py --heads-out /tmp/qheads --cache DIR   # once (~2 min)
    .venv/bin/python bench/queries.py [--split heldout] [--heads /tmp/qheads] [--cache DIR]

Scores every (query, tick) pair of `tests/data/queries/paraphrases.json`'s `--split` on
the recorded perceive states (`tests/data/queries/states.json.gz`, sessions of the same
split) with `sensorfuse.replay.query_eval`: the label-space matcher
(`sensorfuse.perception.queries`) and, with `--heads`, the fusion head's
`relevance` (the default head, run on the same ticks' recorded inputs with each query).
Prints P/R per meaning and overall (markdown), and per query the ticks it matched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sensorfuse.perception import Encoders, FusionHead
from sensorfuse.nodes.perceive_setup import default_heads_dir, resolve_head
from sensorfuse.replay import query_eval

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "queries"


def head_scores(heads: Path, states: dict, queries: list[dict[str, str]], encoders: Encoders) -> dict:
    """(session index, tick index, text) → the default head's relevance."""
    head = FusionHead(resolve_head("default", default_heads_dir()))
    out = {}
    embeddings = encoders.embed_texts([q["text"] for q in queries])
    for s_i, session in enumerate(states["sessions"]):
        path = heads / f"head_inputs_{session['seed']}.npz"
        if not path.is_file():
            continue
        inputs = dict(np.load(path))
        n = len(inputs["query"])
        for q, emb in zip(queries, embeddings):
            rel = head.run({**inputs, "query": np.repeat(emb[None], n, 0).astype(np.float32),
                            "query_mask": np.ones((n, 1), np.float32)})["relevance"][:, 0]
            for t_i, value in enumerate(rel):
                out[(s_i, t_i, q["text"])] = float(value)
    return out


def table(name: str, counts: dict[str, query_eval.Counts]) -> None:
    print(f"\n{name}\n\n| meaning | P | R | TP | FP | FN |\n|---|---|---|---|---|---|")
    rows = {"perceivable": query_eval.combined(counts, query_eval.PERCEIVABLE), **counts}
    for meaning, c in rows.items():
        print(f"| {meaning} | {c.precision:.2f} | {c.recall:.2f} | {c.tp} | {c.fp} | {c.fn} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", default="heldout", choices=("tuning", "heldout", "heldout2"))
    ap.add_argument("--states", type=Path, default=DATA / "states.json.gz")
    ap.add_argument("--heads", type=Path, default=None, help="head inputs saved by bench/query_states.py")
    ap.add_argument("--cache", type=Path, default=None, help="model pack directory (default: the user cache)")
    ap.add_argument("--per-query", action="store_true", help="also print each query's referents and P/R")
    args = ap.parse_args(argv)
    queries = query_eval.load_queries(DATA / "paraphrases.json", args.split)
    states = query_eval.load_states(args.states)
    encoders = Encoders(args.cache)
    matcher = query_eval.matcher_for(encoders, args.cache)
    now = [[query_eval.perceived_at(t) for t in s["ticks"]] for s in states["sessions"]]

    def labels_score(s_i: int, t_i: int, text: str) -> float:
        return matcher.score(matcher.referents(text), now[s_i][t_i])

    table(f"label-space matcher, {args.split} queries × {args.split} sessions",
          query_eval.evaluate(states, queries, args.split, labels_score))
    truth = [[query_eval.oracle_at(t) for t in s["ticks"]] for s in states["sessions"]]
    table(f"label-space matcher on perfect perception (query understanding alone), {args.split}",
          query_eval.evaluate(states, queries, args.split,
                              lambda s, t, q: matcher.score(matcher.referents(q), truth[s][t])))
    if args.heads:
        rel = head_scores(args.heads, states, queries, encoders)
        table(f"fusion head relevance (before), {args.split}",
              query_eval.evaluate(states, queries, args.split, lambda s, t, q: rel[(s, t, q)]))
    if args.per_query:
        for q in queries:
            c = query_eval.evaluate(states, [q], args.split, labels_score)["all"]
            r = matcher.referents(q["text"])
            print(f"{q['text']!r:45} {q['meaning']:10} P {c.precision:.2f} R {c.recall:.2f} fp {c.fp:3d} "
                  f"fn {c.fn:3d} sim {r.similarity:.2f} {', '.join(r.concepts[:4])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
