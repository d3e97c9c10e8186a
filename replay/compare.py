"""Compare two runs' events: exact on everything a machine cannot change, scores and
boxes within a tolerance.

Event time, order, type, phase, id, key, start/end, provenance and modalities come from
event-time logic and integer stamps, so two runs of one log agree on them on any machine.
Scores and face boxes come out of onnxruntime kernels, which differ by CPU instruction set
(AVX2 vs AVX-512 VNNI int8 paths, FMA contraction): measured deltas and the tolerances
chosen from them are in docs/fusion.md ("Scores across machines"). `bench/kernel_drift.py`
re-measures them.

    problems = diff_events(got, golden)          # [] when they agree
    problems = diff_events(got, golden, exact=True)  # bit for bit (same machine)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: Record fields that are model outputs (compared within SCORE_TOL); everything else exact.
SCORE_FIELDS = ("score", "peak_score")
#: Largest score delta accepted between machines: 2x the largest delta measured between
#: kernels (0.0142: onnxruntime graph optimization levels on one machine; 0.0116 between an
#: AVX2 and an AVX-512 VNNI machine), both on query.match, whose inputs pass through the
#: int8 dynamic text encoder; other scores moved by 0.0001. Changing a model moves scores
#: further (docs/fusion.md, "Scores across machines").
SCORE_TOL = 0.03
#: Per-tick score noise the demo's events are shown to survive unchanged
#: (tests/fusion/test_event_margins.py); events are exact in the comparison, so a machine
#: whose scores move more than this near a threshold may fail the golden test on an event.
EVENT_MARGIN = 0.003
#: Face box coordinates (pixels, rounded to 0.1) accepted between machines: ~3x the largest
#: cross-ISA delta measured (1.1 px; other kernels on one machine: 0.3 px).
BOX_TOL_PX = 3.0


def _close(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tol
    return False


def _diff_record(got: Mapping[str, Any], want: Mapping[str, Any], score_tol: float, box_tol: float,
                 exact: bool) -> list[str]:
    problems = []
    for key in sorted(set(got) | set(want)):
        g, w = got.get(key), want.get(key)
        if exact or key not in (*SCORE_FIELDS, "subject"):
            if g != w:
                problems.append(f"{key}: {g!r} != {w!r}")
        elif key in SCORE_FIELDS:
            if not _close(g, w, score_tol):
                problems.append(f"{key}: {g!r} vs {w!r} (tolerance {score_tol})")
        else:  # subject: exact but for the box
            g_sub, w_sub = dict(g or {}), dict(w or {})
            g_box, w_box = g_sub.pop("box", None), w_sub.pop("box", None)
            if g_sub != w_sub:
                problems.append(f"subject: {g!r} != {w!r}")
            elif (g_box is None) != (w_box is None) or (g_box is not None and (
                    len(g_box) != len(w_box) or not all(_close(a, b, box_tol) for a, b in zip(g_box, w_box)))):
                problems.append(f"subject.box: {g_box} vs {w_box} (tolerance {box_tol} px)")
    return problems


def diff_events(got: Sequence[Mapping[str, Any]], want: Sequence[Mapping[str, Any]], *,
                score_tol: float = SCORE_TOL, box_tol: float = BOX_TOL_PX, exact: bool = False) -> list[str]:
    """Differences between two event streams (JSONL sink lines or bare event records).

    Envelope fields are compared exactly; in the event record, `score`/`peak_score` within
    `score_tol` and the subject's `box` within `box_tol` pixels, unless `exact`. Returns one
    line per difference, [] when the streams agree.
    """
    problems = []
    for i, (g, w) in enumerate(zip(got, want)):
        envelope_g = {k: v for k, v in g.items() if k != "record"} if "record" in g else {}
        envelope_w = {k: v for k, v in w.items() if k != "record"} if "record" in w else {}
        if envelope_g != envelope_w:
            problems.append(f"event {i}: envelope {envelope_g} != {envelope_w}")
        g_rec, w_rec = g.get("record", g), w.get("record", w)
        what = f"{w_rec.get('type')} {w_rec.get('phase')} {w_rec.get('key')} @{w_rec.get('t_ns')}"
        problems.extend(f"event {i} ({what}): {p}" for p in _diff_record(g_rec, w_rec, score_tol, box_tol, exact))
    if len(got) != len(want):
        extra = got[len(want):] or want[len(got):]
        which = "got" if len(got) > len(want) else "reference"
        first = extra[0].get("record", extra[0])
        problems.append(f"{len(got)} events, reference has {len(want)}; first extra in {which}: "
                        f"{first.get('type')} {first.get('phase')} {first.get('key')} @{first.get('t_ns')}")
    return problems


def max_score_delta(got: Sequence[Mapping[str, Any]], want: Sequence[Mapping[str, Any]]) -> float:
    """Largest |score| or |peak_score| difference between paired events (0.0 if none)."""
    deltas = [abs(g.get("record", g)[f] - w.get("record", w)[f])
              for g, w in zip(got, want) for f in SCORE_FIELDS
              if f in g.get("record", g) and f in w.get("record", w)]
    return max(deltas, default=0.0)


def max_box_delta(got: Sequence[Mapping[str, Any]], want: Sequence[Mapping[str, Any]]) -> float:
    """Largest face-box coordinate difference (pixels) between paired events (0.0 if none)."""
    deltas = []
    for g, w in zip(got, want):
        g_box = (g.get("record", g).get("subject") or {}).get("box")
        w_box = (w.get("record", w).get("subject") or {}).get("box")
        if g_box and w_box and len(g_box) == len(w_box):
            deltas.extend(abs(a - b) for a, b in zip(g_box, w_box))
    return max(deltas, default=0.0)
