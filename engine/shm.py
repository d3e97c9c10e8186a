"""Shared-memory frame plane: large payloads through a per-stream pool of slots in
``/dev/shm``, a small descriptor through ZeroMQ (docs/protocol.md, "Shared memory").

A pool is one file ``/dev/shm/sf-<run>-<node>+<stream>-g<generation>`` (`pool_name`),
created by the producing node when it first publishes a payload of at least `min_bytes`,
unlinked when the node closes, and removed by the supervisor after a node that died
(`remove_pools`). Its layout, all integers little-endian u64 ("words"):

    header   8 words  magic, layout version, slots, slot_bytes, readers, generation,
                      data_offset, leases per reader
    rows     readers x (4 + 2 x LEASES) words: pid, state, block, done_seq, then LEASES
                      pairs (slot + 1, seq) the reader holds (0 = none)
    slots    slots x 4 words: seq_begin, seq_end, size, reserved
    data     at data_offset (4096-aligned), slot s at data_offset + s x slot_bytes

Seqlock: the writer stores `seq_begin` = the new seq, then the payload, then `seq_end` =
the new seq. A reader holds a slot by writing (slot + 1, seq) into one of its row's
lease pairs and then checking `seq_begin == seq_end == seq`; the writer, after storing
`seq_begin`, looks at every row's leases and, finding the slot held, restores `seq_begin`
and takes another slot. A full barrier sits between each side's store and its load
(`_fence`), so one of the two always sees the other: a reader never uses a slot the
writer is filling, and a slot a reader holds is never overwritten. A slot recycled before
its reader got to it is reported (`slot_recycled`), never read.

`block` readers also publish `done_seq`, the last seq they have handled: the writer waits
(back-pressure, like XPUB_NODROP) rather than overwrite a slot a block reader has not
handled yet. A reader row's `state`: 0 = declared, not yet seen (a block reader's row holds
every slot until it registers, for DECLARED_GRACE_S at most), 1 = registered (`pid`
running), 2 = gone (its process died or closed its input).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SHM_DIR = "/dev/shm"
#: Every pool this engine creates is named with this prefix (tests check none is left).
PREFIX = "sf-"
MAGIC = int.from_bytes(b"SFSHM\x00\x01\x00", "little")
LAYOUT_VERSION = 1
#: Lease pairs per reader: one for the message being handled, the rest pin slots whose
#: views the node kept past its handler (the aligner's frame buffer holds a few frames
#: until the other streams' watermarks pass them).
LEASES = 16
HEADER_WORDS = 8
SLOT_WORDS = 4
PAGE = 4096
#: Payloads below this stay inline: measured (docs/benchmarks.md), a 64 KiB block through
#: the pool was slower than inline (p50 +30 %, half the saturation rate: the lease and the
#: descriptor cost more than the socket copy they save), a 640×480×3 frame (900 KiB) as
#: fast or faster.
DEFAULT_MIN_BYTES = 256 * 1024
MAX_DEFAULT_SLOTS = 32
#: How often a writer waiting for a block reader checks whether that reader's process lives.
_PID_CHECK_S = 0.1
#: How long a block reader the plan declares may take to map a new pool (its first
#: descriptor) before the writer stops waiting for it: one that died before that would
#: otherwise stall its producer for good. What it misses after that counts `slot_recycled`.
DECLARED_GRACE_S = 10.0
_ROW_PID, _ROW_STATE, _ROW_BLOCK, _ROW_DONE = 0, 1, 2, 3
_STATE_DECLARED, _STATE_LIVE, _STATE_GONE = 0, 1, 2
_BEGIN, _END, _SIZE = 0, 1, 2
_fence_lock = threading.Lock()


def _fence() -> None:
    """A full memory barrier: taking an uncontended lock is an atomic read-modify-write
    (x86 LOCK prefix, an acquire/release pair elsewhere), which store→load order needs."""
    with _fence_lock:
        pass


def run_tag(run_dir: str) -> str:
    """8 hex digits naming a run in pool names (its run dir may be any path)."""
    return hashlib.sha1(os.path.abspath(run_dir).encode()).hexdigest()[:8]


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text.replace("/", "."))


def pool_name(run_dir: str, node: str, stream: str, generation: int) -> str:
    """`+` ends the node's name (never in `_safe` text): node `cam` owns no pool of `cam-2`."""
    return f"{PREFIX}{run_tag(run_dir)}-{_safe(node)}+{_safe(stream)}-g{generation}"


