"""Queries about what was said ("did anyone say good morning?"): P/R on held-out sessions.

    .venv/bin/python bench/said_queries.py [--seeds 1000300-1000307] [--duration 30] [--dir /tmp/said]

Generates held-out sample sessions (`sensorfuse sample` seeds >= 1000000: held-out voices
and sentences), transcribes them with the real transcribe node (Whisper tiny.en on the
VAD's segments, `sensorfuse.nodes.transcribe_eval`), and scores every (query, tick) pair of
`tests/data/queries/said.json` (hand-written, with the sentences each is true of) every
100 ms of session time. A pair is true when a sentence the query is true of ended within
the heard window before the tick: ``end + heard_delay_ms <= t < end + heard_window_ms``
(perceive's defaults); ticks within `--guard` of either bound are not scored (the
transcript's end is the VAD segment's, padded, not the clip's). Predicted: the label-space
matcher's score >= 0.6 (the `query.match` rule's `on`) given the lines counting at the
tick (`sensorfuse.perception.said.HeardLines`, as in perceive), from two sources: Whisper's
transcripts, and perfect transcripts (the spoken sentences, ending at the clip's end):
query understanding alone. Each with no similarity fallback and with `said_similarity`
thresholds (`--similarity`). Prints markdown tables, per query with `--per-query`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sensorfuse.nodes.perceive import PerceiveNode
from sensorfuse.nodes.transcribe_eval import replay, transcribe_session
from sensorfuse.perception import Encoders
from sensorfuse.perception.queries import Perceived, QueryMatcher
from sensorfuse.perception.said import HeardLines
from sensorfuse.replay import query_eval, sample

QUERIES = Path(__file__).resolve().parents[1] / "tests" / "data" / "queries" / "said.json"
MS = 1_000_000
STEP_NS = 100 * MS
ON = 0.6  # the query.match rule's `on`
KINDS = ("words", "absent", "partial", "speech", "topic")


@dataclass
class Session:
    seed: int
    start_ns: int
    end_ns: int
    spoken: list[tuple[int, str]]  # (clip end, sentence) per speech label
    heard: list[tuple[int, str]]  # (segment end, transcript) per non-empty transcript


def load_session(seed: int, duration_s: float, folder: Path) -> Session:
    path = folder / f"said-{seed}-{duration_s:g}.mcap"
    if not path.is_file():
        sample.generate(path, seed=seed, duration_s=duration_s)
    labels = [m.record for m in replay(path, ["labels"])]
    transcripts_path = path.with_suffix(".transcripts.json")
    if transcripts_path.is_file():
        transcripts = json.loads(transcripts_path.read_text())
    else:
        transcripts, _ = transcribe_session(path)
        transcripts_path.write_text(json.dumps([{"end_ns": r["end_ns"], "text": r["text"]} for r in transcripts]))
    spoken = sorted((r["end_ns"], r["text"]) for r in labels if r["label"] == "speech")
    start = sample.T0_NS
    return Session(seed, start, start + round(duration_s * 1e9), spoken,
                   [(r["end_ns"], r["text"]) for r in transcripts if r["text"]])


def heard_at(lines: list[tuple[int, str]], ticks: list[int], window_ns: int, delay_ns: int) -> list[tuple[str, ...]]:
    """The lines counting at each tick, as perceive's memory gives them (lines arrive in time)."""
    memory = HeardLines(window_ns, delay_ns)
    pending = sorted(lines)
    out = []
    for t in ticks:
        while pending and pending[0][0] <= t:
            memory.add(*pending.pop(0), scored_until_ns=None)
        out.append(memory.at(t))
    return out


def truth_at(query: dict[str, Any], session: Session, t: int, window_ns: int, delay_ns: int,
             guard_ns: int) -> bool | None:
    """True / False, or None near a bound (not scored)."""
    truth = False
    for end, sentence in session.spoken:
        for bound in (end + delay_ns, end + window_ns):
            if abs(t - bound) < guard_ns and sentence in query["said_in"]:
                return None
        truth |= sentence in query["said_in"] and end + delay_ns <= t < end + window_ns
    return truth


def score(matcher: QueryMatcher, sessions: list[Session], queries: list[dict[str, Any]], source: str,
          window_ns: int, delay_ns: int, guard_ns: int) -> dict[str, dict[str, query_eval.Counts]]:
    """kind (and "all") -> query text -> counts."""
    out: dict[str, dict[str, query_eval.Counts]] = {}
    for session in sessions:
        ticks = list(range(session.start_ns, session.end_ns, STEP_NS))
        lines = session.heard if source == "whisper" else session.spoken
        heard = heard_at(lines, ticks, window_ns, delay_ns)
        for query in queries:
            referents = matcher.referents(query["text"])
            counts = out.setdefault(query["kind"], {}).setdefault(query["text"], query_eval.Counts())
            for t, now in zip(ticks, heard):
                truth = truth_at(query, session, t, window_ns, delay_ns, guard_ns)
                if truth is not None:
                    counts.add(truth, matcher.score(referents, Perceived(heard=now)) >= ON)
    return out


