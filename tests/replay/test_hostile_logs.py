"""Damaged and hostile logs: clean errors or the readable prefix, bounded memory, no crash."""

from __future__ import annotations

import random
import struct
import tracemalloc
from pathlib import Path

import pytest

from sensorfuse.engine import wire
from sensorfuse.replay.mcap_io import LogError, LogReader
from sensorfuse.replay.player import PlayerNode
from sensorfuse.engine.testing import NodeHarness
from tests.replay.replay_helpers import make_session, record

pytestmark = pytest.mark.timeout(90)

MEMORY_BOUND = 48 << 20  # far below the 4 GiB a trusting reader would try to allocate


@pytest.fixture(scope="module")
def good_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, dict[tuple[str, int], wire.Header]]:
    path = tmp_path_factory.mktemp("hostile") / "good.mcap"
    msgs = make_session(n_frames=30)
    record(msgs, path, chunk_mb=0.03)
    return path.read_bytes(), {(m.stream, m.seq): m.header for m in msgs}


def _chunk_offsets(data: bytes) -> list[int]:
    with_reader = []
    pos = 8
    while pos + 9 <= len(data):
        opcode, length = struct.unpack_from("<BQ", data, pos)
        if opcode == 0x06:
            with_reader.append(pos)
        if opcode == 0x0F:  # data end
            break
        pos += 9 + length
    return with_reader


def _read_checked(path: Path, originals: dict[tuple[str, int], wire.Header]) -> tuple[int, list[str]]:
    """Read everything readable; every message that comes back must be exactly right."""
    tracemalloc.start()
    try:
        with LogReader(path) as reader:
            n = 0
            for m in reader.iter_messages():
                try:
                    header, _, _ = m.decode()
                except ValueError:
                    continue  # a damaged message inside an intact-looking chunk: counted by the player
                assert originals[(header.stream, header.seq)] == header
                n += 1
            problems = list(reader.problems)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND, peak
    return n, problems


def _play(path: Path) -> int:
    h = NodeHarness(PlayerNode, {"path": str(path), "rate": "max"})
    node = h.node
    assert isinstance(node, PlayerNode)
    n = 0
    while (outs := node.produce(0)) is not None:
        n += len(outs)
    node.stop()
    return n


def test_truncated_at_random_offsets_gives_readable_prefix(tmp_path: Path, good_log: tuple) -> None:
    data, originals = good_log
    rng = random.Random(1234)
    offsets = sorted({rng.randrange(9, len(data)) for _ in range(25)} | {9, 100, len(data) - 1})
    chunk_ends = [o for o in _chunk_offsets(data)]
    for cut in offsets:
        path = tmp_path / f"cut{cut}.mcap"
        path.write_bytes(data[:cut])
        n, problems = _read_checked(path, originals)
        complete_chunks = sum(1 for o in chunk_ends if o + 9 + struct.unpack_from("<Q", data, o + 1)[0] <= cut)
        if complete_chunks:
            assert n > 0, cut
        assert cut == len(data) or problems, cut
        assert _play(path) == n


def test_flipped_bit_inside_a_chunk_skips_only_that_chunk(tmp_path: Path, good_log: tuple) -> None:
    data, originals = good_log
    chunks = _chunk_offsets(data)
    assert len(chunks) >= 4
    rng = random.Random(99)
    for target in (chunks[1], chunks[len(chunks) // 2]):
        length = struct.unpack_from("<Q", data, target + 1)[0]
        for _ in range(3):
            pos = target + 9 + rng.randrange(40, length)  # inside the chunk's compressed records
            damaged = bytearray(data)
            damaged[pos] ^= 1 << rng.randrange(8)
            path = tmp_path / f"flip{pos}.mcap"
            path.write_bytes(bytes(damaged))
            n, problems = _read_checked(path, originals)
            assert 0 < n < len(originals)
            assert any("damaged" in p for p in problems)
            assert _play(path) == n


def test_huge_declared_lengths_are_refused_without_allocating(tmp_path: Path, good_log: tuple) -> None:
    data, originals = good_log
    first_chunk = _chunk_offsets(data)[0]
    cases = {
        # the outer record length of a chunk (index path sees a mismatch; scan path stops)
        "record_len": (first_chunk + 1, struct.pack("<Q", 1 << 62)),
        # the chunk's declared uncompressed size (bytes 16..24 of the chunk body)
        "uncompressed": (first_chunk + 9 + 16, struct.pack("<Q", 1 << 40)),
        # the chunk's compression-name length prefix
        "string_len": (first_chunk + 9 + 28, struct.pack("<I", 0xFFFFFFF0)),
    }
    for name, (offset, patch) in cases.items():
        for finalised in (True, False):
            damaged = bytearray(data)
            damaged[offset:offset + len(patch)] = patch
            if not finalised:
                damaged = damaged[:-40]  # no footer: the reader must scan
            path = tmp_path / f"{name}-{finalised}.mcap"
            path.write_bytes(bytes(damaged))
            n, problems = _read_checked(path, originals)
            assert problems, (name, finalised)
            assert n < len(originals)
            assert _play(path) == n


def test_garbage_and_empty_files_give_a_clean_error(tmp_path: Path) -> None:
    for name, content in {"empty": b"", "text": b"hello world\n", "magic_only": b"\x89MCAP0\r\n"}.items():
        path = tmp_path / f"{name}.mcap"
        path.write_bytes(content)
        if content.startswith(b"\x89MCAP0\r\n"):
            with LogReader(path) as reader:
                assert list(reader.iter_messages()) == []
                assert reader.problems
        else:
            with pytest.raises(LogError, match="not an MCAP"):
                LogReader(path)
    rng = random.Random(5)
    path = tmp_path / "noise.mcap"
    path.write_bytes(b"\x89MCAP0\r\n" + bytes(rng.randrange(256) for _ in range(100_000)))
    n, problems = _read_checked(path, {})
    assert n == 0 and problems
