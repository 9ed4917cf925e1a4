"""The one real engine: llama.cpp, decoding every running sequence of a model together.

`LlamaEngine.step` advances every generation of the model by one step: sequences that waited
for a KV stream get one (starting from whatever another stream already holds of their prompt),
one chunk of one prompt is evaluated (so that a long prompt delays the running streams by a
chunk per token, never by its whole length), each sequence whose prompt is ready samples its
first token, and one ``llama_decode`` decodes the last token of every running sequence. Each
sequence has its own KV stream, sampler chain, stop rules and limit; one that ends or whose
client leaves frees its stream at the next step.

What a sequence computes never depends on what else runs: every sequence has a stream of its
own (`reference.engine._bindings` gives the measurements), prompts are cut into chunks by
their own tokens alone (`reference.engine._prefix`), and a prompt chunk is evaluated in a call
of its own. So a request with a seed gives the same text alone or beside others, and the same
text it gave before the engine decoded several sequences together (one sequence computes
exactly what ``Llama`` computed: tests/reference/test_engine_batching.py).

Several choices of one request (``n``, ``best_of``) share their prompt: the first one
evaluates it while the others wait (`Phase.FOLLOW`), then the others copy its stream and
sample their first tokens from the same logits.
"""

from __future__ import annotations

import collections
import ctypes
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jinja2
import llama_cpp
from llama_cpp import llama_chat_format as chat_formats
from llama_cpp.llama_grammar import json_schema_to_gbnf

from reference.engine import _bindings
from reference.engine._base import (
    MAX_TOP_LOGPROBS,
    CancelFlag,
    ContextOverflow,
    EngineError,
    Finish,
    InvalidGrammar,
    InvalidRequest,
    Item,
    Outlet,
    Piece,
    PromptLogprobs,
    SamplingParams,
)
from reference.engine._decoder import DecodeFailed, Decoder
from reference.engine._prefix import PROMPT_CHUNK, chunk_plan, turn_boundaries
from reference.engine._sampler import Candidates, TokenSampler, token_logprob
from reference.engine._sequence import Phase
from reference.engine._sequence import Sequence as Generation
from reference.engine._streams import Match, Streams
from reference.engine._vocabulary import Vocabulary
from reference.host_cpus import default_threads
from reference.schema_limits import check_grammar, check_schema

__all__ = ["CHAT_FORMATS", "LlamaEngine", "load_engine"]

#: Chat templates llama-cpp-python ships as Jinja source, by the names it registers them under.
CHAT_FORMATS: Mapping[str, str] = {
    "chatml": chat_formats.CHATML_CHAT_TEMPLATE,
    "mistral-instruct": chat_formats.MISTRAL_INSTRUCT_CHAT_TEMPLATE,
    "mixtral-instruct": chat_formats.MIXTRAL_INSTRUCT_CHAT_TEMPLATE,
    "llama-3": chat_formats.LLAMA3_INSTRUCT_CHAT_TEMPLATE,
}

_LOGGER = logging.getLogger("reference.engine.llama_cpp")
# ggml's log levels (ggml.h). llama-cpp-python's own table predates a renumbering and prints
# llama.cpp's warnings as errors, one reason to route the log ourselves. Its INFO is chatty.
_GGML_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}
_GGML_CONTINUE = 5


