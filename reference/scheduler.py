"""Requests take turns on a model, ``parallel`` at once, decoded together off the event loop.

Each loaded model gets a `ModelRunner`. A request first takes a reservation: at once while fewer
than the engine's `parallel` requests hold one, else waiting its turn in FIFO order, or failing
at once with `QueueFull` when ``max_waiting`` already wait. Its generations (a choice each) are
submitted to the engine, which decodes them together with every other request's
(`reference.engine.Engine.step`). One thread per model steps the engine while any generation
remains, so the event loop stays free for other routes and llama.cpp is only ever called from
that thread; whatever a step produced reaches the loop in one call.

Leaving a reservation stops whatever still runs in it and waits until the engine has let it go,
whatever way the request ended: normal end, exception, client gone (cancellation), or an
iterator dropped half-way.

Typical use by the HTTP layer::

    async with runner.reserve() as slot:          # QueueFull -> 429 with Retry-After
        async for item in slot.generate(prompt_tokens, params):
            ...                                   # Piece, then one Finish

A slot may run several generations at once (a request's ``n`` choices); they are decoded side
by side. The engine's read-only calls (``tokenize``, ``detokenize``, ``render_chat``, ``check``)
need no reservation: llama.cpp's tokenizer only reads the vocabulary, so they may run on the loop
while the model decodes on its thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Final

from reference.engine import Engine, Finish, Item, Piece, PromptLogprobs, SamplingParams

__all__ = ["ModelRunner", "QueueFull", "RunnerClosed", "Slot"]

logger = logging.getLogger("mimic.reference")

# A reservation's expected length before any has been measured, for Retry-After.
_FIRST_GUESS_SECONDS: Final = 1.0
# Weight of the newest reservation in the running mean behind Retry-After.
_SMOOTHING: Final = 0.3


class QueueFull(Exception):
    """Too many requests already wait for this model; try again in ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"the model's queue is full: retry after {retry_after} s")


class RunnerClosed(Exception):
    """The runner is shutting down: it takes no new work, or it had to stop this one."""


class _Failure:
    """The error that ended a generation, on its way to the consumer."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE: Final = object()


class _Receiver:
    """The loop's side of one generation: its items in order, and when it has left the engine."""

    __slots__ = ("ended", "items")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.ended: asyncio.Future[None] = loop.create_future()

    def receive(self, items: Sequence[Item] | None, end: object) -> None:
        put = self.items.put_nowait
        if items:
            for item in items:
                put(item)
        if end is not None:
            put(end)
            if not self.ended.done():
                self.ended.set_result(None)


class _Outlet:
    """A generation's outlet: what the engine gives it waits for the end of the step."""

    __slots__ = ("_loop", "_receiver", "_stepper")

    def __init__(
        self, stepper: _Stepper, loop: asyncio.AbstractEventLoop, receiver: _Receiver
    ) -> None:
        self._stepper, self._loop, self._receiver = stepper, loop, receiver

    def put(self, items: Sequence[Item]) -> None:
        self._stepper.pending.append((self._loop, self._receiver, list(items), None))

    def close(self, error: BaseException | None = None) -> None:
        end = _DONE if error is None else _Failure(error)
        self._stepper.pending.append((self._loop, self._receiver, None, end))


class _Submission:
    __slots__ = ("cancel", "outlet", "params", "prompt")

    def __init__(
        self, prompt: list[int], params: SamplingParams, cancel: threading.Event, outlet: _Outlet
    ) -> None:
        self.prompt, self.params, self.cancel, self.outlet = prompt, params, cancel, outlet


