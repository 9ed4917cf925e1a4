"""One generation at a time per model, off the event loop, with a bounded queue for the rest.

A ``llama_cpp.Llama`` is not safe to share between threads, and a generation holds the CPU for
seconds. So each loaded model gets a `ModelRunner`: a request first takes a reservation
(waiting its turn in FIFO order, or failing at once with `QueueFull` when too many already
wait), then runs its generations in the runner's worker thread while the event loop stays free
for other routes. Each piece the engine yields is handed to the loop as it comes.

Leaving a reservation stops whatever still runs in it and waits for the worker to finish, so
the model is really free when the next request starts, whatever way the request ended: normal
end, exception, client gone (cancellation), or an iterator dropped half-way.

Typical use by the HTTP layer::

    async with runner.reserve() as slot:          # QueueFull -> 429 with Retry-After
        async for item in slot.generate(prompt_tokens, params):
            ...                                   # Piece, then one Finish

The engine's read-only calls (``tokenize``, ``detokenize``, ``render_chat``, ``check``) need no
reservation: llama.cpp's tokenizer only reads the vocabulary, so they may run on the loop while
a generation decodes in the worker (llama.cpp's own server tokenizes in its HTTP threads too).
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Final

from reference.engine import Engine, Finish, Piece, PromptLogprobs, SamplingParams

__all__ = ["ModelRunner", "QueueFull", "RunnerClosed", "Slot"]

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
    """An exception raised in the worker thread, on its way to the consumer."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


_DONE: Final = object()


class _Job:
    __slots__ = ("cancel", "future")

    def __init__(self, cancel: threading.Event, future: asyncio.Future[None]) -> None:
        self.cancel = cancel
        self.future = future


class Slot:
    """A reservation's turn on the model: run generations with `generate`, one at a time."""

    def __init__(self, engine: Engine, executor: Executor) -> None:
        self._engine = engine
        self._executor = executor
        self._jobs: list[_Job] = []
        self._released = False
        self._aborted = False

    async def generate(
        self, prompt_tokens: Sequence[int], params: SamplingParams
    ) -> AsyncIterator[PromptLogprobs | Piece | Finish]:
        """Run ``engine.generate`` in the worker and yield its pieces, then one `Finish`.

        Errors raised by the engine (`reference.engine.InvalidRequest` among them) are raised
        here. If the consumer stops early, the generation is cancelled within a token (or a
        prompt chunk, while the prompt is evaluated); so is a previous generation of this slot
        still running when this one starts. If the runner is shut down mid-way, `RunnerClosed`
        is raised instead of a `Finish`.
        """
        if self._released:
            raise RuntimeError("this slot's reservation has ended")
        if self._aborted:
            raise RunnerClosed("the model is shutting down")
        # The previous generation's thread may still be winding down (its last item arrives
        # before its future resolves): it must be over before the model is used again.
        await self._stop_jobs()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        cancel = threading.Event()
        future = loop.run_in_executor(
            self._executor,
            _produce,
            self._engine,
            list(prompt_tokens),
            params,
            cancel,
            loop.call_soon_threadsafe,
            queue.put_nowait,
        )
        self._jobs.append(_Job(cancel, future))
        finished = False
        try:
            while (item := await queue.get()) is not _DONE:
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
        await self._stop_jobs()

    async def _stop_jobs(self) -> None:
        """Stop what still runs and wait, even through cancellation, until the worker is done."""
        for job in self._jobs:
            job.cancel.set()
        interrupted = False
        for job in self._jobs:
            while not job.future.done():
                try:
                    await asyncio.shield(job.future)
                except asyncio.CancelledError:
                    # Releasing the model while its thread still decodes would let the next
                    # request into a Llama that is not thread-safe. The thread ends within
                    # a token or a prompt chunk now that its cancel flag is set; then the
                    # cancellation goes on.
                    interrupted = True
        self._jobs = [job for job in self._jobs if not job.future.done()]
        if interrupted:
            raise asyncio.CancelledError