def total(by_query: dict[str, query_eval.Counts]) -> query_eval.Counts:
    return query_eval.combined(by_query, tuple(by_query))


def row(name: str, c: query_eval.Counts) -> str:
    precision = f"{c.precision:.2f}" if c.tp + c.fp else "–"
    recall = f"{c.recall:.2f}" if c.tp + c.fn else "–"
    return f"| {name} | {precision} | {recall} | {c.tp} | {c.fp} | {c.fn} |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1000300-1000307", help="first-last held-out seeds")
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/said-bench"), help="sessions and transcripts (reused)")
    ap.add_argument("--cache", type=Path, default=None, help="model pack directory (default: the user cache)")
    ap.add_argument("--similarity", type=float, nargs="*", default=[0.5, 0.6], help="said_similarity thresholds")
    ap.add_argument("--guard-ms", type=float, default=1000.0)
    ap.add_argument("--per-query", action="store_true")
    args = ap.parse_args(argv)
    first, _, last = args.seeds.partition("-")
    seeds = range(int(first), int(last or first) + 1)
    if min(seeds) < sample.HELDOUT_SEED_BASE:
        ap.error(f"held-out seeds are >= {sample.HELDOUT_SEED_BASE}")
    started = time.perf_counter()
    args.dir.mkdir(parents=True, exist_ok=True)
    data = json.loads(QUERIES.read_text())
    queries = data["queries"]
    sessions = [load_session(seed, args.duration, args.dir) for seed in seeds]
    unlabelled = {s for session in sessions for _, s in session.spoken} - set(data["sentences"])
    if unlabelled:  # a sentence no query was labelled against: its truth would be wrong
        print(f"sentences the query set was not labelled for: {sorted(unlabelled)}", file=sys.stderr)
        return 2
    params = PerceiveNode.Params()
    window_ns, delay_ns = round(params.heard_window_ms * MS), round(params.heard_delay_ms * MS)
    encoders = Encoders(args.cache)
    matcher = query_eval.matcher_for(encoders, args.cache)
    spoken = sum(len(s.spoken) for s in sessions)
    print(f"{len(sessions)} sessions of {args.duration:g} s (seeds {args.seeds}), {spoken} sentences spoken, "
          f"{sum(len(s.heard) for s in sessions)} transcripts; {len(queries)} queries; window "
          f"{params.heard_window_ms:g} ms, delay {params.heard_delay_ms:g} ms")
    results = {}
    for similarity in [None, *args.similarity]:
        matcher.said_similarity = similarity
        for source in ("whisper", "perfect"):
            results[(similarity, source)] = score(matcher, sessions, queries, source, window_ns, delay_ns,
                                                  round(args.guard_ms * MS))
    print("\n| transcripts, similarity fallback | queries | P | R | TP | FP | FN |\n|---|---|---|---|---|---|---|")
    for (similarity, source), by_kind in results.items():
        name = f"{source}, {'none' if similarity is None else similarity}"
        everything = total({f"{k}:{q}": c for k, qs in by_kind.items() for q, c in qs.items()})
        words = total({q: c for k in ("words", "absent", "partial", "speech") for q, c in by_kind.get(k, {}).items()})
        print(row(f"{name} | all", everything))
        print(row(f"{name} | without topics", words))
    print("\nno similarity fallback (the default), per kind:\n\n| kind | n | Whisper P / R | perfect transcripts P / R |"
          "\n|---|---|---|---|")
    for kind in KINDS:
        cells = []
        for source in ("whisper", "perfect"):
            c = total(results[(None, source)].get(kind, {}))
            cells.append(f"{c.precision:.2f} / {c.recall:.2f}" if c.tp + c.fn else f"{c.fp} false matches")
        print(f"| {kind} | {sum(1 for q in queries if q['kind'] == kind)} | {cells[0]} | {cells[1]} |")
    if args.per_query:
        for (similarity, source), by_kind in results.items():
            print(f"\n{source}, similarity {similarity}")
            for kind in KINDS:
                for text, c in by_kind.get(kind, {}).items():
                    print(f"  {kind:8} {text!r:48} {' '.join(matcher.referents(text).concepts)[:30]:30} "
                          f"tp {c.tp:4d} fp {c.fp:4d} fn {c.fn:4d}")
        print("\nspoken -> transcribed")
        for session in sessions:
            for end, said in session.spoken:
                near = [h for e, h in session.heard if abs(e - end) < 1_500 * MS]
                print(f"  {session.seed} {end / 1e9:6.2f} s {said!r:34} -> {near}")
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
