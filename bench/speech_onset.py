"""How long after a voice starts do the fused speech events say so? Onset delays, measured.

    .venv/bin/python bench/speech_onset.py [--sessions 6] [--duration 30] [--first-seed N] [--cache DIR] [--json OUT]

Generated sessions (held-out media, seeds from `FIRST_SEED`, none used by the tests or by
training) go through the perceive node in-process exactly as the demo graph feeds it
(`dataset.aligned_inputs`: the demo aligner's ticks and frames; the node's own code, no
sockets). For every true speech interval (`speaker_visible` → `speaker.active`,
`offscreen_speech` → `speech.offscreen`) that an event found (demo_report's matching):

- `vad`: first tick at or after the true onset whose VAD says speech (`in_speech`) − onset;
- `start`: the event's `start_ns` − onset (when the event says the speech began);
- `emitted`: the tick that emitted the `start` − onset (when a consumer learns of it).

Prints per event type the distributions (p50 / p90 / max ms), precision and recall.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sensorfuse.nodes import demo, demo_report, perceive_offline
from sensorfuse.replay import sample

FIRST_SEED = 1_000_100
TYPES = {"speaker.active": "speaker_visible", "speech.offscreen": "offscreen_speech"}


def perceive(session: Path, cache: Path | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(event records, speech records) of the perceive node over a session."""
    out = perceive_offline.perceive_session(session, cache)
    return out.get("perceive/events", []), [{**r, "t_ns": r["_t_ns"]} for r in out.get("perceive/speech", [])]


def onset_delays(events: list[dict[str, Any]], speech: list[dict[str, Any]],
                 labels: list[dict[str, Any]], etype: str) -> list[dict[str, float]]:
    """Per true interval found by a start event of `etype`: vad / start / emitted delays (ms)."""
    truths = [r for r in labels if r["label"] == TYPES[etype]]
    starts = [e for e in events if e["type"] == etype and e["phase"] == "start"]
    speech_on = [s["t_ns"] for s in speech if s.get("in_speech")]
    rows = []
    for r in truths:
        hit = next((e for e in starts if r["start_ns"] - demo_report.SLACK_NS <= e["start_ns"] < r["end_ns"]), None)
        if hit is None:
            continue
        vad = next((t for t in speech_on if t >= r["start_ns"]), None)
        rows.append({"vad": (vad - r["start_ns"]) / 1e6 if vad is not None and vad < r["end_ns"] else float("nan"),
                     "start": (hit["start_ns"] - r["start_ns"]) / 1e6,
                     "emitted": (hit["t_ns"] - r["start_ns"]) / 1e6})
    return rows


def summary(values: list[float]) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)])
    if not v.size:
        return "-"
    return f"{np.percentile(v, 50):.0f} / {np.percentile(v, 90):.0f} / {v.max():.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--first-seed", type=int, default=FIRST_SEED, help="seed of the first session")
    ap.add_argument("--cache", type=Path, default=None, help="model pack directory (default: the user cache)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    rows: dict[str, list[dict[str, float]]] = {t: [] for t in TYPES}
    scores: dict[str, list[demo_report.Score]] = {t: [] for t in TYPES}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.sessions):
            path = Path(tmp) / f"s{i}.mcap"
            sample.generate(path, seed=args.first_seed + i, duration_s=args.duration)
            events, speech = perceive(path, args.cache)
            labels, boxes, texts = demo.read_truth(path)
            s = demo_report.score_events(events, labels, boxes, texts)
            for t in TYPES:
                rows[t] += onset_delays(events, speech, labels, t)
                scores[t].append(s[t])
            print(f"session {i + 1}/{args.sessions} done", file=sys.stderr, flush=True)
    print("onset delay ms as p50 / p90 / max")
    print(f"{'event':<17} {'found':>7} {'P':>5} {'R':>5} {'vad':>16} {'start':>16} {'emitted':>16}")
    out = {}
    for t in TYPES:
        events = sum(s.events for s in scores[t])
        correct = sum(s.correct for s in scores[t])
        truths, found = sum(s.truths for s in scores[t]), sum(s.found for s in scores[t])
        p, r = correct / events if events else 0.0, found / truths if truths else 0.0
        cols = {k: summary([row[k] for row in rows[t]]) for k in ("vad", "start", "emitted")}
        print(f"{t:<17} {found:>3}/{truths:<3} {p:5.2f} {r:5.2f} {cols['vad']:>16} {cols['start']:>16} "
              f"{cols['emitted']:>16}")
        out[t] = {"precision": p, "recall": r, "found": found, "truths": truths, "delays_ms": rows[t]}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
