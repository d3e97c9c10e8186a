"""Which text queries are alive: from their line until cancelled or `ttl_ns` of event time.

A text line is a new query when its key (the text stream's seq) was not seen before. Its
times are the line's capture time, not the tick that first carried it: a query is scored
from `delay_ns` after its line until `ttl_ns` after it. Why the delay: text is an optional
aligner stream (a tick does not wait for it), so a line can reach the ticks a few ticks
late when a log is replayed as fast as possible; a query that starts `delay_ns` after its
line (and a cancel that acts then) gives the same events whenever the line arrived within
that time, as the scene and object stages do with their results.

Cancel lines are commands, not queries (`cancel_target`); they end the queries asked
before them:

- ``cancel`` / ``stop`` / ``cancel all`` / ``stop all`` / ``never mind``: every live query ends;
- ``cancel <query>`` / ``stop <query>``: the live queries with that text end (compared
  without case, surrounding spaces or trailing punctuation); nothing else happens when
  none has it.

With `ttl_ns` 0 a query lives until cancelled; at most `capacity` live at once (a new one
ends the oldest). Times are event time.
"""

from __future__ import annotations

from dataclasses import dataclass

from sensorfuse.perception.ticks import Ref

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
    since_ns: int  # capture time of its line
    ref: Ref | None  # the text message that asked it (provenance of its events)


class ActiveQueries:
    def __init__(self, ttl_ns: int, capacity: int = 8, delay_ns: int = 0) -> None:
        if ttl_ns < 0 or delay_ns < 0 or capacity < 1:
            raise ValueError(f"need ttl_ns >= 0 ({ttl_ns}), delay_ns >= 0 ({delay_ns}) and capacity >= 1 "
                             f"({capacity})")
        self.ttl_ns, self.capacity, self.delay_ns = ttl_ns, capacity, delay_ns
        self._live: dict[str, Query] = {}
        self._cancels: list[tuple[int, str]] = []  # (line time, target) not yet applied
        self._seen: str | None = None  # key of the last line handled (the aligner repeats it)

    def offer(self, t_ns: int, key: str, text: str, ref: Ref | None = None) -> None:
        """A text line captured at `t_ns`; a line seen before (same key) changes nothing."""
        if key == self._seen:
            return
        self._seen = key
        target = cancel_target(text)
        if target is not None:
            self._cancels.append((t_ns, target))
        elif key not in self._live:
            if len(self._live) >= self.capacity:
                del self._live[next(iter(self._live))]
            self._live[key] = Query(key, text, t_ns, ref)

    def live(self, t_ns: int) -> list[Query]:
        """The queries scored at tick `t_ns`, oldest first (ended ones are dropped)."""
        due = [c for c in self._cancels if c[0] + self.delay_ns <= t_ns]
        self._cancels = [c for c in self._cancels if c[0] + self.delay_ns > t_ns]
        for at, target in due:
            self._live = {k: q for k, q in self._live.items()
                          if q.since_ns > at or (target != ALL and normalize(q.text) != target)}
        if self.ttl_ns:
            self._live = {k: q for k, q in self._live.items() if t_ns - q.since_ns < self.ttl_ns}
        return [q for q in self._live.values() if q.since_ns + self.delay_ns <= t_ns]
