"""SceneStage (perception.scene): the scene result enters on event time, whatever the worker's speed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest

from sensorfuse.perception.scene import SceneStage

MS = 1_000_000


@dataclass
class FakeObservation:
    probabilities: np.ndarray
    embedding: np.ndarray


class FakeEncoders:
    """Class probabilities from the frame's mean grey level; optionally held up by a gate."""

    labels = [f"label{i}" for i in range(20)]

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.calls = 0

    def scene_probabilities(self, rgb: np.ndarray) -> FakeObservation:
        self.calls += 1
        if self.gate is not None:
            assert self.gate.wait(5)
        p = np.full(20, 0.01, np.float32)
        p[int(rgb.mean()) % 20] = 1.0
        return FakeObservation(p / p.sum(), np.full(4, rgb.mean(), np.float32))


def frame(value: int) -> np.ndarray:
    return np.full((4, 6, 3), value, np.uint8)


def run(stage: SceneStage, tick_ms: list[int]) -> list[tuple[int, int | None]]:
    """(tick time ms, frame time ms of the scene in use) per tick; one frame per tick."""
    seen = []
    for t in tick_ms:
        stage.advance(t * MS)
        if stage.due(t * MS):
            stage.start(t * MS, frame(t % 20))
        seen.append((t, stage.current.frame_t_ns // MS if stage.current else None))
    return seen


LABELS = np.eye(20, 384, dtype=np.float32)
TICKS = list(range(0, 1400, 50))


def test_result_enters_at_the_first_tick_delay_after_its_frame() -> None:
    stage = SceneStage(FakeEncoders(), LABELS, period_ns=300 * MS, delay_ns=100 * MS)  # type: ignore[arg-type]
    seen = dict(run(stage, TICKS))
    assert seen[50] is None and seen[100] == 0  # frame 0 → in use from tick 100
    assert seen[300] == 0 and seen[400] == 300 and seen[700] == 600
    assert np.linalg.norm(stage.text) == pytest.approx(1.0)


def test_worker_thread_gives_the_same_schedule_as_inline_even_when_slow() -> None:
    inline = run(SceneStage(FakeEncoders(), LABELS, period_ns=300 * MS, delay_ns=100 * MS), TICKS)  # type: ignore[arg-type]
    gate = threading.Event()
    slow = FakeEncoders(gate)
    with ThreadPoolExecutor(max_workers=1) as pool:
        stage = SceneStage(slow, LABELS, period_ns=300 * MS, delay_ns=100 * MS, executor=pool)  # type: ignore[arg-type]
        stage.advance(0)
        stage.start(0, frame(0))
        assert not stage.advance(50 * MS)  # not due yet: the tick does not wait
        threading.Timer(0.2, gate.set).start()
        assert stage.advance(100 * MS)  # due: waits for the worker, then takes its result
        rest = run(stage, TICKS[3:])
    assert [(t, f) for t, f in inline if t >= 150] == rest


def test_delay_must_be_below_the_period() -> None:
    with pytest.raises(ValueError):
        SceneStage(FakeEncoders(), LABELS, period_ns=100 * MS, delay_ns=100 * MS)  # type: ignore[arg-type]