class _Stepper:
    """Steps the engine on the runner's thread while any generation remains."""

    def __init__(self, engine: Engine, executor: Executor) -> None:
        self._engine = engine
        self._executor = executor
        self._lock = threading.Lock()
        self._incoming: list[_Submission] = []
        self._driving = False
        self.pending: list[tuple[asyncio.AbstractEventLoop, _Receiver, Any, Any]] = []
        """What the current step gave outlets; touched only on the stepping thread."""

    def submit(self, submission: _Submission) -> None:
        """Hand a generation to the engine, starting the stepping thread if it is idle."""
        with self._lock:
            self._incoming.append(submission)
            if self._driving:
                return
            self._driving = True
        try:
            self._executor.submit(self._drive)
        except RuntimeError:  # the executor is shut down: nobody will step the engine
            with self._lock:
                self._driving = False
            raise RunnerClosed("the model is shutting down") from None

    def _drive(self) -> None:
        engine = self._engine
        while True:
            with self._lock:
                incoming, self._incoming = self._incoming, []
            for submission in incoming:
                try:
                    engine.submit(
                        submission.prompt, submission.params, submission.cancel, submission.outlet
                    )
                except BaseException as error:
                    submission.outlet.close(error)
            try:
                remaining = engine.step()
            except Exception:
                # The engine ended every generation with the error; say what broke.
                logger.exception("the engine of model %s failed", engine.name)
                remaining = False
            self._hand_over()
            if not remaining:
                with self._lock:
                    if not self._incoming:
                        self._driving = False
                        return

    def _hand_over(self) -> None:
        """Give each event loop what this step produced for it, in one call."""
        if not self.pending:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Receiver, Any, Any]]] = {}
        for loop, receiver, items, end in self.pending:
            by_loop.setdefault(loop, []).append((receiver, items, end))
        self.pending = []
        for loop, deliveries in by_loop.items():
            # A closed loop raises RuntimeError: nobody is listening any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_receive_all, deliveries)


def _receive_all(deliveries: list[tuple[_Receiver, Any, Any]]) -> None:
    for receiver, items, end in deliveries:
        receiver.receive(items, end)


class _Job:
    __slots__ = ("cancel", "ended")

    def __init__(self, cancel: threading.Event, ended: asyncio.Future[None]) -> None:
        self.cancel = cancel
        self.ended = ended


class Slot:
    """A reservation's turn on the model: run its generations with `generate`."""

    def __init__(self, stepper: _Stepper) -> None:
        self._stepper = stepper
        self._jobs: list[_Job] = []
        self._released = False
        self._aborted = False

    async def generate(
        self, prompt_tokens: Sequence[int], params: SamplingParams
    ) -> AsyncIterator[PromptLogprobs | Piece | Finish]:
        """Submit a generation and yield its items as the engine produces them, then one `Finish`.

        Errors raised by the engine (`reference.engine.InvalidRequest` among them) are raised
        here. If the consumer stops early, the generation is cancelled within a step (a token,
        or a prompt chunk while the prompt is evaluated). Several generations of one slot run
        side by side. If the runner is shut down mid-way, `RunnerClosed` is raised instead of a
        `Finish`.
        """
        if self._released:
            raise RuntimeError("this slot's reservation has ended")
        if self._aborted:
            raise RunnerClosed("the model is shutting down")
        loop = asyncio.get_running_loop()
        receiver = _Receiver(loop)
        cancel = threading.Event()
        outlet = _Outlet(self._stepper, loop, receiver)
        self._stepper.submit(_Submission(list(prompt_tokens), params, cancel, outlet))
        self._jobs = [job for job in self._jobs if not job.ended.done()]
        self._jobs.append(_Job(cancel, receiver.ended))
        finished = False
        try:
            while (item := await receiver.items.get()) is not _DONE:
                if item.__class__ is _Failure:
                    raise item.error
                finished = item.__class__ is Finish
                yield item
            if not finished and self._aborted:
                raise RunnerClosed("the model is shutting down: the generation was stopped")
        finally:
            cancel.set()

    def _abort(self) -> None:
        self._aborted = True
        for job in self._jobs:
            job.cancel.set()

    async def _release(self) -> None:
        self._released = True
        for job in self._jobs:
            job.cancel.set()
        interrupted = False
        for job in self._jobs:
            while not job.ended.done():
                try:
                    await asyncio.shield(job.ended)
                except asyncio.CancelledError:
                    # The turn must not be handed on while the engine still holds this
                    # request's generations: they end within a step now that their cancel
                    # flags are set. Then the cancellation goes on.
                    interrupted = True
        self._jobs = []
        if interrupted:
            raise asyncio.CancelledError