def _produce(
    engine: Engine,
    prompt_tokens: list[int],
    params: SamplingParams,
    cancel: threading.Event,
    call_soon_threadsafe: Callable[..., Any],
    put: Callable[[Any], None],
) -> None:
    """The worker's side: iterate the engine, handing each item to the loop as it comes."""
    try:
        try:
            for item in engine.generate(prompt_tokens, params, cancel):
                call_soon_threadsafe(put, item)
        except BaseException as error:
            call_soon_threadsafe(put, _Failure(error))
        else:
            call_soon_threadsafe(put, _DONE)
    except RuntimeError:  # the event loop is closed: nobody is listening any more
        cancel.set()


class ModelRunner:
    """Serializes one engine's generations behind a bounded FIFO queue.

    ``max_waiting`` is how many requests may wait while one runs; one more gets `QueueFull`
    at once. Without an ``executor`` the runner owns a one-thread pool, closed by `close`.
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
        self._max_waiting = max_waiting
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"engine-{engine.name}"
        )
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._inside = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._active: Slot | None = None
        self._closing = False
        self._aborted = False
        self._mean_seconds = _FIRST_GUESS_SECONDS

    @property
    def engine(self) -> Engine:
        """The engine this runner serializes."""
        return self._engine

    @property
    def waiting(self) -> int:
        """Requests waiting for their turn (not counting the one running)."""
        return self._waiting

    @property
    def busy(self) -> bool:
        """Whether a reservation holds the model."""
        return self._lock.locked()

    def retry_after(self) -> int:
        """Seconds until a newcomer could expect a turn: everyone ahead, at the mean pace."""
        ahead = self._waiting + (1 if self._lock.locked() else 0)
        return max(1, math.ceil(ahead * self._mean_seconds))

    @asynccontextmanager
    async def reserve(self) -> AsyncIterator[Slot]:
        """Wait for this request's turn on the model and hold it for the ``async with`` body.

        Raises `QueueFull` at once if ``max_waiting`` requests already wait, and
        `RunnerClosed` once `close` has begun.
        """
        if self._closing:
            raise RunnerClosed("the model is shutting down")
        if (self._lock.locked() or self._waiting) and self._waiting >= self._max_waiting:
            raise QueueFull(self.retry_after())
        self._inside += 1
        self._idle.clear()
        try:
            self._waiting += 1
            try:
                await self._lock.acquire()
            finally:
                self._waiting -= 1
            try:
                if self._aborted:
                    raise RunnerClosed("the model is shutting down")
                slot = Slot(self._engine, self._executor)
                self._active = slot
                loop = asyncio.get_running_loop()
                started = loop.time()
                try:
                    yield slot
                finally:
                    self._active = None
                    try:
                        await slot._release()
                    finally:
                        spent = loop.time() - started
                        self._mean_seconds += _SMOOTHING * (spent - self._mean_seconds)
            finally:
                self._lock.release()
        finally:
            self._inside -= 1
            if not self._inside:
                self._idle.set()

    async def warm_up(self, work: Callable[[Engine], object]) -> None:
        """Run ``work(engine)`` in the model's turn, on the thread every generation runs on.

        Start-up work that runs the model (`reference.preflight.exercise`) belongs on this
        thread and no other: llama.cpp computes on OpenMP threads, and libgomp keeps a team of
        them for each thread that calls into it. One decode on another thread left a second team
        beside the first, and streamed tokens/s fell from about 100 to 55 for the server's life.
        """
        async with self._lock:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._executor, work, self._engine)

    async def close(self, *, grace: float = 10.0) -> None:
        """Shut down: no new reservations, and those already in get ``grace`` seconds.

        After ``grace`` seconds, the running generation is stopped (its consumer gets
        `RunnerClosed`) and requests still waiting are turned away with `RunnerClosed`.
        Returns once every reservation has ended and the worker is idle.
        """
        self._closing = True
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            self._aborted = True
            if self._active is not None:
                self._active._abort()
            await self._idle.wait()
        if self._owns_executor:
            self._executor.shutdown(wait=True)  # its thread has nothing left to run
