"""Property tests of the pure aligner (issue 3, (a)-(e))."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensorfuse.engine.align import Aligner, AlignerConfig, Item, StreamPolicy
from sensorfuse.engine.align_audio import AudioWindow
from tests.sensors.align_helpers import MS, Msg, audio_blocks, feed, tick_key

pytestmark = pytest.mark.timeout(120)
RATE = 16_000
LATENESS = 300 * MS
SLOP = 20 * MS
TTL = 500 * MS
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def times_from_gaps(start_ms: int, gaps_us: list[int]) -> list[int]:
    t = start_ms * MS
    out = []
    for gap in gaps_us:
        t += gap * 1000
        out.append(t)
    return out


@st.composite
def sessions(draw: st.DrawFn) -> list[Msg]:
    """Frames every 20-60 ms, audio blocks of 10-20 ms with occasional 50 ms gaps, text
    every 10-120 ms: every stream's gaps stay under half the lateness bound."""
    n_blocks = draw(st.integers(8, 50))
    sizes = draw(st.lists(st.integers(160, 320), min_size=n_blocks, max_size=n_blocks))
    gaps = draw(st.lists(st.sampled_from([0, 0, 0, 0, 0, 800]), min_size=n_blocks, max_size=n_blocks))
    msgs = audio_blocks("audio", sizes, gaps, rate=RATE, t0_ns=draw(st.integers(0, 30)) * MS)
    n_frames = draw(st.integers(3, 40))
    frame_times = times_from_gaps(draw(st.integers(0, 40)), draw(st.lists(
        st.integers(20_000, 60_000), min_size=n_frames, max_size=n_frames)))
    msgs += [Msg("frame", k, t, np.full((2, 2, 3), k % 251, np.uint8)) for k, t in enumerate(frame_times)]
    n_texts = draw(st.integers(1, 30))
    text_times = times_from_gaps(draw(st.integers(0, 100)), draw(st.lists(
        st.integers(10_000, 120_000), min_size=n_texts, max_size=n_texts)))
    msgs += [Msg("text", k, t, f"text {k}") for k, t in enumerate(text_times)]
    return msgs


@st.composite
def configs(draw: st.DrawFn) -> AlignerConfig:
    streams = {
        "frame": StreamPolicy("nearest", slop_ns=SLOP),
        "audio": StreamPolicy("window", window_ns=draw(st.integers(20, 300)) * MS),
        "text": StreamPolicy("latest", ttl_ns=TTL),
    }
    if draw(st.booleans()):
        return AlignerConfig(streams, trigger="frame", lateness_ns=LATENESS, max_pending_ticks=10_000)
    period = draw(st.sampled_from([10, 20, 33, 50])) * MS
    return AlignerConfig(streams, period_ns=period, lateness_ns=LATENESS, max_pending_ticks=10_000)


def reference_order(msgs: list[Msg]) -> list[Msg]:
    return sorted(msgs, key=lambda m: (m.t_ns, m.stream))


def delayed_order(msgs: list[Msg], delays_ms: list[int], tiebreak: list[int]) -> list[Msg]:
    """Each message arrives `delay` after capture; the first of each stream is not delayed,
    so nothing overtakes a stream's first message."""
    first = {m.stream: m.seq for m in sorted(msgs, key=lambda m: m.seq, reverse=True)}
    keyed = []
    for i, m in enumerate(msgs):
        delay = 0 if first[m.stream] == m.seq else delays_ms[i % len(delays_ms)] * MS
        keyed.append((m.t_ns + delay, tiebreak[i % len(tiebreak)], i, m))
    return [m for *_, m in sorted(keyed, key=lambda k: k[:3])]


@PROPS
@given(sessions(), configs(), st.lists(st.integers(0, 60), min_size=1), st.lists(st.integers(0, 9), min_size=1))
def test_a_arrival_permuted_within_lateness_gives_identical_ticks(
    msgs: list[Msg], config: AlignerConfig, delays_ms: list[int], tiebreak: list[int]
) -> None:
    expected = feed(Aligner(config), reference_order(msgs))
    permuted = Aligner(config)
    got = feed(permuted, delayed_order(msgs, delays_ms, tiebreak))
    assert [tick_key(t) for t in got] == [tick_key(t) for t in expected]
    assert permuted.drops == {}
    assert expected, "a session always yields ticks"


def check_member_bounds(config: AlignerConfig, ticks: list) -> None:
    for tick in ticks:
        for name, member in tick.members.items():
            policy = config.streams[name]
            if member is None:
                continue
            if policy.policy == "nearest":
                assert isinstance(member, Item) and abs(member.t_ns - tick.t_ns) <= policy.slop_ns
            elif policy.policy == "latest":
                assert isinstance(member, Item) and 0 <= tick.t_ns - member.t_ns <= policy.ttl_ns
            else:
                assert isinstance(member, AudioWindow)
                sample_ns = math.ceil(1e9 / member.rate)
                assert member.n == round(policy.window_ns * member.rate / 1e9)
                assert tick.t_ns - sample_ns < member.t_end_ns <= tick.t_ns
                assert tick.t_ns - policy.window_ns - sample_ns <= member.t_start_ns
        assert tick.mask == {name: m is not None for name, m in tick.members.items()}


@PROPS
@given(sessions(), configs(), st.randoms(use_true_random=False), st.integers(1, 64), st.integers(0, 400))
def test_b_every_member_is_within_its_policy_bound(
    msgs: list[Msg], config: AlignerConfig, rnd: object, capacity: int, lateness_ms: int
) -> None:
    """Holds for any arrival order, small queues and any lateness bound."""
    streams = {name: replace(p, capacity=capacity) for name, p in config.streams.items()}
    config = replace(config, streams=streams, lateness_ns=lateness_ms * MS, max_pending_ticks=capacity)
    order = list(msgs)
    rnd.shuffle(order)  # type: ignore[attr-defined]
    aligner = Aligner(config)
    ticks = feed(aligner, order)
    check_member_bounds(config, ticks)
    times = [t.t_ns for t in ticks]
    assert times == sorted(set(times)), "ticks are emitted once each, in time order"
    assert set(r for _, r in aligner.drops) <= {"late", "over_capacity", "duplicate_seq", "out_of_order"}


