"""Event comparison across machines (sensorfuse.replay.compare), on the approved golden
events: scores moved within the tolerance still match; an event added, removed or shifted
by one tick, a changed provenance, or a score moved past the tolerance does not."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest

from sensorfuse.replay.compare import BOX_TOL_PX, SCORE_TOL, diff_events, max_box_delta, max_score_delta

GOLDEN = Path(__file__).parents[1] / "fusion" / "data" / "golden_events.jsonl"
TICK_NS = 66_666_667  # one tick of the demo graph (15 fps)


@pytest.fixture
def golden() -> list[dict[str, Any]]:
    return [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]


def perturbed(events: list[dict[str, Any]], amount: float, box_px: float, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = copy.deepcopy(events)
    for e in out:
        rec = e["record"]
        for field in ("score", "peak_score"):
            rec[field] = round(rec[field] + rng.choice((-1, 1)) * amount, 4)
        if "box" in rec["subject"]:
            rec["subject"]["box"] = [round(v + rng.uniform(-box_px, box_px), 1) for v in rec["subject"]["box"]]
    return out


@pytest.mark.parametrize("seed", range(5))
def test_scores_and_boxes_within_tolerance_match(golden: list[dict[str, Any]], seed: int) -> None:
    moved = perturbed(golden, 0.9 * SCORE_TOL, 0.9 * BOX_TOL_PX, seed)
    assert diff_events(moved, golden) == []
    assert 0.8 * SCORE_TOL < max_score_delta(moved, golden) <= SCORE_TOL + 1e-9
    assert max_box_delta(moved, golden) <= BOX_TOL_PX
    assert diff_events(moved, golden, exact=True), "exact comparison sees the perturbation"


def test_the_measured_cross_isa_delta_matches(golden: list[dict[str, Any]]) -> None:
    """The four scores seen on an AVX-512 VNNI machine against this AVX2-approved file."""
    moved = copy.deepcopy(golden)
    seen = {("query.match", "start", 4_600_000_000): (0.6228, 0.6255),
            ("query.match", "end", 5_600_000_000): (0.0598, None),
            ("speaker.active", "update", 4_733_333_333): (0.6840, None),
            ("speech.offscreen", "start", 15_866_666_667): (0.7063, None)}
    for e in moved:
        rec = e["record"]
        found = seen.get((rec["type"], rec["phase"], rec["t_ns"]))
        if found:
            rec["score"] = found[0]
            rec["peak_score"] = found[1] if found[1] is not None else rec["peak_score"]
    assert diff_events(moved, golden) == []
    assert max_score_delta(moved, golden) == pytest.approx(0.0116, abs=1e-4)


def test_a_score_past_the_tolerance_is_reported(golden: list[dict[str, Any]]) -> None:
    moved = copy.deepcopy(golden)
    moved[4]["record"]["score"] += SCORE_TOL + 0.01
    problems = diff_events(moved, golden)
    assert len(problems) == 1 and "score" in problems[0] and "event 4" in problems[0]


def test_an_added_event_is_reported(golden: list[dict[str, Any]]) -> None:
    extra = copy.deepcopy(golden[3])
    extra["record"]["phase"] = "update"
    problems = diff_events([*golden[:4], extra, *golden[4:]], golden)
    assert problems and any("events, reference has" in p for p in problems)


def test_a_removed_event_is_reported(golden: list[dict[str, Any]]) -> None:
    problems = diff_events(golden[:5] + golden[6:], golden)
    assert problems and any(f"{len(golden) - 1} events, reference has {len(golden)}" in p for p in problems)
    assert diff_events(golden[:-1], golden)  # even the last one


def test_an_event_shifted_by_one_tick_is_reported(golden: list[dict[str, Any]]) -> None:
    moved = copy.deepcopy(golden)
    moved[3]["t_ns"] += TICK_NS
    moved[3]["record"]["t_ns"] += TICK_NS
    problems = diff_events(moved, golden)
    assert problems and all("event 3" in p for p in problems)
    start_moved = copy.deepcopy(golden)
    start_moved[3]["record"]["start_ns"] -= TICK_NS
    assert diff_events(start_moved, golden)


def test_structure_is_exact(golden: list[dict[str, Any]]) -> None:
    for change in ("provenance", "modalities", "key", "event_id", "subject"):
        moved = copy.deepcopy(golden)
        rec = moved[5]["record"]
        if change == "provenance":
            rec["provenance"][0]["seq"] += 1
        elif change == "modalities":
            rec["modalities"] = rec["modalities"][:1]
        elif change == "subject":
            rec["subject"]["track_id"] += 1
        else:
            rec[change] += "x"
        assert diff_events(moved, golden), change


def test_boxes_past_the_tolerance_are_reported(golden: list[dict[str, Any]]) -> None:
    moved = copy.deepcopy(golden)
    with_box = next(e for e in moved if "box" in e["record"]["subject"])
    with_box["record"]["subject"]["box"][0] += BOX_TOL_PX + 0.5
    assert any("subject.box" in p for p in diff_events(moved, golden))


def test_non_finite_scores_never_match(golden: list[dict[str, Any]]) -> None:
    moved = copy.deepcopy(golden)
    moved[0]["record"]["score"] = float("nan")
    assert diff_events(moved, golden)
