"""What was said, as queries about words read it: heard lines and the words of a phrase.

The transcribe node's ``heard`` output carries every non-empty transcript as a text line
(``t_ns`` = the end of its speech segment). `HeardLines` keeps the recent ones for the
perceive node: a line counts for ticks from `delay_ns` after its end until `window_ns`
after it, so a query "did someone say hello?" is answered by what was said in the last
`window_ns`, and the answer depends on the line's capture time, never on when Whisper
delivered it (within `delay_ns`: the same events at any replay rate, like a query's own
`query_delay_ns`, `sensorfuse.perception.query_life`). A line that arrives after ticks
past its `end + delay` were already scored is *late*: `add` says so (the node counts it)
and it counts from then on.

Words are compared normalised (`content_words`): lower case, no punctuation, stop words
("the", "someone", "anything"...) left out, and a light suffix stripping that maps
plurals and inflections onto one stem ("flowers" / "flower", "launched" / "launches" /
"launch", "opening" / "open"). A phrase is present in a line when all its content words
are in it, in any order.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

#: Words that say nothing about what was said ("did anyone say anything" is about speech).
STOP_WORDS = frozenset(
    "a an the this that these those some any all and or but of to in on at for with by from as it its "
    "i me my you your we our us they them their he him his she her someone somebody anyone anybody "
    "everybody people person something anything everything nothing stuff thing things word words phrase "
    "is are am was were be been being do does did have has had will would can could should shall may might "
    "please just again now yet aloud loud out what which who".split())
_SUFFIXES = (("ies", "y"), ("ied", "y"), ("sses", "ss"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"),
             ("zes", "z"), ("s", ""))
_VERB_SUFFIXES = ("ing", "ed")
_KEEP_DOUBLE = frozenset("lsz")


def stem(word: str) -> str:
    """A light stem: plural and verb endings off ("launches" -> "launch", "stopped" ->
    "stop"), a final "e" off (so "close", "closed" and "closing" meet). Not English
    morphology: only the same stem for the forms people say of one word."""
    word = word.removesuffix("'s").replace("'", "")
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith(("ss", "us", "is")):
            word = word[: -len(suffix)] + replacement
            break
    for suffix in _VERB_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in _KEEP_DOUBLE | set("aeiou"):
                word = word[:-1]  # "stopp" -> "stop"
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word


def content_words(text: str) -> frozenset[str]:
    """The stems of `text`'s words that are not stop words."""
    words = (w.strip("'") for w in re.findall(r"[a-z0-9']+", text.lower()))
    return frozenset(s for s in (stem(w) for w in words if w and w not in STOP_WORDS) if s not in STOP_WORDS)


@dataclass(frozen=True)
class HeardLine:
    end_ns: int  # capture time the sentence was complete (the line's t_ns)
    text: str


class HeardLines:
    """The heard lines of the last `window_ns`, each counting from `delay_ns` after its end."""

    def __init__(self, window_ns: int, delay_ns: int, capacity: int = 256) -> None:
        if not 0 <= delay_ns < window_ns or capacity < 1:
            raise ValueError(f"need 0 <= delay_ns ({delay_ns}) < window_ns ({window_ns}) and capacity >= 1 "
                             f"({capacity})")
        self.window_ns, self.delay_ns = window_ns, delay_ns
        self._lines: deque[HeardLine] = deque(maxlen=capacity)
        self.received = 0
        self.late = 0  # lines that arrived after a tick they count for was scored
        self.evicted = 0  # lines pushed out by `capacity` before their window ended

    def add(self, end_ns: int, text: str, scored_until_ns: int | None) -> bool:
        """A line; `scored_until_ns`: the last tick already scored (None: none yet). True
        when the line is late (that tick was at or past its `end_ns + delay_ns`)."""
        if scored_until_ns is not None:
            self._forget(scored_until_ns)
        if len(self._lines) == self._lines.maxlen:
            self.evicted += 1
        self._lines.append(HeardLine(end_ns, text))
        self.received += 1
        late = scored_until_ns is not None and scored_until_ns >= end_ns + self.delay_ns
        self.late += late
        return late

    def at(self, t_ns: int) -> tuple[str, ...]:
        """The lines counting at tick `t_ns` (oldest first); lines whose window ended before
        it are forgotten (ticks come in time order)."""
        self._forget(t_ns)
        return tuple(line.text for line in self._lines
                     if line.end_ns + self.delay_ns <= t_ns < line.end_ns + self.window_ns)

    def _forget(self, t_ns: int) -> None:
        while self._lines and self._lines[0].end_ns + self.window_ns <= t_ns:
            self._lines.popleft()