def remove_pools(run_dir: str, node: str | None = None) -> list[str]:
    """Unlink the pools of one node of a run (a producer that died without closing them),
    or of every node with `node=None`; returns the names removed."""
    head = f"{PREFIX}{run_tag(run_dir)}-" + ("" if node is None else f"{_safe(node)}+")
    removed = []
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return removed
    for name in names:
        if name.startswith(head):
            try:
                os.unlink(os.path.join(SHM_DIR, name))
                removed.append(name)
            except FileNotFoundError:
                continue  # its producer unlinked it meanwhile
    return removed


def default_slots(readers: list[tuple[str, int]]) -> int:
    """Slots for a stream's same-host readers [(policy, queue)]: per reader its queue (one
    for `latest`; `block` readers hold the writer back instead) plus one slot handled and
    two pinned, and two for the writer to move on."""
    need = 2 + sum(3 + (1 if policy == "latest" else 2 if policy == "block" else queue) for policy, queue in readers)
    return max(4, min(need, MAX_DEFAULT_SLOTS))


class NoSpace(Exception):
    """The pool cannot be created (/dev/shm full) or every slot is held by readers."""


def _layout(slots: int, readers: int, leases: int = LEASES) -> tuple[int, int]:
    """(first word of the slot headers, data offset in bytes)."""
    slot_word = HEADER_WORDS + readers * (4 + 2 * leases)
    data_offset = -(-((slot_word + slots * SLOT_WORDS) * 8) // PAGE) * PAGE
    return slot_word, data_offset


class _Mapping:
    """One mapped pool file: its words and its data."""

    def __init__(self, fd: int, size: int) -> None:
        import mmap

        self.mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.words = np.ndarray((HEADER_WORDS,), dtype="<u8", buffer=self.mm)
        slots, readers = int(self.words[2]), int(self.words[4])
        self.slots, self.readers, self.slot_bytes = slots, readers, int(self.words[3])
        self.generation = int(self.words[5])
        self.n_leases = int(self.words[7])  # the pool's, as a C reader takes it: not this build's
        slot_word, self.data_offset = _layout(slots, readers, self.n_leases)
        all_words = np.ndarray((slot_word + slots * SLOT_WORDS,), dtype="<u8", buffer=self.mm)
        self.rows = all_words[HEADER_WORDS:slot_word].reshape(readers, 4 + 2 * self.n_leases)
        self.leases = self.rows[:, 4:].reshape(readers, self.n_leases, 2)
        self.slot = all_words[slot_word:].reshape(slots, SLOT_WORDS)
        self.data = memoryview(self.mm)

    def held(self, slot: int, seq: int) -> bool:
        """Whether any reader holds `slot` at `seq` (a list walk: ~4× faster than numpy's
        elementwise ops on these few dozen words)."""
        words = self.rows[:, 4:].ravel().tolist()  # a copy: rows are not contiguous past their header
        target = slot + 1
        return any(s == target and q == seq for s, q in zip(words[0::2], words[1::2]))


class PoolWriter:
    """The producer's side of one stream's pool."""

    def __init__(self, name: str, *, slots: int, slot_bytes: int, block: list[bool], generation: int) -> None:
        self.name = name
        self.path = os.path.join(SHM_DIR, name)
        slot_bytes = -(-slot_bytes // PAGE) * PAGE
        _, data_offset = _layout(slots, len(block))
        size = data_offset + slots * slot_bytes
        try:
            os.unlink(self.path)  # a predecessor of this very name that nobody removed
        except FileNotFoundError:
            pass
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            # Reserve the pages now: on a full tmpfs a plain ftruncate succeeds and the
            # first write into the mapping kills the process with SIGBUS.
            os.posix_fallocate(fd, 0, size)
            header = np.array([MAGIC, LAYOUT_VERSION, slots, slot_bytes, len(block), generation, data_offset, LEASES],
                              dtype="<u8")
            os.pwrite(fd, header.tobytes(), 0)
            self.map = _Mapping(fd, size)
        except OSError as exc:
            os.close(fd)
            os.unlink(self.path)
            if exc.errno in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
                raise NoSpace(f"{self.path}: {exc.strerror}") from None
            raise
        os.close(fd)
        self.map.rows[:, _ROW_BLOCK] = np.array(block, dtype=np.uint64)
        self.slots, self.slot_bytes, self.generation = slots, slot_bytes, generation
        self.nbytes = size
        self.seq = 0
        self._next = 0
        self._pid_checked = 0.0
        self._created = time.monotonic()

    def _block_holds(self, seq: int) -> bool:
        """Whether a block reader has not handled `seq` yet (so its slot must wait)."""
        rows = self.map.rows
        for r in range(rows.shape[0]):
            if not rows[r, _ROW_BLOCK] or rows[r, _ROW_STATE] == _STATE_GONE:
                continue
            if rows[r, _ROW_STATE] == _STATE_DECLARED:
                if time.monotonic() - self._created < DECLARED_GRACE_S:
                    return True
            elif rows[r, _ROW_DONE] < seq:
                return True
        return False

    def _reap_readers(self) -> None:
        """Mark rows of readers whose process died as gone: they hold nothing any more."""
        now = time.monotonic()
        if now - self._pid_checked < _PID_CHECK_S:
            return
        self._pid_checked = now
        rows = self.map.rows
        for r in range(rows.shape[0]):
            if rows[r, _ROW_STATE] == _STATE_LIVE and not _pid_alive(int(rows[r, _ROW_PID])):
                rows[r, _ROW_STATE] = _STATE_GONE
                self.map.leases[r] = 0

    def write(self, payload: Any, *, block_until: float | None = None) -> tuple[int, int] | None:
        """Copy `payload` into a free slot; (slot, seq). None: a block reader held the
        oldest slot until `block_until`. Raises NoSpace when readers hold every slot."""
        n = len(payload)
        m = self.map
        while True:
            held = 0
            for k in range(self.slots):
                s = (self._next + k) % self.slots
                old = int(m.slot[s, _END])
                if old and self._block_holds(old):
                    break  # the oldest slot first: a newer one would reorder a block reader's view
                if m.held(s, old):
                    held += 1
                    continue
                seq = self.seq + 1
                m.slot[s, _BEGIN] = seq
                _fence()
                if m.held(s, old):  # a reader took it between our look and our mark
                    m.slot[s, _BEGIN] = old
                    held += 1
                    continue
                off = m.data_offset + s * self.slot_bytes
                m.data[off:off + n] = payload
                m.slot[s, _SIZE] = n
                m.slot[s, _END] = seq
                self.seq = seq
                self._next = (s + 1) % self.slots
                return s, seq
            else:
                self._reap_readers()
                raise NoSpace(f"readers hold all {held} slots")
            self._reap_readers()
            if block_until is not None and time.monotonic() >= block_until:
                return None
            time.sleep(0.0002)

    def descriptor(self, slot: int, seq: int, size: int) -> dict[str, Any]:
        """The descriptor of one written slot (docs/protocol.md)."""
        return {"pool": self.name, "gen": self.generation, "slot": slot,
                "offset": self.map.data_offset + slot * self.slot_bytes, "size": size, "seq": seq, "dev": None}

    def in_use(self) -> int:
        """Slots a reader holds now (handling or pinned)."""
        lease = self.map.leases[:, :, 0]
        return len({int(v) for v in lease[lease > 0]})

    def close(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        m = self.map
        del m.rows, m.leases, m.slot, m.words
        m.data.release()
        try:
            m.mm.close()
        except BufferError:
            pass  # a zero-copy send still references it: unmapped when that is freed


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Lease:
    """A reader's hold on one slot while its message is handled."""

    slot: int
    seq: int
    msg_refs: int = 0
    root_refs: int = 0


@dataclass
class _Pin:
    root: Any
    slot: int
    seq: int
    index: int
    mapping: _Mapping


@dataclass
class PoolReader:
    """A consumer's side of one stream's pools (a restarted producer's new generation is
    a new pool, mapped when its first descriptor arrives)."""

    row: int
    block: bool
    pid: int = field(default_factory=os.getpid)
    mapping: _Mapping | None = None
    name: str = ""
    pins: list[_Pin] = field(default_factory=list)
    #: views the node kept while every lease pair was taken (not protected: counted)
    unpinned: int = 0

    def resolve(self, desc: dict[str, Any]) -> tuple[np.ndarray, _Mapping] | None:
        """The slot a descriptor names as a read-only uint8 array, or None when it was
        recycled already (or the pool is gone)."""
        if desc["pool"] != self.name and not self._map(desc["pool"], desc["seq"]):
            return None
        m = self.mapping
        assert m is not None
        slot, seq, size = desc["slot"], desc["seq"], desc["size"]
        if not (0 <= slot < m.slots) or size > m.slot_bytes or int(m.slot[slot, _END]) != seq:
            return None
        off = m.data_offset + slot * m.slot_bytes
        root = np.frombuffer(m.data, dtype=np.uint8, count=size, offset=off)
        return root, m

    def _map(self, name: str, first_seq: int) -> bool:
        if "/" in name or not name.startswith(PREFIX):
            return False
        try:
            fd = os.open(os.path.join(SHM_DIR, name), os.O_RDWR)
        except OSError:
            return False  # unlinked already: its producer is gone
        try:
            mapping = _Mapping(fd, os.fstat(fd).st_size)
        finally:
            os.close(fd)
        if int(mapping.words[0]) != MAGIC or self.row >= mapping.readers:
            return False
        self.mapping, self.name, self.pins = mapping, name, []
        row = mapping.rows[self.row]
        row[4:] = 0
        row[_ROW_DONE] = max(0, first_seq - 1)
        row[_ROW_PID] = self.pid
        row[_ROW_STATE] = _STATE_LIVE
        return True

    def acquire(self, mapping: _Mapping, slot: int, seq: int) -> Lease | None:
        """Hold a slot for the handler; None when it was recycled since it was queued."""
        self._sweep_pins()
        if mapping is not self.mapping:
            return None  # a pool of a producer that restarted since
        leases = mapping.leases[self.row]
        leases[0] = (slot + 1, seq)
        _fence()
        if int(mapping.slot[slot, _BEGIN]) != seq or int(mapping.slot[slot, _END]) != seq:
            leases[0] = (0, 0)
            return None
        return Lease(slot, seq)

    def release(self, lease: Lease, root: np.ndarray, *, escaped: bool) -> None:
        """After the handler: pin the slot while the node keeps a view of it (`escaped`),
        else free it; a block reader also marks the seq handled."""
        m = self.mapping
        assert m is not None
        if escaped:
            free = [i for i in range(1, m.n_leases) if not m.leases[self.row, i, 0]]
            if free:
                m.leases[self.row, free[0]] = (lease.slot + 1, lease.seq)
                self.pins.append(_Pin(root, lease.slot, lease.seq, free[0], m))
            else:
                self.unpinned += 1
        if self.block:
            m.rows[self.row, _ROW_DONE] = lease.seq
        m.leases[self.row, 0] = (0, 0)

    def close(self) -> None:
        """Leave the pool: this reader holds nothing and a producer no longer waits for it."""
        m = self.mapping
        if m is not None:
            m.leases[self.row] = 0
            m.rows[self.row, _ROW_STATE] = _STATE_GONE
        self.mapping, self.pins = None, []

    def _sweep_pins(self) -> None:
        kept = []
        for pin in self.pins:
            # pin.root referenced by the pin and getrefcount's argument only: nothing uses it
            if sys.getrefcount(pin.root) <= 2 or pin.mapping is not self.mapping:
                pin.mapping.leases[self.row, pin.index] = (0, 0)
            else:
                kept.append(pin)
        self.pins = kept


class ShmOutput:
    """A publisher's pool for one stream, created with the first payload that goes into it
    (sized to it unless `slot_bytes` is set): payloads of at least `min_bytes` that fit a
    slot go through it, the others inline with a counted reason (`fallback`)."""

    def __init__(self, name: str, *, slots: int, slot_bytes: int = 0, block: list[bool],
                 min_bytes: int = DEFAULT_MIN_BYTES, generation: int = 0) -> None:
        self.name = name
        self.slots = slots
        self.slot_bytes = slot_bytes
        self.block = block
        self.min_bytes = min_bytes
        self.generation = generation
        self.pool: PoolWriter | None = None
        #: reason -> payloads sent inline instead: too_large (over a slot), no_space
        self.fallback: dict[str, int] = {}
        self._no_space = False  # creating the pool failed once: not retried per frame

    def _count(self, reason: str) -> None:
        self.fallback[reason] = self.fallback.get(reason, 0) + 1

    def write(self, payload: Any, n: int, *, block_until: float | None) -> dict[str, Any] | bool | None:
        """Put one payload of `n` bytes into the pool: its descriptor; False to send it
        inline (counted); None when a block reader held the slot until `block_until`."""
        if self.pool is None:
            if self._no_space:
                self._count("no_space")
                return False
            try:
                self.pool = PoolWriter(self.name, slots=self.slots, slot_bytes=self.slot_bytes or n,
                                       block=self.block, generation=self.generation)
            except NoSpace:
                self._no_space = True
                self._count("no_space")
                return False
        if n > self.pool.slot_bytes:
            self._count("too_large")
            return False
        try:
            got = self.pool.write(payload, block_until=block_until)
        except NoSpace:
            self._count("no_space")
            return False
        return None if got is None else self.pool.descriptor(got[0], got[1], n)

    def stats(self) -> dict[str, Any]:
        """For the heartbeat: the plane, the memory bound and what is held now."""
        out: dict[str, Any] = {"plane": "shm" if self.pool is not None else "inline"}
        if self.pool is not None:
            out.update(slots=self.pool.slots, slot_bytes=self.pool.slot_bytes, in_use=self.pool.in_use())
        if self.fallback:
            out["fallback"] = dict(self.fallback)
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
