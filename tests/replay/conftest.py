"""Fixtures for replay tests: a small mixed session and a recorded log of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.replay.replay_helpers import make_session, record

from sensorfuse.engine import wire


@pytest.fixture
def session_msgs() -> list[wire.Message]:
    return make_session()


@pytest.fixture
def recorded(tmp_path: Path, session_msgs: list[wire.Message]) -> Path:
    path = tmp_path / "s.mcap"
    record(session_msgs, path, chunk_mb=0.05)
    return path
