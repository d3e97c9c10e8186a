"""docs/engine.md's "Failure behaviour" table names a fault test for every row; each exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_row_names_an_existing_fault_test() -> None:
    text = (REPO / "docs" / "engine.md").read_text()
    table = text.split("## Failure behaviour", 1)[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| fault")]
    assert len(rows) >= 10
    for row in rows:
        names = re.findall(r"`(test_[a-z0-9_]+\.py)`", row.rsplit("|", 2)[-2])
        assert names, f"row names no test: {row}"
        for name in names:
            path = Path(__file__).with_name(name)
            assert path.is_file() and "def test_" in path.read_text(), f"{name} (row: {row[:60]}...)"
