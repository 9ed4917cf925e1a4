"""What each KV stream holds, which sequence owns it, and where a new prompt can start.

A stream keeps what its last sequence left in it after that sequence ends: the leading chunks
of its prompt (evaluated by `reference.engine._prefix.chunk_plan`'s cuts) and, once the whole
prompt was evaluated, its last logits. A new prompt starts from the stream that shares the
most with it, the way the engine has always reused its one cache, now over every stream:

- the same prompt, evaluated whole: nothing to evaluate, its first token is sampled from the
  kept logits;
- the same leading chunks, tokens and cuts alike: those are kept, and the rest is evaluated
  with exactly the calls a fresh stream would make, so that no logit changes;
- nothing shared: the whole prompt is evaluated.

Where a new sequence runs (`Streams.place`): in the free stream that holds the most of its
prompt, else in the free stream used least recently, so that one request after another keeps
``parallel`` prompts cached; but beside the sequences already running, whose streams must stay
consecutive (`reference.engine._decoder` says why). Where the best match lies in another
stream, it is copied over (a few milliseconds; evaluating one 32-token chunk takes about 120 ms
here).

Cells never move within a stream: a stream holds positions ``0 .. length - 1`` in cells
``0 .. length - 1``, because it only ever grows at its end, is cut back from a position on, or
is copied whole. That is what keeps a copied or kept prefix exactly what a fresh evaluation
would compute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

import numpy as np

from reference.engine._decoder import Decoder
from reference.engine._prefix import shared_chunks

__all__ = ["Match", "StreamContent", "Streams"]

Owner = TypeVar("Owner")


@dataclass
class StreamContent:
    """What a stream's cells hold, as far as a later prompt can reuse it."""

    tokens: Sequence[int] = ()
    """The prompt being evaluated, or evaluated last, in the stream."""
    chunks: Sequence[tuple[int, int]] = ()
    """That prompt's chunk plan."""
    done: int = 0
    """How many leading chunks of ``chunks`` the cells hold."""
    length: int = 0
    """Cells in use: positions ``0 .. length - 1`` (the prompt's, then generated tokens)."""
    logits: np.ndarray[Any, np.dtype[np.single]] | None = field(default=None, repr=False)
    """The prompt's last logits, once the whole prompt is evaluated; never written again."""

    def holds_whole(self, key: tuple[int, ...]) -> bool:
        """Whether the cells hold exactly the prompt ``key``, evaluated whole, with its logits."""
        return (
            self.logits is not None
            and self.length >= len(key)
            and len(self.tokens) == len(key)
            and tuple(self.tokens) == key
        )


@dataclass(frozen=True)
class Match:
    """Where a prompt can start: ``stream``'s cells, ``chunks`` of its plan, or all of it."""

    stream: int
    chunks: int
    whole: bool


