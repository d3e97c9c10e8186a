"""Unit tests of the pure aligner: policies, masks, lateness, drops with reasons."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from sensorfuse.engine.align import Aligner, AlignerConfig, Item, StreamPolicy
from sensorfuse.engine.align_audio import AudioWindow
from tests.sensors.align_helpers import MS, Msg, audio_blocks, feed

pytestmark = pytest.mark.timeout(30)
RATE = 16_000


def frames_audio_config(**kw: object) -> AlignerConfig:
    streams = {
        "frame": StreamPolicy("nearest", slop_ns=15 * MS),
        "audio": StreamPolicy("window", window_ns=40 * MS),
    }
    return AlignerConfig(streams, **{"trigger": "frame", "lateness_ns": 100 * MS, **kw})  # type: ignore[arg-type]


def audio(n_blocks: int, *, block: int = 320, t0_ns: int = 0, gaps: list[int] | None = None) -> list[Msg]:
    return audio_blocks("audio", [block] * n_blocks, gaps or [0] * n_blocks, rate=RATE, t0_ns=t0_ns)


def test_nearest_takes_the_closest_frame_within_slop_and_ties_go_earlier() -> None:
    config = AlignerConfig(
        {"tick": StreamPolicy("nearest"), "frame": StreamPolicy("nearest", slop_ns=10 * MS)},
        trigger="tick", lateness_ns=50 * MS,
    )
    msgs = [Msg("frame", 0, 95 * MS, "a"), Msg("frame", 1, 105 * MS, "b"), Msg("frame", 2, 130 * MS, "c"),
            Msg("tick", 0, 100 * MS), Msg("tick", 1, 128 * MS), Msg("tick", 2, 150 * MS)]
    ticks = feed(Aligner(config), sorted(msgs, key=lambda m: m.t_ns))
    chosen = [t.members["frame"].data if t.members["frame"] else None for t in ticks]  # type: ignore[union-attr]
    assert chosen == ["a", "c", None]
    assert [t.status["frame"] for t in ticks] == ["ok", "ok", "ended"]  # flushed after the last frame


def test_latest_takes_the_newest_message_at_or_before_t_within_ttl() -> None:
    config = AlignerConfig(
        {"tick": StreamPolicy("nearest"), "text": StreamPolicy("latest", ttl_ns=100 * MS, required=False)},
        trigger="tick",
    )
    msgs = [Msg("text", 0, 10 * MS, "hello"), Msg("tick", 0, 50 * MS), Msg("text", 1, 60 * MS, "world"),
            Msg("tick", 1, 59 * MS), Msg("tick", 2, 150 * MS), Msg("tick", 3, 161 * MS)]
    ticks = feed(Aligner(config), msgs)
    texts = [t.members["text"].data if t.members["text"] else None for t in ticks]  # type: ignore[union-attr]
    assert texts == ["hello", "hello", "world", None]
    assert ticks[3].status["text"] == "missing" and ticks[3].mask == {"tick": True, "text": False}


def test_window_is_exact_and_a_gap_is_zero_filled_and_masked() -> None:
    config = AlignerConfig({"audio": StreamPolicy("window", window_ns=100 * MS)}, period_ns=100 * MS)
    # 20 ms blocks; 50 ms (800 samples) missing before block 5, reported by sample0 and time.
    msgs = audio(10, gaps=[0, 0, 0, 0, 0, 800, 0, 0, 0, 0])
    ticks = feed(Aligner(config), msgs)
    window = ticks[1].members["audio"]
    assert isinstance(window, AudioWindow) and ticks[1].t_ns == 100 * MS
    # The window ends at the sample captured at 100 ms (index 1600), the first one lost.
    assert window.n == 1600 and window.sample0 == 1601 - 1600
    assert window.gaps() == [(1599, 1)] and window.valid_count == 1599
    window = ticks[2].members["audio"]
    assert isinstance(window, AudioWindow) and window.sample0 == 1601
    # Samples 1600..2399 were never delivered: the window [1601, 3201) misses 1601..2399.
    assert window.gaps() == [(0, 2400 - 1601)]
    assert np.array_equal(window.samples[799:, 0], np.arange(2400, 3201, dtype=np.float32))
    assert not window.samples[:799].any()


def test_a_silent_required_stream_lets_ticks_go_at_the_lateness_bound_marked_late() -> None:
    aligner = Aligner(frames_audio_config())
    msgs = audio(5)  # audio up to 100 ms, then silence
    msgs += [Msg("frame", k, k * 33 * MS) for k in range(12)]
    ticks = feed(aligner, sorted(msgs, key=lambda m: m.t_ns), finish=False)
    by_t = {t.t_ns: t for t in ticks}
    assert by_t[66 * MS].emitted_by == "watermark" and by_t[66 * MS].status["audio"] == "ok"
    late = by_t[132 * MS]
    assert late.emitted_by == "lateness"
    assert late.status == {"frame": "ok", "audio": "late"}
    # The audio watermark is at 100 ms; the tick needs the sample at 132 ms: 32 ms (+1 sample) behind.
    assert late.late_ns["audio"] == 132 * MS + 62_500 - 100 * MS
    assert late.mask == {"frame": True, "audio": True}  # partial window: valid samples up to 100 ms
    window = late.members["audio"]
    # A 640-sample window ending at sample 2112; samples up to 1599 were delivered.
    assert isinstance(window, AudioWindow) and window.sample0 == 2113 - 640 and window.valid_count == 1600 - 1473
    # Ticks newer than frontier - lateness still wait.
    assert max(by_t) <= 11 * 33 * MS - 100 * MS


def test_a_stream_that_never_started_is_absent() -> None:
    ticks = feed(Aligner(frames_audio_config()), [Msg("frame", k, k * 33 * MS) for k in range(10)])
    assert ticks[0].status["audio"] == "absent" and ticks[0].mask["audio"] is False
    assert ticks[0].emitted_by == "lateness"
    assert ticks[-1].emitted_by == "flush"


def test_optional_streams_do_not_hold_ticks_back() -> None:
    config = AlignerConfig(
        {"frame": StreamPolicy("nearest"), "text": StreamPolicy("latest", ttl_ns=10**10, required=False)},
        trigger="frame",
    )
    aligner = Aligner(config)
    ticks = aligner.add("frame", 0, 5 * MS)
    assert len(ticks) == 1 and ticks[0].emitted_by == "watermark" and ticks[0].status["text"] == "absent"


def test_reordered_messages_within_a_stream_wait_for_the_gap_then_match_in_order_result() -> None:
    msgs = sorted(audio(10) + [Msg("frame", k, k * 33 * MS) for k in range(6)], key=lambda m: m.t_ns)
    expected = feed(Aligner(frames_audio_config()), msgs)
    swapped = list(msgs)
    i, j = swapped.index(msgs[3]), swapped.index(msgs[5])
    swapped[i], swapped[j] = swapped[j], swapped[i]
    assert [(t.t_ns, t.emitted_by) for t in feed(Aligner(frames_audio_config()), swapped)] == [
        (t.t_ns, t.emitted_by) for t in expected
    ]


def test_a_gap_is_declared_lost_after_the_reorder_bound_and_a_straggler_is_out_of_order() -> None:
    aligner = Aligner(frames_audio_config(reorder_ns=50 * MS))
    blocks = audio(10)
    feed(aligner, [blocks[0], *blocks[2:]], finish=False)  # block 1 lost in transit
    assert aligner.gaps_declared == 1
    assert aligner.watermark("audio") == 200 * MS
    feed(aligner, [blocks[1]], finish=False)
    assert aligner.drops == {("audio", "out_of_order"): 1}


def test_a_message_after_its_ticks_were_emitted_is_counted_late() -> None:
    aligner = Aligner(frames_audio_config())
    ticks = feed(aligner, [Msg("frame", k, k * 33 * MS) for k in range(16)], finish=False)
    assert ticks[-1].t_ns == 11 * 33 * MS and ticks[-1].status["audio"] == "absent"
    feed(aligner, audio(2), finish=False)  # ends 40 ms: older than any window still to come
    assert aligner.drops == {("audio", "late"): 2}


def test_bounded_queues_count_over_capacity() -> None:
    config = AlignerConfig(
        {"frame": StreamPolicy("nearest", capacity=4), "slow": StreamPolicy("nearest", slop_ns=MS, capacity=4)},
        trigger="frame", lateness_ns=10**12, max_pending_ticks=10**6,
    )
    aligner = Aligner(config)
    feed(aligner, [Msg("frame", k, k * MS) for k in range(10)], finish=False)
    assert aligner.drops == {("frame", "over_capacity"): 6}
    feed(aligner, [Msg("slow", k, k * MS) for k in (0, 2, 3, 4, 5, 6, 7)], finish=False)  # 2.. wait for 1
    assert aligner.drops[("slow", "over_capacity")] == 2


def test_too_many_pending_ticks_are_emitted_early_marked_capacity() -> None:
    aligner = Aligner(frames_audio_config(max_pending_ticks=3))
    ticks = feed(aligner, [Msg("frame", k, k * MS) for k in range(5)], finish=False)
    assert [t.emitted_by for t in ticks] == ["capacity", "capacity"]
    assert ticks[0].status["audio"] == "absent"


@pytest.mark.parametrize(
    ("t_ns", "reason"),
    [(math.nan, "bad_timestamp"), (-1, "bad_timestamp"), (math.inf, "bad_timestamp"), ("12", "bad_timestamp")],
)
def test_bad_timestamps_are_refused(t_ns: object, reason: str) -> None:
    seen: list[tuple[str, str, str]] = []
    aligner = Aligner(frames_audio_config(), on_drop=lambda *a: seen.append(a))
    assert aligner.add("frame", 0, t_ns) == []
    assert aligner.drops == {("frame", reason): 1} and seen[0][:2] == ("frame", reason)


def test_backwards_time_duplicate_seq_and_rate_change_are_refused() -> None:
    aligner = Aligner(frames_audio_config())
    blocks = audio(3)
    feed(aligner, [Msg("frame", 0, 50 * MS), Msg("frame", 1, 40 * MS), Msg("frame", 0, 50 * MS), *blocks[:2]],
         finish=False)
    other_rate = Msg("audio", 2, blocks[2].t_ns, np.zeros((441, 1), np.float32), 44_100, 882)
    aligner.add("audio", *[getattr(other_rate, f) for f in ("seq", "t_ns", "data")],
                rate=other_rate.rate, sample0=other_rate.sample0)
    assert aligner.drops == {
        ("frame", "bad_timestamp"): 1, ("frame", "duplicate_seq"): 1, ("audio", "bad_payload"): 1,
    }


def test_nan_audio_is_refused_and_becomes_a_flagged_gap() -> None:
    aligner = Aligner(frames_audio_config())
    blocks = audio(6)
    poisoned = blocks[2].data.copy()
    poisoned[5] = np.nan
    blocks[2] = Msg("audio", blocks[2].seq, blocks[2].t_ns, poisoned, blocks[2].rate, blocks[2].sample0)
    ticks = feed(aligner, [*blocks, Msg("frame", 0, blocks[4].t_ns)])
    assert aligner.drops == {("audio", "bad_payload"): 1}
    window = ticks[-1].members["audio"]
    assert np.isfinite(window.samples).all() and window.gaps()


def test_a_restarted_producer_is_followed_not_refused_as_duplicates() -> None:
    aligner = Aligner(frames_audio_config())
    first = audio(5)
    restarted = audio_blocks("audio", [320] * 5, [0] * 5, rate=RATE, t0_ns=500 * MS)  # seq and sample0 from 0
    frames = [Msg("frame", k, k * 100 * MS) for k in range(10)]
    ticks = feed(aligner, sorted(first + restarted + frames, key=lambda m: m.t_ns))
    assert aligner.drops == {}
    window = {t.t_ns: t for t in ticks}[500 * MS].members["audio"]
    assert isinstance(window, AudioWindow) and window.valid_count == 1  # only the sample at exactly 500 ms


def test_an_ended_stream_stops_holding_ticks() -> None:
    aligner = Aligner(frames_audio_config())
    feed(aligner, audio(2), finish=False)  # audio ends at 40 ms
    ticks = aligner.end_stream("audio")
    ticks += feed(aligner, [Msg("frame", k, k * 33 * MS) for k in range(4)], finish=False)
    assert [t.emitted_by for t in ticks] == ["watermark"] * 4
    assert [t.status["audio"] for t in ticks] == ["ok", "ok", "ok", "ended"]  # 66 ms: window [26, 66] ms


def test_fixed_rate_ticks_sit_on_the_grid_from_the_earliest_capture() -> None:
    config = AlignerConfig(
        {"frame": StreamPolicy("nearest", slop_ns=20 * MS), "audio": StreamPolicy("window", window_ns=20 * MS)},
        period_ns=25 * MS, origin_ns=5 * MS, lateness_ns=100 * MS,
    )
    msgs = sorted(audio(10, t0_ns=12 * MS) + [Msg("frame", k, 30 * MS + k * 33 * MS) for k in range(6)],
                  key=lambda m: m.t_ns)
    ticks = feed(Aligner(config), msgs)
    assert [t.t_ns for t in ticks][:3] == [30 * MS, 55 * MS, 80 * MS]
    assert all(isinstance(t.members["frame"], Item) for t in ticks[:6])


def test_work_per_message_stays_bounded_over_a_long_session() -> None:
    """Ten minutes of 30 Hz frames, 50 Hz audio blocks and text: buffers stay bounded and
    the aligner keeps far ahead of real time."""
    config = AlignerConfig(
        {
            "frame": StreamPolicy("nearest", slop_ns=17 * MS),
            "audio": StreamPolicy("window", window_ns=500 * MS, capacity=64),
            "text": StreamPolicy("latest", ttl_ns=5000 * MS, required=False),
        },
        trigger="frame",
    )
    aligner = Aligner(config)
    seconds = 600
    block = np.zeros((320, 1), np.float32)
    msgs = [Msg("audio", k, k * 20 * MS, block, RATE, k * 320) for k in range(seconds * 50)]
    msgs += [Msg("frame", k, k * 33_333_333 + 3 * MS) for k in range(seconds * 30)]
    msgs += [Msg("text", k, k * 7 * 10**9, "hi") for k in range(seconds // 7)]
    msgs.sort(key=lambda m: m.t_ns)
    started = time.perf_counter()
    ticks = feed(aligner, msgs)
    elapsed = time.perf_counter() - started
    assert len(ticks) == seconds * 30 and aligner.drops == {}
    assert elapsed < 30, f"{len(msgs)} messages took {elapsed:.1f} s"


def test_an_exact_match_needs_no_look_ahead() -> None:
    """Cameras on one clock: camB's frame stamped at the tick's time is final at once; before
    t only, the tick waits (a nearer frame may come), and the first frame after t decides."""
    config = AlignerConfig({"camA": StreamPolicy("nearest"), "camB": StreamPolicy("nearest", slop_ns=20 * MS)},
                           trigger="camA", lateness_ns=1000 * MS)
    aligner = Aligner(config)
    ticks = feed(aligner, [Msg("camA", 0, 100 * MS, "a0"), Msg("camB", 0, 100 * MS, "b0")], finish=False)
    assert [(t.t_ns, t.members["camB"].data) for t in ticks] == [(100 * MS, "b0")]  # type: ignore[union-attr]
    ticks = feed(aligner, [Msg("camA", 1, 200 * MS, "a1"), Msg("camB", 1, 190 * MS, "b1")], finish=False)
    assert ticks == [], "a frame nearer to 200 ms than 190 ms may still come"
    ticks = feed(aligner, [Msg("camB", 2, 205 * MS, "b2")], finish=False)
    assert [(t.t_ns, t.members["camB"].data) for t in ticks] == [(200 * MS, "b2")]  # type: ignore[union-attr]