@PROPS
@given(
    st.sampled_from([16_000, 44_100, 48_000]),
    st.lists(st.integers(1, 2000), min_size=1, max_size=60),
    st.lists(st.sampled_from([0, 0, 0, 1, 37, 5000]), min_size=60, max_size=60),
    st.integers(0, 10**9),
    st.sampled_from([10, 20, 33, 40]),
    st.integers(1, 500),
)
def test_c_audio_windows_are_sample_exact_and_contiguous(
    rate: int, sizes: list[int], gaps: list[int], t0_ns: int, period_ms: int, window_ms: int
) -> None:
    window_ns = window_ms * MS
    config = AlignerConfig(
        {"audio": StreamPolicy("window", window_ns=window_ns, capacity=10_000)},
        period_ns=period_ms * MS, lateness_ns=LATENESS, max_pending_ticks=10_000,
    )
    msgs = audio_blocks("audio", sizes, gaps[: len(sizes)], rate=rate, t0_ns=t0_ns)
    delivered = np.concatenate([m.data[:, 0] for m in msgs]).astype(np.int64)
    ticks = feed(Aligner(config), msgs)
    n = (window_ns * rate + 500_000_000) // 1_000_000_000
    period_ns = period_ms * MS
    assert all(b.t_ns - a.t_ns == period_ns for a, b in zip(ticks, ticks[1:])), "one tick per grid point"
    for tick in ticks:
        window = tick.members["audio"]
        if window is None:  # the whole window fell in a gap
            assert tick.status["audio"] in ("missing", "late")
            continue
        assert isinstance(window, AudioWindow) and window.n == n
        # The window ends at the last sample captured at or before t (sample clock from t0),
        # so consecutive windows advance by exactly the samples between their tick times.
        last = (tick.t_ns - t0_ns) * rate // 1_000_000_000
        assert window.sample0 + n - 1 == last
        index = np.arange(window.sample0, window.sample0 + n)
        assert np.array_equal(window.valid, np.isin(index, delivered))
        assert np.array_equal(window.samples[window.valid, 0], index[window.valid].astype(np.float32))
        assert not window.samples[~window.valid].any(), "gaps are zero-filled"


def replay_order(msgs: list[Msg], speed: float | None, jitter_us: list[int]) -> list[Msg]:
    """Arrival order of a log republished at `speed` (None: as fast as the graph consumes,
    lock-step in recorded order). Blocks are published when their last sample is captured;
    each stream then takes a fixed pipeline latency plus jitter in wall-clock time, and
    stays in order (one ZeroMQ connection per stream keeps its order)."""
    if speed is None:
        return reference_order(msgs)
    latency_us = {"frame": 5000, "audio": 2000, "text": 1000}
    keyed = []
    last_arrival: dict[str, float] = {}
    for i, m in enumerate(sorted(msgs, key=lambda m: (m.stream, m.seq))):
        published_ns = m.t_ns + (len(m.data) * 10**9 // m.rate if m.rate else 0)
        arrival = published_ns / speed + (latency_us[m.stream] + jitter_us[i % len(jitter_us)]) * 1000
        arrival = last_arrival[m.stream] = max(arrival, last_arrival.get(m.stream, arrival))
        keyed.append((arrival, i, m))
    return [m for *_, m in sorted(keyed, key=lambda k: k[:2])]


@PROPS
@given(sessions(), configs(), st.lists(st.integers(0, 2000), min_size=1))
def test_d_replay_speed_does_not_change_ticks(msgs: list[Msg], config: AlignerConfig, jitter_us: list[int]) -> None:
    runs = [feed(Aligner(config), replay_order(msgs, speed, jitter_us)) for speed in (1.0, 10.0, None)]
    keys = [[tick_key(t) for t in ticks] for ticks in runs]
    assert keys[0] == keys[1] == keys[2]


@PROPS
@given(sessions(), configs(), st.data())
def test_e_bad_messages_are_rejected_with_reasons(msgs: list[Msg], config: AlignerConfig, data: st.DataObject) -> None:
    clean = reference_order(msgs)
    expected = feed(Aligner(config), clean)
    dirty: list[Msg] = []
    injected: dict[tuple[str, str], int] = {}
    delivered: list[Msg] = []
    for m in clean:
        dirty.append(m)
        delivered.append(m)
        kind = data.draw(st.sampled_from(["none", "none", "dup", "nan", "neg", "back", "inf"]))
        if kind == "none":
            continue
        reason = "duplicate_seq" if kind == "dup" else "bad_timestamp"
        if kind == "dup":
            bad = data.draw(st.sampled_from([x for x in delivered if x.stream == m.stream]))
        elif kind == "back":
            if m.t_ns == 0:
                continue
            bad = replace(m, seq=10**9 + len(dirty), t_ns=data.draw(st.integers(0, m.t_ns - 1)))
        else:
            bad = replace(m, t_ns={"nan": math.nan, "neg": -data.draw(st.integers(1, 10**12)), "inf": math.inf}[kind])
        dirty.append(bad)
        injected[(m.stream, reason)] = injected.get((m.stream, reason), 0) + 1
    aligner = Aligner(config)
    got = feed(aligner, dirty)
    assert aligner.drops == injected
    assert [tick_key(t) for t in got] == [tick_key(t) for t in expected]
