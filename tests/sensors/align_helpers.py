"""Shared helpers for the aligner tests: message tuples, feeding, and comparable ticks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sensorfuse.engine.align import Aligner, Item, Tick
from sensorfuse.engine.align_audio import AudioWindow

MS = 1_000_000


@dataclass(frozen=True)
class Msg:
    stream: str
    seq: int
    t_ns: Any
    data: Any = None
    rate: int | None = None
    sample0: int | None = None


def feed(aligner: Aligner, msgs: Iterable[Msg], *, finish: bool = True) -> list[Tick]:
    ticks: list[Tick] = []
    for m in msgs:
        ticks += aligner.add(m.stream, m.seq, m.t_ns, m.data, rate=m.rate, sample0=m.sample0)
    if finish:
        ticks += aligner.finish()
    return ticks


def member_key(member: Item | AudioWindow | None) -> Any:
    if member is None:
        return None
    if isinstance(member, AudioWindow):
        return ("window", member.sample0, member.n, member.samples.tobytes(), member.valid.tobytes(), tuple(member.seqs))
    data = member.data.tobytes() if isinstance(member.data, np.ndarray) else member.data
    return ("item", member.seq, member.t_ns, data)


def tick_key(tick: Tick, *, content_only: bool = False) -> Any:
    members = tuple(sorted((name, member_key(m)) for name, m in tick.members.items()))
    if content_only:
        return (tick.index, tick.t_ns, members)
    return (
        tick.index, tick.t_ns, tick.emitted_by, members,
        tuple(sorted(tick.status.items())), tuple(sorted(tick.late_ns.items())),
    )


def audio_blocks(
    stream: str, sizes: list[int], gaps: list[int], *, rate: int, t0_ns: int, seq0: int = 0
) -> list[Msg]:
    """Blocks whose samples hold their own index (exact in float32 below 2**24); a gap
    before block k skips `gaps[k]` samples, reported by sample0 and time alike."""
    msgs = []
    sample0 = 0
    for k, (size, gap) in enumerate(zip(sizes, gaps)):
        sample0 += gap if k else 0
        t_ns = t0_ns + sample0 * 1_000_000_000 // rate
        samples = np.arange(sample0, sample0 + size, dtype=np.float32)[:, None]
        msgs.append(Msg(stream, seq0 + k, t_ns, samples, rate, sample0))
        sample0 += size
    return msgs
