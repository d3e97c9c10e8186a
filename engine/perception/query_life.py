"""Which text queries are alive: from their line until cancelled or `ttl_ns` of event time.

A text line is a new query when its key (the text stream's seq) was not seen before. Cancel
lines are commands, not queries (`cancel_target`):

- ``cancel`` / ``stop`` / ``cancel all`` / ``stop all`` / ``never mind``: every live query ends;
- ``cancel <query>`` / ``stop <query>``: the live queries with that text end (compared
  without case, surrounding spaces or trailing punctuation); nothing else happens when
  none has it.

With `ttl_ns` 0 a query lives until cancelled; at most `capacity` live at once (a new one
ends the oldest). Times are event time (tick `t_ns`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sensorfuse.engine.perception.ticks import Ref

CANCEL_WORDS = ("cancel", "stop")
CANCEL_ALL = ("cancel", "stop", "cancel all", "stop all", "never mind", "nevermind")
ALL = "*"


def normalize(text: str) -> str:
    return " ".join(text.lower().strip().rstrip(".!?").split())


def cancel_target(text: str) -> str | None:
    """For a cancel line: the normalized query text it cancels, or `ALL`; None for any other line."""
    line = normalize(text)
    if line in CANCEL_ALL:
        return ALL
    word, _, rest = line.partition(" ")
    return rest if word in CANCEL_WORDS and rest else None


@dataclass(frozen=True)
class Query:
    key: str  # the event key: ``text:<seq>``
    text: str
    since_ns: int
    ref: Ref | None  # the text message that asked it (provenance of its events)


class ActiveQueries:
    def __init__(self, ttl_ns: int, capacity: int = 8) -> None:
        if ttl_ns < 0 or capacity < 1:
            raise ValueError(f"need ttl_ns >= 0 ({ttl_ns}) and capacity >= 1 ({capacity})")
        self.ttl_ns, self.capacity = ttl_ns, capacity
        self._live: dict[str, Query] = {}
        self._seen: str | None = None  # key of the last line handled (the aligner repeats it)

    def offer(self, t_ns: int, key: str, text: str, ref: Ref | None = None) -> None:
        """The tick's text line; a line seen before (same key) changes nothing."""
        if key == self._seen:
            return
        self._seen = key
        target = cancel_target(text)
        if target == ALL:
            self._live.clear()
        elif target is not None:
            self._live = {k: q for k, q in self._live.items() if normalize(q.text) != target}
        elif key not in self._live:
            if len(self._live) >= self.capacity:
                del self._live[next(iter(self._live))]
            self._live[key] = Query(key, text, t_ns, ref)

    def live(self, t_ns: int) -> list[Query]:
        """The queries alive at `t_ns`, oldest first (expired ones are dropped)."""
        if self.ttl_ns:
            self._live = {k: q for k, q in self._live.items() if t_ns - q.since_ns < self.ttl_ns}
        return list(self._live.values())