class Streams(Generic[Owner]):
    """The decoder's streams: their contents and owners. Every change of cells goes through here."""

    def __init__(self, decoder: Decoder) -> None:
        self._decoder = decoder
        self.contents = [StreamContent() for _ in range(decoder.streams)]
        self.owners: list[Owner | None] = [None] * decoder.streams
        self._used = [0] * decoder.streams
        self._clock = 0

    def place(self, prompt: Sequence[int], plan: Sequence[tuple[int, int]]) -> int | None:
        """The free stream a new sequence should run in, or None if every stream is owned.

        Beside the owned streams if there are any (just below or above them, so they stay
        consecutive; anywhere if neither is free, and `gap` then says what to move). Of the
        streams allowed, the one holding the best match for ``prompt`` if it is one of them,
        else the one used least recently.
        """
        free = [stream for stream, owner in enumerate(self.owners) if owner is None]
        if not free:
            return None
        owned = [stream for stream, owner in enumerate(self.owners) if owner is not None]
        if owned:
            beside = [s for s in (owned[0] - 1, owned[-1] + 1) if s in free]
            free = beside or free
        match = self.best_match(prompt, plan)
        if match is not None and match.stream in free:
            return match.stream
        return min(free, key=self._used.__getitem__)

    def gap(self) -> tuple[int, int] | None:
        """A move that closes a gap between owned streams, ``(source, target)``; None if none.

        The owner of the highest owned stream moves to the lowest free stream between them.
        """
        owned = [stream for stream, owner in enumerate(self.owners) if owner is not None]
        if len(owned) < 2 or owned[-1] - owned[0] == len(owned) - 1:
            return None
        target = next(s for s in range(owned[0], owned[-1]) if self.owners[s] is None)
        return owned[-1], target

    def best_match(self, prompt: Sequence[int], plan: Sequence[tuple[int, int]]) -> Match | None:
        """The stream that lets ``prompt`` evaluate least, or None if no stream shares a chunk.

        A whole prompt beats any prefix; between equal matches, the lowest stream wins.
        """
        key = tuple(prompt)
        best: Match | None = None
        for stream, content in enumerate(self.contents):
            if content.holds_whole(key):
                return Match(stream, len(plan), whole=True)
            if not content.done:
                continue
            shared = shared_chunks(content.chunks[: content.done], content.tokens, plan, prompt)
            if shared and (best is None or shared > best.chunks):
                best = Match(stream, shared, whole=False)
        return best

    def take(self, stream: int, owner: Owner) -> None:
        """Give ``stream`` to ``owner``."""
        if self.owners[stream] is not None:
            raise RuntimeError(f"stream {stream} already has an owner")
        self.owners[stream] = owner

    def release(self, stream: int) -> None:
        """The owner leaves; the cells stay for whoever can reuse them."""
        self.owners[stream] = None
        self._touch(stream)

    def _touch(self, stream: int) -> None:
        self._clock += 1
        self._used[stream] = self._clock

    def start(
        self,
        stream: int,
        prompt: Sequence[int],
        plan: Sequence[tuple[int, int]],
        match: Match | None,
    ) -> int:
        """Bring ``stream`` to what ``match`` shares with ``prompt``; return the chunks kept.

        Copies the matched stream's cells over when it is another stream. Afterwards the
        stream records ``prompt`` as its prompt, with the kept chunks done (all of them, and
        the prompt's logits, for a whole match).
        """
        if match is None:
            self.clear(stream)
            self.contents[stream] = StreamContent(tokens=prompt, chunks=plan)
            return 0
        if match.stream != stream:
            self._decoder.copy(match.stream, stream)
            self.contents[stream] = replace(self.contents[match.stream])
            self._touch(match.stream)
        content = self.contents[stream]
        if match.whole:
            self._cut(stream, len(prompt))
            return len(plan)
        end = plan[match.chunks - 1][1]
        self._cut(stream, end)
        self.contents[stream] = StreamContent(
            tokens=prompt, chunks=plan, done=match.chunks, length=min(content.length, end)
        )
        return match.chunks

    def evaluated(self, stream: int, end: int) -> None:
        """A chunk of the stream's prompt, up to position ``end``, is now in its cells."""
        content = self.contents[stream]
        content.done += 1
        content.length = end

    def evaluated_whole(self, stream: int, logits: np.ndarray[Any, np.dtype[np.single]]) -> None:
        """The stream's prompt is in its cells whole; ``logits`` (a copy) are its last ones."""
        self.contents[stream].logits = logits

    def decoded(self, stream: int) -> None:
        """A generated token went into the stream's next cell."""
        self.contents[stream].length += 1

    def move(self, source: int, target: int) -> None:
        """Move the owner of ``source``, and its cells, to the free stream ``target``."""
        owner = self.owners[source]
        self._decoder.copy(source, target)
        self.contents[target] = replace(self.contents[source])
        self.owners[target], self.owners[source] = owner, None

    def clear(self, stream: int) -> None:
        """Empty the stream: its cells hold nothing reusable (unknown, or cut short)."""
        self._decoder.keep(stream, 0)
        self.contents[stream] = StreamContent()

    def _cut(self, stream: int, end: int) -> None:
        content = self.contents[stream]
        if content.length > end:
            self._decoder.keep(stream, end)
            content.length = end
