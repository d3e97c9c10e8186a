"""Publisher/Subscriber policies over real ipc sockets in one process."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator

import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from sensorfuse.engine import wire
from sensorfuse.engine.metrics import Counters
from sensorfuse.engine.transport import Publisher, Subscriber
from sfhelpers import wait_for


class Ctx:
    def __init__(self) -> None:
        self.zmq = zmq.Context()
        self.dir = tempfile.mkdtemp(prefix="sft", dir="/tmp")

    def socket(self, kind: int) -> zmq.Socket:
        return self.zmq.socket(kind)


@pytest.fixture
def zctx() -> Iterator[Ctx]:
    ctx = Ctx()
    yield ctx
    ctx.zmq.destroy(linger=0)
    shutil.rmtree(ctx.dir, ignore_errors=True)


def pair(zctx: Ctx, policy: str, queue: int, *, nodrop: bool = False, hwm: int = 64) -> tuple[Publisher, Subscriber, Counters]:
    ep = f"ipc://{zctx.dir}/s"
    pub = Publisher(zctx.zmq, "cam0/frame", [ep], nodrop=nodrop, hwm=hwm)
    counters = Counters()
    sub = Subscriber(zctx.zmq, "in", "cam0/frame", [ep], policy=policy, queue=queue, counters=counters)
    wait_for(lambda: pub.poll_subscriptions() >= 1, 5, "subscription (readiness handshake)")
    return pub, sub, counters


def send(pub: Publisher, seq: int, arr: np.ndarray | None = None) -> None:
    data = np.full((4, 4, 3), seq % 256, np.uint8) if arr is None else arr
    pub.send(wire.encode_message(pub.stream, wire.KIND_TENSOR, data, seq=seq, t_ns=seq))


def drain_until(sub: Subscriber, n_received: int) -> None:
    wait_for(lambda: (sub.drain() or True) and sub.stats.received >= n_received, 5, f"{n_received} messages")


def test_readiness_handshake_counts_subscribers(zctx: Ctx) -> None:
    pub, sub, _ = pair(zctx, "drop_oldest", 8)
    assert pub.subscriptions == 1
    send(pub, 0)  # published after READY: must arrive (no slow-joiner loss)
    drain_until(sub, 1)
    assert sub.pop().header.seq == 0


def test_latest_keeps_only_the_newest_and_counts_the_rest(zctx: Ctx) -> None:
    pub, sub, counters = pair(zctx, "latest", 1)
    for i in range(10):
        send(pub, i)
    drain_until(sub, 10)
    msgs = []
    while (m := sub.pop()) is not None:
        msgs.append(m.header.seq)
    assert msgs == [9]
    assert counters.streams["cam0/frame"].dropped["overflow"] == 9


def test_drop_oldest_keeps_the_newest_n(zctx: Ctx) -> None:
    pub, sub, counters = pair(zctx, "drop_oldest", 3)
    for i in range(10):
        send(pub, i)
    drain_until(sub, 10)
    assert [m.header.seq for m in iter(sub.pop, None)] == [7, 8, 9]
    assert counters.streams["cam0/frame"].dropped["overflow"] == 7


def test_block_pushes_back_instead_of_dropping(zctx: Ctx) -> None:
    pub, sub, counters = pair(zctx, "block", 2, nodrop=True, hwm=2)
    sent = 0

    # Without reads, the publisher must soon refuse (back-pressure), not drop.
    while pub.send(wire.encode_message(pub.stream, wire.KIND_TENSOR, np.zeros(8, np.uint8), seq=sent, t_ns=sent),
                   block_until=time.monotonic() + 0.2):
        sent += 1
        assert sent < 10_000, "publisher never felt back-pressure"
    got = []
    while len(got) < sent:
        sub.drain()
        got.extend(m.header.seq for m in iter(sub.pop, None))
    assert got == list(range(sent))
    assert counters.streams["cam0/frame"].lost == 0 and not counters.streams["cam0/frame"].dropped


def test_seq_gaps_count_as_lost(zctx: Ctx) -> None:
    pub, sub, counters = pair(zctx, "drop_oldest", 16)
    for seq in (0, 1, 5, 6, 10):
        send(pub, seq)
    drain_until(sub, 5)
    assert counters.streams["cam0/frame"].lost == 3 + 3


def test_prefix_topics_do_not_leak_into_a_stream(zctx: Ctx) -> None:
    ep = f"ipc://{zctx.dir}/p"
    raw = zctx.socket(zmq.XPUB)
    raw.bind(ep)
    counters = Counters()
    sub = Subscriber(zctx.zmq, "in", "cam0/frame", [ep], policy="drop_oldest", queue=8, counters=counters)
    wait_for(lambda: raw.poll(10) and raw.recv(), 5, "subscription")
    raw.send_multipart(wire.encode_message("cam0/frame2", wire.KIND_RECORD, {}, seq=0, t_ns=0))
    raw.send_multipart(wire.encode_message("cam0/frame", wire.KIND_RECORD, {"ok": 1}, seq=0, t_ns=0))
    wait_for(lambda: (sub.drain() or True) and sub.pending, 5, "the real message")
    assert [m.record for m in iter(sub.pop, None)] == [{"ok": 1}]
    raw.close(0)


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.binary(max_size=40), min_size=0, max_size=5))
def test_subscriber_counts_fuzzed_messages_and_keeps_working(parts: list[bytes]) -> None:
    ctx = zmq.Context()
    try:
        counters = Counters()
        sub = Subscriber(ctx, "in", "cam0/frame", [], policy="drop_oldest", queue=8, counters=counters)
        # Feed the subscriber's validation path directly with what a hostile peer could send.
        frames = [b"cam0/frame", *parts]
        sub._accept([zmq.Frame(p) for p in frames])
        stats = counters.streams["cam0/frame"]
        assert stats.received + sum(stats.malformed.values()) == 1
        good = wire.encode_message("cam0/frame", wire.KIND_RECORD, {"v": 1}, seq=99, t_ns=1)
        sub._accept([zmq.Frame(bytes(p)) for p in good])
        assert sub.pending[-1].record == {"v": 1}
        sub.close()
    finally:
        ctx.destroy(0)


def test_no_idle_overtakes_a_message_still_waiting_to_go(zctx: Ctx) -> None:
    """An idle carries the next data seq; sent while a data message waits to go (a full
    lock-step queue, or a frame waiting for a shared-memory slot while the socket has
    room), it would arrive first and the receiver would count that message lost, then a
    seq reset (seen in the demo: lost 1, seq_resets 1 on cam0/frame)."""
    pub, sub, counters = pair(zctx, "block", 4, nodrop=True, hwm=2)
    full = [wire.encode_message(pub.stream, wire.KIND_TENSOR, np.zeros((64, 64, 3), np.uint8), seq=i, t_ns=i)
            for i in range(64)]
    sent = 0
    while pub.send(full[sent], block_until=time.monotonic() + 0.05):
        sent += 1
    assert pub.in_flight  # the consumer is not reading: full[sent] waits
    assert not pub.send_idle(wire.encode_message(pub.stream, wire.KIND_IDLE, None, seq=sent + 1, t_ns=sent))
    def reader_caught_up() -> bool:  # the reader takes all that is queued: the socket has room ...
        sub.drain()
        while sub.pop() is not None:
            pass
        return sub.stats.received >= sent and not sub.sock.get(zmq.EVENTS) & zmq.POLLIN

    wait_for(reader_caught_up, 5, "the reader to take every message sent so far")
    pub.in_flight = True  # ... as when the frame waits for a pool slot instead
    assert not pub.send_idle(wire.encode_message(pub.stream, wire.KIND_IDLE, None, seq=sent + 1, t_ns=sent))
    while sent < len(full):  # the reader catches up: every message arrives, in order
        sub.drain()
        while sub.pop() is not None:
            pass
        if pub.send(full[sent], block_until=time.monotonic() + 0.05):
            sent += 1
    assert not pub.in_flight
    drain_until(sub, len(full))
    st = counters.streams["cam0/frame"]
    assert (st.lost, st.seq_resets, sub.watermark) == (0, 0, None)
    idle = wire.encode_message(pub.stream, wire.KIND_IDLE, None, seq=len(full), t_ns=len(full))

    def read_all_then_idle() -> bool:  # an idle never waits for room: read what is queued first
        sub.drain()
        while sub.pop() is not None:
            pass
        return pub.send_idle(idle)

    wait_for(read_all_then_idle, 5, "room for the idle, now that nothing waits")
    wait_for(lambda: (sub.drain() or True) and sub.watermark is not None, 5, "the idle")