class _LogRouter:
    """Sends llama.cpp's log to `logging` instead of stderr, and lets a thread capture it.

    Some grammar errors (no ``root`` rule) are explained only in llama.cpp's log, so capturing
    is how an `InvalidGrammar` message can say why.
    """

    def __init__(self) -> None:
        self._local = threading.local()
        self._last_level = logging.DEBUG
        self._installed = False
        self._callback = llama_cpp.llama_log_callback(self._on_log)

    def install(self) -> None:
        # llama.cpp's log callback is process-wide; installing ours once is enough.
        if not self._installed:
            llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))
            self._installed = True

    @contextmanager
    def capture(self) -> Iterator[list[str]]:
        messages: list[str] = []
        self._local.messages = messages
        try:
            yield messages
        finally:
            self._local.messages = None

    def _on_log(self, level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        message = text.decode("utf-8", "replace").strip()
        captured: list[str] | None = getattr(self._local, "messages", None)
        if captured is not None:
            if message:
                captured.append(message)
            return
        if level != _GGML_CONTINUE:
            self._last_level = _GGML_LEVELS.get(level, logging.DEBUG)
        if message and _LOGGER.isEnabledFor(self._last_level):
            _LOGGER.log(self._last_level, "%s", message)


_LOG_ROUTER = _LogRouter()
_STDERR_LOCK = threading.Lock()


@contextmanager
def _parser_errors(grammar: str) -> Iterator[list[str]]:
    """Collect what llama.cpp's grammar parser prints to stderr about ``grammar``.

    The parser explains an error only with ``fprintf(stderr, ...)``, past any log callback, so
    the only way to a message that says why is to point file descriptor 2 elsewhere for the
    parse. Whatever else reached stderr meanwhile (another thread's output) is written back.
    """
    errors: list[str] = []
    echo = f"\n\n{grammar}\n"
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield errors
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            printed = sink.read().decode("utf-8", "replace")
            prefix = "parse: error parsing grammar: "
            start = printed.find(prefix)
            if start >= 0:
                end = printed.find(echo, start)
                errors.append(printed[start + len(prefix) : end if end >= 0 else None].strip())
                printed = printed[:start] + (printed[end + len(echo) :] if end >= 0 else "")
            if printed:
                sys.stderr.write(printed)


def load_engine(
    model_path: str | Path,
    *,
    context_size: int = 2048,
    parallel: int = 1,
    threads: int | None = None,
    chat_format: str | None = None,
    chat_template: str | None = None,
    name: str | None = None,
    extra_buffer_types: bool = False,
    flash_attention: bool = True,
) -> LlamaEngine:
    """Load a GGUF model and return its engine.

    ``context_size`` is what each sequence may hold, prompt and completion together; llama.cpp
    rounds it up to a multiple of 256 and the engine's ``context_size`` reports the size it
    really got. ``parallel`` sequences are decoded together, each with a KV cache of that size
    (memory grows with ``parallel x context_size``). ``threads=None`` runs one thread per
    physical core this process may use (`reference.host_cpus.default_threads`, logged). The
    chat template is the GGUF's own (``tokenizer.chat_template``) unless ``chat_format`` names
    one of `CHAT_FORMATS` or ``chat_template`` gives Jinja source; give at most one of the
    two. ``name`` defaults to the file's stem. ``extra_buffer_types`` turns on llama.cpp's
    weight repacking at load (AMX and other kernels): off by default, see
    `reference.config.ModelConfig.extra_buffer_types` for why. ``flash_attention`` runs
    llama.cpp's fused attention kernel: faster, and other numbers than without it (see
    `reference.config.ModelConfig.flash_attention`).
    """
    path = Path(model_path)
    if isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 2:
        raise ValueError(f"context_size must be an int of at least 2, got {context_size!r}")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ValueError(f"parallel must be a positive int, got {parallel!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or a positive int, got {threads!r}")
    if chat_format is not None and chat_template is not None:
        raise ValueError("give chat_format or chat_template, not both")
    if chat_format is not None and chat_format not in CHAT_FORMATS:
        raise ValueError(f"unknown chat_format {chat_format!r}; known: {sorted(CHAT_FORMATS)}")
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if threads is None:
        chosen = default_threads()
        threads = chosen.threads
        _LOGGER.info("%s: %d llama.cpp threads (%s)", path.name, threads, chosen.reason)
    _LOG_ROUTER.install()
    try:
        model = _bindings.load_model(str(path), extra_buffer_types=extra_buffer_types)
    except ValueError as error:
        raise EngineError(f"cannot load the model {path}: {error}") from error
    try:
        if chat_template is None and chat_format is not None:
            chat_template = CHAT_FORMATS[chat_format]
        if chat_template is None:
            own = llama_cpp.llama_model_chat_template(model, None)
            chat_template = own.decode("utf-8", "replace") if own else None
        if not chat_template:
            raise EngineError(f"{path} carries no chat template: give chat_format or chat_template")
        try:
            context = _bindings.new_context(
                model,
                context_size=context_size,
                sequences=parallel,
                threads=threads,
                flash_attention=flash_attention,
            )
        except ValueError as error:
            raise EngineError(f"cannot load the model {path}: {error}") from error
    except BaseException:
        llama_cpp.llama_model_free(model)
        raise
    return LlamaEngine(
        model,
        context,
        name=name or path.stem,
        flash_attention=flash_attention,
        chat_template=chat_template,
        penalty_window=context_size,
    )


class _EitherSet:
    """Set when either event is: a caller's cancel flag, or the engine's own."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: threading.Event, second: threading.Event) -> None:
        self._first, self._second = first, second

    def is_set(self) -> bool:
        return self._first.is_set() or self._second.is_set()


class _Collected:
    """An outlet that keeps what it receives, for `LlamaEngine.generate`."""

    __slots__ = ("closed", "error", "items")

    def __init__(self) -> None:
        self.items: collections.deque[Item] = collections.deque()
        self.closed = False
        self.error: BaseException | None = None

    def put(self, items: Sequence[Item]) -> None:
        self.items.extend(items)

    def close(self, error: BaseException | None = None) -> None:
        self.closed, self.error = True, error


class LlamaEngine:
    """An `Engine` over one llama.cpp model and context. Build it with `load_engine`.

    `submit`, `step`, `generate` and `prompt_logprobs` run the model: call them from one
    thread at a time (the model's runner calls them all from its own thread). The
    vocabulary's methods (`tokenize`, `detokenize`, `render_chat`, `check`) may run on any.

    **Prompt reuse.** Same seed, same request, same text, whatever ran before: so the KV cache
    of an earlier prompt is reused only where that cannot change a logit. Every prompt is
    evaluated in the same calls, whatever the cache holds: in chunks that `chunk_plan` cuts from
    the prompt's tokens alone (where a turn's content starts, see `turn_boundaries`; every
    `PROMPT_CHUNK` tokens within a turn; a one-token tail joined to the chunk before it), each
    chunk in a decode call of its own (llama.cpp's batch-of-one kernels round differently from
    its batched ones: evaluated token by token, SmolLM2's last logits moved by up to 0.59). A
    new prompt keeps, from whichever stream holds the most of it, the leading chunks its own
    plan shares with that stream's prompt, tokens and positions alike (never a generated token:
    those were evaluated one at a time); from there it makes exactly the calls a fresh run would
    make, so its logits are bit-identical (tests/reference/test_engine_prefix_cache.py compares
    them). The price of exactness: where llama-cpp-python re-evaluates from the first differing
    token, this engine re-evaluates from the start of the turn it is in.

    A prompt equal to one a stream evaluated whole needs no evaluation at all: its cells are
    kept (a generation only appended after them) and its first token is sampled from the last
    logits kept from its evaluation (one vocabulary of floats per stream).

    A prompt's own logprobs (`SamplingParams.prompt_logprobs`) need logits at every position:
    they come from an evaluation of their own, in the same chunks, that asks for every
    position's output row. Asking for more rows changes how the last layer is computed, so that
    evaluation's cells are not reused: the prompt is then evaluated again as for any request.
    """

    def __init__(
        self,
        model: Any,
        context: Any,
        *,
        name: str,
        chat_template: str,
        penalty_window: int,
        flash_attention: bool,
    ) -> None:
        self._model = model
        self._context = context
        self._name = name
        self._flash_attention = flash_attention
        self._penalty_window = penalty_window
        self._vocabulary = Vocabulary(model)
        self._vocab_size = self._vocabulary.size
        self._decoder = Decoder(context, self._vocab_size)
        self._streams: Streams[Generation] = Streams(self._decoder)
        self._candidates = Candidates(self._vocab_size)
        self._queue: collections.deque[Generation] = collections.deque()
        self._running: list[Generation] = []
        # Whether the next step goes to prompts (and first tokens) rather than to decoding.
        self._prompt_turn = False
        vocabulary = self._vocabulary
        # A model cannot sample from nothing: an empty prompt is evaluated as its BOS token,
        # as llama-cpp-python's create_completion does.
        self._empty_prompt = [vocabulary.bos if vocabulary.bos >= 0 else vocabulary.eos]
        self._chat = chat_formats.Jinja2ChatFormatter(
            template=chat_template,
            eos_token=vocabulary.special_text(vocabulary.eos),
            bos_token=vocabulary.special_text(vocabulary.bos),
            add_generation_prompt=True,
        )

    # ------------------------------------------------------------------ what the model is

    @property
    def name(self) -> str:
        """The model's name, for logs and benchmarks."""
        return self._name

    @property
    def flash_attention(self) -> bool:
        """Whether llama.cpp computes attention with its fused kernel (it decides the numbers)."""
        return self._flash_attention

    @property
    def context_size(self) -> int:
        """Tokens one sequence may hold: prompt and completion together."""
        return self._decoder.stream_size

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return self._vocab_size

    @property
    def parallel(self) -> int:
        """Sequences decoded together, at most; more wait for a stream."""
        return self._decoder.streams

    @property
    def decode_calls(self) -> int:
        """``llama_decode`` calls made so far (tests count them)."""
        return self._decoder.calls

    # ------------------------------------------------------------------ the vocabulary

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """Token ids of ``text`` (lone surrogates, which JSON allows, become U+FFFD)."""
        return self._vocabulary.tokenize(text, add_bos=add_bos, special=special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``; control tokens render as nothing."""
        self._check_token_ids(tokens, "token ids")
        return self._vocabulary.detokenize(tokens)

    def render_chat(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> str:
        """The prompt for ``messages`` in the chat template, ending with the assistant's turn.

        Content given as a list of parts is joined from its text parts, and absent content
        (an assistant turn that only calls tools) is empty: most templates concatenate
        ``message['content']`` as a string.
        """
        flat = [{**m, "content": _text_content(m.get("content"))} for m in messages]
        try:
            return self._chat(
                messages=flat, tools=list(tools) if tools is not None else None
            ).prompt
        except (jinja2.TemplateError, TypeError, ValueError) as error:
            raise InvalidRequest(
                f"the chat template cannot render these messages: {error}"
            ) from error

    def check(self, prompt_tokens: Sequence[int], params: SamplingParams) -> None:
        """Raise `InvalidRequest` if `submit` would refuse this request."""
        self._prepare(prompt_tokens, params)

    # ------------------------------------------------------------------ generating

    def submit(
        self,
        prompt_tokens: Sequence[int],
        params: SamplingParams,
        cancel: CancelFlag,
        outlet: Outlet,
    ) -> None:
        """Check the request (raising `InvalidRequest` at once) and queue it for `step`.

        When prompt and ``max_tokens`` do not both fit, generation ends at the context's end
        with reason ``"length"``. With ``params.prompt_logprobs`` set, the first item is the
        `PromptLogprobs` of ``prompt_tokens`` (of no tokens for an empty prompt).
        """
        self._queue.append(self._generation(prompt_tokens, params, cancel, outlet))

    def _generation(
        self,
        prompt_tokens: Sequence[int],
        params: SamplingParams,
        cancel: CancelFlag,
        outlet: Outlet,
    ) -> Generation:
        prompt, grammar = self._prepare(prompt_tokens, params)
        sampler = TokenSampler(
            self._vocabulary.handle,
            self._vocab_size,
            params,
            penalty_window=self._penalty_window,
            grammar=grammar,
        )
        generation = Generation(
            prompt,
            self._plan(prompt),
            params,
            sampler,
            cancel,
            outlet,
            limit=min(params.max_tokens, self.context_size - len(prompt)),
            # A prompt of fewer than two tokens has no logprobs to evaluate (none predicts its
            # first token), so it gets its (possibly empty) `PromptLogprobs` at once.
            echo=params.prompt_logprobs is not None and len(prompt_tokens) >= 2,
        )
        if params.prompt_logprobs is not None and len(prompt_tokens) < 2:
            generation.items.append(PromptLogprobs(self._prompt_pieces(prompt_tokens), ()))
        return generation

    def step(self) -> bool:
        """Make one decode call's worth of progress; return whether any generation remains.

        A step first drops cancelled generations and gives waiting ones free streams, then
        either decodes the next token of every running generation, or evaluates one chunk of a
        prompt and samples the first token of each generation whose prompt is ready. While
        there is work of both kinds, the two alternate: a long prompt delays running
        generations by one chunk per token. A generation's items reach its outlet by the end
        of the step that produced them (so a first token is handed over before the next decode
        call), and its outlet is closed in the step it ends in: after its `Finish`, or without
        one once its ``cancel`` is set, or with the `EngineError` that ended it.
        """
        try:
            self._drop_cancelled()
            # Gaps closed first, then newcomers beside the block: the decoding sequences stay
            # in consecutive streams while a newcomer's prompt is evaluated.
            self._compact()
            self._admit()
            decoding = any(g.phase is Phase.DECODING for g in self._running)
            if self._prompt_turn or not decoding:
                self._evaluate_a_chunk()
                self._sample_first_tokens()
                self._prompt_turn = False
            else:
                self._decode_running()
                self._prompt_turn = any(g.phase is not Phase.DECODING for g in self._running)
        except BaseException as error:
            # A fault of the engine's own, not of one request: every generation ends with it,
            # and no stream is trusted any more.
            failure = EngineError(f"the engine failed: {error!r}")
            for generation in [*self._running, *self._queue]:
                self._end(generation, failure)
            for stream in range(self.parallel):
                self._streams.clear(stream)
            raise
        for generation in self._running:
            if generation.items:
                generation.outlet.put(generation.items)
                generation.items = []
        return bool(self._queue or self._running)

    def generate(
        self,
        prompt_tokens: Sequence[int],
        params: SamplingParams,
        cancel: threading.Event,
    ) -> Iterator[PromptLogprobs | Piece | Finish]:
        """One generation alone: check it now, then return the iterator that runs it.

        The iterator ends with exactly one `Finish`, or early without one once ``cancel`` is
        set; closing it early stops the generation. It steps the engine itself: do not use it
        while something else steps the engine.
        """
        collected = _Collected()
        abandoned = threading.Event()
        generation = self._generation(
            prompt_tokens, params, _EitherSet(cancel, abandoned), collected
        )
        return self._drain(generation, collected, cancel, abandoned)

    def prompt_logprobs(
        self, prompt_tokens: Sequence[int], top: int, cancel: threading.Event
    ) -> PromptLogprobs | None:
        """The logprob of each prompt token after the ones before it, with ``top`` alternatives.

        Logprobs are the model's raw distribution, as in `TokenLogprob`. Returns None if
        ``cancel`` was set before the prompt was evaluated. It runs the model, like `generate`,
        and changes nothing a later generation returns.
        """
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
            raise ValueError(f"top must be an int between 0 and {MAX_TOP_LOGPROBS}, got {top!r}")
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=top)
        items = self.generate(prompt_tokens, params, cancel)
        try:
            first = next(items, None)
        finally:
            items.close()  # type: ignore[attr-defined]
        return first if isinstance(first, PromptLogprobs) else None

    def close(self) -> None:
        """Free the model and its context. The engine is unusable afterwards."""
        for generation in [*self._running, *self._queue]:
            self._end(generation, EngineError("the engine was closed"))
        self._decoder.close()
        llama_cpp.llama_free(self._context)
        llama_cpp.llama_model_free(self._model)

    # ------------------------------------------------------------------ the step's parts

    def _drop_cancelled(self) -> None:
        for generation in [*self._queue, *self._running]:
            if generation.cancel.is_set():
                self._end(generation)

    def _admit(self) -> None:
        """Give waiting generations free streams, first come first served (`Streams.place`)."""
        while self._queue:
            generation = self._queue[0]
            stream = self._streams.place(generation.prompt, generation.plan)
            if stream is None:
                return
            self._queue.popleft()
            self._streams.take(stream, generation)
            generation.stream = stream
            self._running.append(generation)
            self._start(generation)

    def _start(self, generation: Generation) -> None:
        """Decide how the generation's stream comes to hold its prompt."""
        stream = generation.stream
        assert stream is not None
        if generation.echo:
            self._streams.clear(stream)
            generation.phase, generation.next_chunk = Phase.ECHO, 0
            return
        match = self._streams.best_match(generation.prompt, generation.plan)
        if match is None or not match.whole:
            leader = next(
                (
                    other
                    for other in self._running
                    if other.phase is Phase.PROMPT and other.key == generation.key
                ),
                None,
            )
            if leader is not None:
                generation.phase, generation.leader = Phase.FOLLOW, leader
                return
        kept = self._streams.start(stream, generation.prompt, generation.plan, match)
        if match is not None and match.whole:
            generation.phase = Phase.READY
            generation.logits = self._streams.contents[stream].logits
        else:
            generation.phase, generation.next_chunk = Phase.PROMPT, kept

    def _compact(self) -> None:
        """Close gaps between owned streams, so that one decode call is one pass."""
        while (move := self._streams.gap()) is not None:
            source, target = move
            moved = self._streams.owners[source]
            assert moved is not None
            self._streams.move(source, target)
            moved.stream = target

    def _evaluate_a_chunk(self) -> None:
        """Evaluate the next chunk of the first generation (by arrival) that has prompt left."""
        generation = next(
            (g for g in self._running if g.phase is Phase.ECHO or g.phase is Phase.PROMPT), None
        )
        if generation is None:
            return
        stream = generation.stream
        assert stream is not None
        begin, end = generation.plan[generation.next_chunk]
        chunk = generation.prompt[begin:end]
        echo = generation.phase is Phase.ECHO
        try:
            self._decoder.evaluate(stream, chunk, begin, every_row=echo)
        except DecodeFailed as error:
            self._streams.clear(stream)
            self._end(generation, error)
            return
        generation.next_chunk += 1
        finished = generation.next_chunk == len(generation.plan)
        if echo:
            self._record_prompt_logprobs(generation, begin, end)
            if finished:
                # The rows asked for changed how these cells were computed: start afresh.
                generation.echo = False
                self._start(generation)
            return
        self._streams.evaluated(stream, end)
        if not finished:
            return
        logits = self._decoder.row(-1).copy()
        self._streams.evaluated_whole(stream, logits)
        generation.phase, generation.logits = Phase.READY, logits
        for follower in self._running:
            if follower.phase is Phase.FOLLOW and follower.leader is generation:
                self._follow(follower, generation)

    def _follow(self, follower: Generation, leader: Generation) -> None:
        assert follower.stream is not None and leader.stream is not None
        whole = Match(leader.stream, len(leader.plan), whole=True)
        self._streams.start(follower.stream, follower.prompt, follower.plan, whole)
        follower.phase, follower.logits, follower.leader = Phase.READY, leader.logits, None

    def _record_prompt_logprobs(self, generation: Generation, begin: int, end: int) -> None:
        top = generation.params.prompt_logprobs
        assert top is not None
        prompt = generation.prompt
        pieces = self._vocabulary.pieces
        # Row i predicts the token after it; the last row of the prompt predicts none.
        for row, token in enumerate(prompt[begin + 1 : end + 1]):
            generation.prompt_logprobs.append(
                token_logprob(
                    self._decoder.row(row), token, top, pieces, data=self._prompt_piece(token)
                )
            )
        if end == len(prompt):
            entries = tuple(generation.prompt_logprobs)
            generation.items.append(PromptLogprobs(self._prompt_pieces(prompt), entries))
            generation.prompt_logprobs = []

    def _sample_first_tokens(self) -> None:
        for generation in list(self._running):
            if generation.phase is Phase.READY:
                logits = generation.logits
                assert logits is not None
                generation.logits = None
                token = generation.sampler.sample(self._candidates, logits)
                self._take(generation, token, lambda logits=logits: logits)
                if generation.running:
                    generation.phase = Phase.DECODING

    def _decode_running(self) -> None:
        decoding = sorted(
            (g for g in self._running if g.phase is Phase.DECODING),
            key=lambda g: g.stream,  # type: ignore[arg-type, return-value]
        )
        if not decoding:
            return
        try:
            self._decoder.step([(g.stream, g.token, g.position) for g in decoding])  # type: ignore[misc]
        except DecodeFailed as error:
            for generation in decoding:
                assert generation.stream is not None
                self._streams.clear(generation.stream)
                self._end(generation, error)
            return
        decoder = self._decoder
        context = decoder.context
        for row, generation in enumerate(decoding):
            assert generation.stream is not None
            self._streams.decoded(generation.stream)
            generation.position += 1
            token = generation.sampler.sample_at(context, row)
            self._take(generation, token, lambda row=row: decoder.row(row))

    def _take(self, generation: Generation, token: int, logits: Callable[[], Any]) -> None:
        """Hand the generation its sampled token; end it if that finishes it."""
        vocabulary = self._vocabulary
        if generation.take(
            token,
            logits,
            pieces=vocabulary.pieces,
            end_of_generation=vocabulary.end_of_generation,
        ):
            self._end(generation)

    def _end(self, generation: Generation, error: BaseException | None = None) -> None:
        """The generation leaves the engine: its stream is freed, its outlet told."""
        if generation.stream is not None:
            self._streams.release(generation.stream)
            generation.stream = None
            self._running.remove(generation)
            for follower in self._running:
                if follower.leader is generation:
                    # Start over: the leader's stream still holds what it evaluated.
                    follower.leader = None
                    self._start(follower)
        else:
            self._queue.remove(generation)
        generation.sampler.close()
        try:
            if generation.items:
                generation.outlet.put(generation.items)
                generation.items = []
        finally:
            generation.outlet.close(error)

    # ------------------------------------------------------------------ requests

    def _drain(
        self,
        generation: Generation,
        collected: _Collected,
        cancel: threading.Event,
        abandoned: threading.Event,
    ) -> Iterator[Item]:
        self._queue.append(generation)  # only once iterated, like the old token loop
        try:
            while True:
                while collected.items:
                    yield collected.items.popleft()
                    if cancel.is_set():  # a step may have produced more: they are dropped
                        return
                if collected.closed:
                    if collected.error is not None:
                        raise collected.error
                    return
                self.step()
        finally:
            if not collected.closed:
                abandoned.set()
                while not collected.closed:
                    self.step()

    def _prepare(
        self, prompt_tokens: Sequence[int], params: SamplingParams
    ) -> tuple[list[int], str | None]:
        prompt = list(prompt_tokens) if len(prompt_tokens) else self._empty_prompt
        if len(prompt) >= self.context_size:
            raise ContextOverflow(len(prompt), self.context_size)
        self._check_token_ids(prompt, "the prompt")
        self._check_token_ids(params.logit_bias.keys(), "logit_bias")
        return prompt, self._grammar(params)

    def _check_token_ids(self, tokens: Any, where: str) -> None:
        if len(tokens) and (min(tokens) < 0 or max(tokens) >= self._vocab_size):
            bad = next(t for t in tokens if not 0 <= t < self._vocab_size)
            raise InvalidRequest(
                f"{where} holds token id {bad}, but the model's token ids are "
                f"0 to {self._vocab_size - 1}"
            )

    def _grammar(self, params: SamplingParams) -> str | None:
        """The GBNF that constrains the output, parsed once here, where it can fail."""
        # Bounded before any work: a big enough schema or grammar costs seconds to convert, or
        # overflows the C stack of llama.cpp's recursive parser (see reference.schema_limits).
        if params.json_schema is not None:
            check_schema(params.json_schema)
            try:
                gbnf = json_schema_to_gbnf(json.dumps(params.json_schema))
            except Exception as error:  # the converter raises anything from KeyError up
                raise InvalidGrammar(
                    f"json_schema cannot be turned into a grammar: {error!r}"
                ) from error
        elif params.grammar is not None:
            gbnf = params.grammar
        else:
            return None
        check_grammar(gbnf)
        # llama.cpp hands a NULL sampler for a grammar that does not parse, and a chain would
        # crash on it: so parse once here, where it can fail with the reason.
        with _LOG_ROUTER.capture() as messages, _parser_errors(gbnf) as errors:
            sampler = llama_cpp.llama_sampler_init_grammar(
                self._vocabulary.handle, gbnf.encode("utf-8"), b"root"
            )
        if not sampler:
            why = "; ".join(errors or messages) or "llama.cpp rejected it"
            raise InvalidGrammar(f"the grammar does not parse: {why}")
        llama_cpp.llama_sampler_free(sampler)
        return gbnf

    def _plan(self, prompt: Sequence[int]) -> list[tuple[int, int]]:
        """The chunks that evaluate ``prompt``, whatever the cache holds."""
        vocabulary = self._vocabulary
        turns = turn_boundaries(
            prompt, vocabulary.end_of_generation, vocabulary.opens_turn, vocabulary.breaks_line
        )
        return chunk_plan(prompt, PROMPT_CHUNK, turns)

    def _prompt_piece(self, token: int) -> bytes:
        """A prompt token's bytes, a control token as the text that wrote it (so they join)."""
        return self._vocabulary.pieces[token] or self._vocabulary.special_piece(token)

    def _prompt_pieces(self, prompt: Sequence[int]) -> tuple[bytes, ...]:
        return tuple(self._prompt_piece(token) for token in prompt)


def _text_content(content: Any) -> Any:
    if content is None:
        return ""
    if isinstance(content, list):
        return "\n".join(
            part.get("text", "")
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return content
