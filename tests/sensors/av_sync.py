"""Measuring A/V offset from aligner tick records (used in-process and end to end)."""

from __future__ import annotations

from typing import Any

import numpy as np


def member_bytes(value: Any) -> bytes:
    """Embedded payload: bytes in-process, hex text after the jsonl sink."""
    return bytes.fromhex(value) if isinstance(value, str) else bytes(value)


def flash_ticks(ticks: list[dict[str, Any]], port: str = "frame") -> list[dict[str, Any]]:
    out = []
    for tick in ticks:
        frame = tick["members"].get(port)
        if frame is None:
            continue
        pixels = np.frombuffer(member_bytes(frame["data"]), np.uint8)
        if pixels.mean() > 128:
            out.append(tick)
    return out


def click_offsets_ms(ticks: list[dict[str, Any]], port: str = "audio", window_after_ms: float = 100) -> list[float]:
    """For each flash tick, find the click in the window of the tick `window_after_ms`
    later (so a click up to that much late, or a window length early, is inside it);
    offset = click capture time - flash capture time."""
    by_t = sorted(ticks, key=lambda t: t["t_ns"])
    offsets = []
    for flash in flash_ticks(by_t):
        target = flash["t_ns"] + window_after_ms * 1e6
        later = next(t for t in by_t if t["t_ns"] >= target and t["members"].get(port))
        window = later["members"][port]
        samples = np.frombuffer(member_bytes(window["data"]), np.float32).reshape(window["n"], -1)[:, 0]
        onset = int(np.argmax(np.abs(samples) > 0.3))  # first sample of the click
        click_ns = window["t_start_ns"] + onset * 1e9 / window["rate"]
        offsets.append((click_ns - flash["t_ns"]) / 1e6)
    return offsets
