"""Train vs held-out vs held-out varied: how much of the event accuracy is the sessions the head was fit on, and how much is what they look and sound like?

    .venv/bin/python bench/generalisation.py [--sessions 8] [--splits train heldout varied]
        [--ablate AXIS ...] [--cache DIR] [--json OUT]

Generated sessions (docs/replay.md, `sample.split_of`): *train* seeds 0.. are sessions the
shipped fusion head was trained on, exactly (its manifest: seeds 0–29, 20 s each; a
session depends on its seed and length); *held-out* seeds from `HELDOUT_FIRST` draw media
it never saw (and seeds no training or head selection used); *varied* are the same
held-out seeds with `sample.generate(..., vary=True)` (`sensorfuse sample --vary`:
lighting, sizes, insets, camera, voices and a third face; `replay/sample_vary.py`), so
held-out vs varied is a paired comparison: same script, same media, seen and heard
differently. `--ablate lighting sizes` adds one split per axis (the held-out seeds with
that axis only; its values are the ones the all-axes session draws).

Each session goes through the perceive node in-process, as the demo graph feeds it
(`nodes/perceive_offline.py`), and its events are scored against the session's labels
with the demo's rules (`demo_report.score_events`). Prints precision and recall per event
type and split, and the gaps (train − held-out, held-out − varied; per axis with
`--ablate`). About 20 s per 20 s session on an idle core of a 2-core machine, 28 s with
the other core busy: the default 8 sessions × 3 splits took 671 s (11 minutes) there;
each `--ablate` axis adds 8 sessions (split the axes over runs to stay near 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sensorfuse.nodes import demo, demo_report, perceive_offline
from sensorfuse.replay import sample, sample_vary

HELDOUT_FIRST = 1_000_200  # held-out media; no test, training run or head selection uses these seeds
SPLITS = ("train", "heldout", "varied")


def split_scores(seeds: list[int], duration_s: float, cache: Path | None, work: Path,
                 vary: frozenset[str] = frozenset()) -> dict[str, list[int]]:
    """event type -> [events, correct, truths, found] summed over the sessions."""
    totals: dict[str, list[int]] = {}
    for seed in seeds:
        path = work / f"s{seed}.mcap"
        sample.generate(path, seed=seed, duration_s=duration_s, vary=vary)
        events = perceive_offline.perceive_session(path, cache).get("perceive/events", [])
        labels, boxes, texts = demo.read_truth(path)
        for etype, s in demo_report.score_events(events, labels, boxes, texts).items():
            acc = totals.setdefault(etype, [0, 0, 0, 0])
            for i, v in enumerate((s.events, s.correct, s.truths, s.found)):
                acc[i] += v
        path.unlink()
        print(f"seed {seed}{' varied ' + ','.join(sorted(vary)) if vary else ''} done", file=sys.stderr, flush=True)
    return totals


def pr(acc: list[int]) -> tuple[float | None, float | None]:
    events, correct, truths, found = acc
    return (correct / events if events else None), (found / truths if truths else None)


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def gap(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a - b:+.2f}"


def plan(splits: list[str], ablate: list[str], sessions: int) -> dict[str, tuple[list[int], frozenset[str]]]:
    """split name -> (seeds, varied axes)."""
    heldout = list(range(HELDOUT_FIRST, HELDOUT_FIRST + sessions))
    out: dict[str, tuple[list[int], frozenset[str]]] = {}
    for split in splits:
        out[split] = (list(range(sessions)), frozenset()) if split == "train" else \
            (heldout, frozenset(sample_vary.AXES) if split == "varied" else frozenset())
    for axis in ablate:
        out[f"varied:{axis}"] = (heldout, sample_vary.parse_axes(axis))
    assert all(sample.split_of(s) == ("train" if name == "train" else "heldout")
               for name, (ss, _) in out.items() for s in ss)
    return out


def table(totals: dict[str, dict[str, list[int]]]) -> list[str]:
    """A Markdown table, one row per event type: P and R (truths) per split, then the gaps
    between neighbours (train − held-out; held-out − each varied split)."""
    names = list(totals)
    pairs = [(a, b) for a, b in zip(names, names[1:]) if a == "train"] + \
        [("heldout", n) for n in names if n.startswith("varied") and "heldout" in totals]
    head = ["event", *(f"{n} {c}" for n in names for c in ("P", "R (truths)")),
            *(f"{a} − {b} {c}" for a, b in pairs for c in ("P", "R"))]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for etype in demo_report.EVENT_TYPES:
        accs = {n: totals[n].get(etype, [0] * 4) for n in names}
        cells = [etype]
        for n in names:
            p, r = pr(accs[n])
            cells += [fmt(p), f"{fmt(r)} ({accs[n][2]})"]
        for a, b in pairs:
            (pa, ra), (pb, rb) = pr(accs[a]), pr(accs[b])
            cells += [gap(pa, pb), gap(ra, rb)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=8, help="sessions per split")
    ap.add_argument("--duration", type=float, default=20.0, help="20: the training sessions' length")
    ap.add_argument("--splits", nargs="*", default=list(SPLITS), choices=SPLITS,
                    help="train, heldout, varied (held-out seeds, every axis of --vary); default all three")
    ap.add_argument("--ablate", nargs="*", default=[], choices=sample_vary.AXES, metavar="AXIS",
                    help=f"add a split per axis: the held-out seeds varied by that axis only ({', '.join(sample_vary.AXES)})")
    ap.add_argument("--cache", type=Path, default=None, help="model pack directory (default: the user cache)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    runs = plan(args.splits, args.ablate, args.sessions)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        totals = {name: split_scores(seeds, args.duration, args.cache, Path(tmp), vary)
                  for name, (seeds, vary) in runs.items()}
    print("\n".join(table(totals)))
    print(f"{sum(len(s) for s, _ in runs.values())} sessions in {time.monotonic() - started:.0f} s")
    if args.json:
        out: dict[str, Any] = {name: {"seeds": seeds, "vary": sorted(vary), "scores": totals[name]}
                               for name, (seeds, vary) in runs.items()}
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
