"""Train vs held-out: how much of the event accuracy is the sessions the head was fit on?

    .venv/bin/python bench/generalisation.py [--sessions 8] [--cache DIR] [--json OUT]

Generated sessions of both media splits (docs/replay.md, `sample.split_of`): *train*
seeds 0.. are sessions the shipped fusion head was trained on, exactly (its manifest:
seeds 0–29, 20 s each; a session depends on its seed and length); *held-out* seeds
from `HELDOUT_FIRST` draw media it never saw (and seeds no training or head selection
used). Each session goes through the perceive node in-process, as the demo graph feeds it
(`nodes/perceive_offline.py`), and its events are scored against the session's labels
with the demo's rules (`demo_report.score_events`). Prints precision and recall per event
type and split, and the gap (train − held-out).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from sensorfuse.nodes import demo, demo_report, perceive_offline
from sensorfuse.replay import sample

HELDOUT_FIRST = 1_000_200  # held-out media; no test, training run or head selection uses these seeds


def split_scores(seeds: list[int], duration_s: float, cache: Path | None, work: Path) -> dict[str, list[int]]:
    """event type -> [events, correct, truths, found] summed over the sessions."""
    totals: dict[str, list[int]] = {}
    for seed in seeds:
        path = work / f"s{seed}.mcap"
        sample.generate(path, seed=seed, duration_s=duration_s)
        events = perceive_offline.perceive_session(path, cache).get("perceive/events", [])
        labels, boxes, texts = demo.read_truth(path)
        for etype, s in demo_report.score_events(events, labels, boxes, texts).items():
            acc = totals.setdefault(etype, [0, 0, 0, 0])
            for i, v in enumerate((s.events, s.correct, s.truths, s.found)):
                acc[i] += v
        path.unlink()
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    return totals


def pr(acc: list[int]) -> tuple[float | None, float | None]:
    events, correct, truths, found = acc
    return (correct / events if events else None), (found / truths if truths else None)


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=8, help="sessions per split")
    ap.add_argument("--duration", type=float, default=20.0, help="20: the training sessions' length")
    ap.add_argument("--cache", type=Path, default=None, help="model pack directory (default: the user cache)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    seeds = {"train": list(range(args.sessions)),
             "heldout": list(range(HELDOUT_FIRST, HELDOUT_FIRST + args.sessions))}
    assert all(sample.split_of(s) == split for split, ss in seeds.items() for s in ss)
    with tempfile.TemporaryDirectory() as tmp:
        totals = {split: split_scores(ss, args.duration, args.cache, Path(tmp)) for split, ss in seeds.items()}
    print(f"{'event':<17} {'train P':>8} {'R':>5} {'(truths)':>8}   {'held-out P':>10} {'R':>5} {'(truths)':>8}"
          f"   {'gap P':>6} {'gap R':>6}")
    out: dict[str, Any] = {}
    for etype in demo_report.EVENT_TYPES:
        tr, ho = totals["train"].get(etype, [0] * 4), totals["heldout"].get(etype, [0] * 4)
        (tp, trr), (hp, hr) = pr(tr), pr(ho)
        gap = [None if a is None or b is None else a - b for a, b in ((tp, hp), (trr, hr))]
        print(f"{etype:<17} {fmt(tp):>8} {fmt(trr):>5} {tr[2]:>8}   {fmt(hp):>10} {fmt(hr):>5} {ho[2]:>8}"
              f"   {fmt(gap[0]):>6} {fmt(gap[1]):>6}")
        out[etype] = {"train": tr, "heldout": ho}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