class ModelRunner:
    """Gives one engine's turns to requests, ``engine.parallel`` at once, behind a FIFO queue.

    ``max_waiting`` is how many requests may wait while every turn is held; one more gets
    `QueueFull` at once. Without an ``executor`` the runner owns a one-thread pool, closed by
    `close`.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_waiting: int,
        executor: Executor | None = None,
    ) -> None:
        if isinstance(max_waiting, bool) or not isinstance(max_waiting, int) or max_waiting < 0:
            raise ValueError(f"max_waiting must be an int >= 0, got {max_waiting!r}")
        self._engine = engine
        self._parallel = engine.parallel
        self._max_waiting = max_waiting
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"engine-{engine.name}"
        )
        self._stepper = _Stepper(engine, self._executor)
        self._holding = 0
        self._turns: collections.deque[asyncio.Future[None]] = collections.deque()
        self._waiting = 0
        self._inside = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._active: set[Slot] = set()
        self._closing = False
        self._aborted = False
        self._mean_seconds = _FIRST_GUESS_SECONDS

    @property
    def engine(self) -> Engine:
        """The engine this runner gives turns on."""
        return self._engine

    @property
    def parallel(self) -> int:
        """Reservations held at once, at most."""
        return self._parallel

    @property
    def waiting(self) -> int:
        """Requests waiting for their turn (not counting those holding one)."""
        return self._waiting

    @property
    def busy(self) -> bool:
        """Whether any reservation holds a turn."""
        return self._holding > 0

    def retry_after(self) -> int:
        """Seconds until a newcomer could expect a turn: everyone ahead, at the mean pace."""
        ahead = self._waiting + self._holding
        return max(1, math.ceil(ahead * self._mean_seconds / self._parallel))

    @asynccontextmanager
    async def reserve(self) -> AsyncIterator[Slot]:
        """Wait for this request's turn on the model and hold it for the ``async with`` body.

        Raises `QueueFull` at once if ``max_waiting`` requests already wait, and
        `RunnerClosed` once `close` has begun.
        """
        if self._closing:
            raise RunnerClosed("the model is shutting down")
        if self._must_wait() and self._waiting >= self._max_waiting:
            raise QueueFull(self.retry_after())
        self._inside += 1
        self._idle.clear()
        try:
            await self._take_turn()
            try:
                if self._aborted:
                    raise RunnerClosed("the model is shutting down")
                slot = Slot(self._stepper)
                self._active.add(slot)
                loop = asyncio.get_running_loop()
                started = loop.time()
                try:
                    yield slot
                finally:
                    self._active.discard(slot)
                    try:
                        await slot._release()
                    finally:
                        spent = loop.time() - started
                        self._mean_seconds += _SMOOTHING * (spent - self._mean_seconds)
            finally:
                self._give_turn_back()
        finally:
            self._inside -= 1
            if not self._inside:
                self._idle.set()

    def _must_wait(self) -> bool:
        return self._holding >= self._parallel or bool(self._turns)

    async def _take_turn(self) -> None:
        if not self._must_wait():
            self._holding += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._turns.append(turn)
        self._waiting += 1
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_turn_back()  # given just as the wait was cancelled
            else:
                self._turns.remove(turn)
            raise
        finally:
            self._waiting -= 1

    def _give_turn_back(self) -> None:
        self._holding -= 1
        while self._turns:
            turn = self._turns.popleft()
            if not turn.done():
                self._holding += 1
                turn.set_result(None)
                return

    async def warm_up(self, work: Callable[[Engine], object]) -> None:
        """Run ``work(engine)`` holding every turn, on the thread that steps the engine.

        Start-up work that runs the model (`reference.preflight.exercise`) belongs on this
        thread and no other: llama.cpp computes on OpenMP threads, and libgomp keeps a team of
        them for each thread that calls into it. One decode on another thread left a second team
        beside the first, and streamed tokens/s fell from about 100 to 55 for the server's life.
        """
        taken = 0
        try:
            for _ in range(self._parallel):
                await self._take_turn()
                taken += 1
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, work, self._engine)
        finally:
            for _ in range(taken):
                self._give_turn_back()

    async def close(self, *, grace: float = 10.0) -> None:
        """Shut down: no new reservations, and those already in get ``grace`` seconds.

        After ``grace`` seconds, running generations are stopped (their consumers get
        `RunnerClosed`) and requests still waiting are turned away with `RunnerClosed`.
        Returns once every reservation has ended and the engine holds no generation.
        """
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            self._aborted = True
            for slot in list(self._active):
                slot._abort()
            await self._idle.wait()
        if self._owns_executor:
            self._executor.shutdown(wait=True)  # its thread has nothing left to run
