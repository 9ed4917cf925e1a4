"""The one real engine: llama.cpp through llama-cpp-python, with a lean token loop of its own.

llama-cpp-python's ``create_completion`` does a lot of Python work per token (detokenizing the
whole tail, logprob bookkeeping, stop handling on bytes, building response dicts). This engine
drives the lower-level ``Llama.generate`` token iterator instead and does per token only what a
request asked for: a table lookup for the token's bytes, an incremental UTF-8 decode, and the
stop matcher when there are stop sequences. It evaluates prompts itself (see `LlamaEngine`), so
that the KV cache of a previous prompt is reused without changing a single logit.
"""

from __future__ import annotations

import codecs
import ctypes
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import jinja2
import llama_cpp
import numpy as np
from llama_cpp import Llama, LogitsProcessorList
from llama_cpp import llama_chat_format as chat_formats
from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

from reference.engine import _bindings
from reference.engine._base import (
    MAX_TOP_LOGPROBS,
    ContextOverflow,
    EngineError,
    Finish,
    InvalidGrammar,
    InvalidRequest,
    Piece,
    PromptLogprobs,
    SamplingParams,
    TokenLogprob,
    TopLogprob,
)
from reference.engine._prefix import PROMPT_CHUNK, chunk_plan, shared_chunks, turn_boundaries
from reference.engine._stops import StopMatcher
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

# llama.cpp reserves this seed for "pick one at random", so request seeds are folded below it.
_RANDOM_SEED = llama_cpp.LLAMA_DEFAULT_SEED
_PIECE_BUFFER_SIZE = 256

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
    threads: int | None = None,
    chat_format: str | None = None,
    chat_template: str | None = None,
    name: str | None = None,
    extra_buffer_types: bool = False,
) -> LlamaEngine:
    """Load a GGUF model and return its engine.

    llama.cpp rounds ``context_size`` up to a multiple of 256; the engine's ``context_size``
    reports the size it really got. ``threads=None`` runs one thread per physical core this
    process may use (`reference.host_cpus.default_threads`, logged). The
    chat template is the GGUF's own (``tokenizer.chat_template``) unless ``chat_format`` names
    one of `CHAT_FORMATS` or ``chat_template`` gives Jinja source; give at most one of the
    two. ``name`` defaults to the file's stem. ``extra_buffer_types`` turns on llama.cpp's
    weight repacking at load (AMX and other kernels): off by default, see
    `reference.config.ModelConfig.extra_buffer_types` for why.
    """
    path = Path(model_path)
    if isinstance(context_size, bool) or not isinstance(context_size, int) or context_size < 2:
        raise ValueError(f"context_size must be an int of at least 2, got {context_size!r}")
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
        llama = _bindings.open_llama(
            str(path),
            extra_buffer_types=extra_buffer_types,
            n_ctx=context_size,
            n_threads=threads,
            n_threads_batch=threads,
            # Penalties look back over this many generated tokens: all of them, as OpenAI's do.
            last_n_tokens_size=context_size,
            logits_all=False,
            verbose=False,
        )
    except (ValueError, RuntimeError) as error:
        raise EngineError(f"cannot load the model {path}: {error}") from error
    if chat_template is None:
        chat_template = (
            CHAT_FORMATS[chat_format]
            if chat_format is not None
            else llama.metadata.get("tokenizer.chat_template")
        )
    if not chat_template:
        llama.close()
        raise EngineError(f"{path} carries no chat template: give chat_format or chat_template")
    return LlamaEngine(llama, name=name or path.stem, chat_template=chat_template)


class LlamaEngine:
    """An `Engine` over one ``llama_cpp.Llama``. Build it with `load_engine`.

    Same seed, same request, same text, whatever ran before: so the KV cache of an earlier
    prompt is reused only where that cannot change a logit. ``Llama.generate``'s own prefix
    reuse breaks this: it evaluates the rest of the prompt (often just its last token) in a
    batch of one, and llama.cpp's batch-of-one kernels round differently from its batched ones
    (on SmolLM2 the last logits moved by up to 0.59, and greedy continuations diverged).

    So this engine evaluates every prompt in the same calls, whatever the cache holds: in
    chunks that `chunk_plan` cuts from the prompt's tokens alone (where a turn's content starts,
    see `turn_boundaries`; every `PROMPT_CHUNK` tokens within a turn; a one-token tail joined
    to the chunk before it). It remembers the chunks it evaluated last. A new prompt keeps the
    cached tokens up to the end of the longest run of leading chunks that its own plan shares
    with them, tokens and positions alike (never a generated token: those were evaluated one
    at a time); from there it makes exactly the calls a fresh run would make, on the same cache
    contents, so its logits are bit-identical (tests/reference/test_engine_prefix_cache.py
    compares them). llama.cpp's batched kernels also agree with each other whatever the batch
    size above one (measured: chunks of 16, 32, 64 or the whole prompt give the same logits),
    but that is not promised for every quantization, and the plan does not rely on it. The
    price of exactness: where llama-cpp-python re-evaluates from the first differing token, this
    engine re-evaluates from the start of the turn it is in (two tokens more for two questions
    that open with the same word).

    A prompt equal to the last one evaluated needs no evaluation at all: the cache still holds
    its tokens, computed by its own plan (a generation only appends after them), so the engine
    drops what the generation appended and puts back the prompt's last logits, kept from its
    evaluation (one vocabulary of floats), where llama.cpp's sampler reads them. Between chunks
    the engine checks the cancel flag, which makes long prompts abortable.

    A prompt's own logprobs (`prompt_logprobs`) need logits at every position. They come from
    an evaluation of their own, in the same chunks, that asks llama.cpp for every position's
    output row (keeping them all for the whole context, ``logits_all``, would cost a context
    times a vocabulary of floats: 384 MB at 2048 x 49152). Asking for more rows changes how
    the last layer is computed, so its cache is not reused: the next prompt is evaluated as on
    a fresh engine.
    """

    def __init__(self, llama: Llama, *, name: str, chat_template: str) -> None:
        self._llama = llama
        self._name = name
        self._context_size = llama.n_ctx()
        self._vocab_size = llama.n_vocab()
        # What the KV cache holds, beyond llama-cpp-python's own record (`llama.input_ids`):
        # the chunks of the last prompt evaluated (reusable, as far as they got), and the
        # prompt last evaluated whole, with a copy of its last logits.
        self._chunks: list[tuple[int, int]] = []
        self._chunks_done = 0
        self._evaluated: tuple[int, ...] | None = None
        self._evaluated_logits = np.empty(0, dtype=np.single)
        vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._vocab = vocab
        self._pieces = _token_pieces(vocab, self._vocab_size, special=False)
        self._end_of_generation = frozenset(
            token for token in range(self._vocab_size) if llama_cpp.llama_vocab_is_eog(vocab, token)
        )
        self._opens_turn = frozenset(
            token
            for token in range(self._vocab_size)
            if llama_cpp.llama_vocab_is_control(vocab, token)
            and token not in self._end_of_generation
        )
        self._breaks_line = frozenset(
            token for token, piece in enumerate(self._pieces) if b"\n" in piece
        )
        bos = llama_cpp.llama_vocab_bos(vocab)
        eos = llama_cpp.llama_vocab_eos(vocab)
        # A model cannot sample from nothing: an empty prompt is evaluated as its BOS token,
        # as llama-cpp-python's create_completion does.
        self._empty_prompt = [bos if bos >= 0 else eos]
        self._chat = chat_formats.Jinja2ChatFormatter(
            template=chat_template,
            eos_token=_special_text(vocab, eos),
            bos_token=_special_text(vocab, bos),
            add_generation_prompt=True,
        )

    @property
    def name(self) -> str:
        """The model's name, for logs and benchmarks."""
        return self._name

    @property
    def context_size(self) -> int:
        """Tokens the context holds: prompt and completion together."""
        return self._context_size

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return self._vocab_size

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """Token ids of ``text`` (lone surrogates, which JSON allows, become U+FFFD)."""
        data = text.encode("utf-8", "replace")
        return self._llama.tokenize(data, add_bos=add_bos, special=special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``; control tokens render as nothing."""
        self._check_token_ids(tokens, "token ids")
        pieces = self._pieces
        return b"".join([pieces[token] for token in tokens]).decode("utf-8", "replace")

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
        """Raise `InvalidRequest` if `generate` would refuse this request."""
        self._prepare(prompt_tokens, params)

    def generate(
        self,
        prompt_tokens: Sequence[int],
        params: SamplingParams,
        cancel: threading.Event,
    ) -> Iterator[PromptLogprobs | Piece | Finish]:
        """Check the request now, then return the iterator that generates it.

        When prompt and ``max_tokens`` do not both fit, generation ends at the context's end
        with reason ``"length"``. With ``params.prompt_logprobs`` set, the first item is the
        `PromptLogprobs` of ``prompt_tokens`` (of no tokens for an empty prompt).
        """
        prompt, grammar, logits_processor = self._prepare(prompt_tokens, params)
        generation = self._generate(prompt, params, cancel, grammar, logits_processor)
        if params.prompt_logprobs is None:
            return generation
        return self._with_prompt_logprobs(
            list(prompt_tokens), params.prompt_logprobs, cancel, generation
        )

    def prompt_logprobs(
        self, prompt_tokens: Sequence[int], top: int, cancel: threading.Event
    ) -> PromptLogprobs | None:
        """The logprob of each prompt token after the ones before it, with ``top`` alternatives.

        Logprobs are the model's raw distribution, as in `TokenLogprob`. Returns None if
        ``cancel`` was set before the prompt was evaluated. It runs the model, like `generate`
        (not at the same time), and changes nothing a later `generate` returns.
        """
        if isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS:
            raise ValueError(f"top must be an int between 0 and {MAX_TOP_LOGPROBS}, got {top!r}")
        prompt = list(prompt_tokens)
        if len(prompt) >= self._context_size:
            raise ContextOverflow(len(prompt), self._context_size)
        self._check_token_ids(prompt, "the prompt")
        return self._prompt_logprobs(prompt, top, cancel)

    def close(self) -> None:
        """Free the model."""
        self._llama.close()

    def _prepare(
        self, prompt_tokens: Sequence[int], params: SamplingParams
    ) -> tuple[list[int], LlamaGrammar | None, LogitsProcessorList | None]:
        prompt = list(prompt_tokens) if len(prompt_tokens) else self._empty_prompt
        if len(prompt) >= self._context_size:
            raise ContextOverflow(len(prompt), self._context_size)
        self._check_token_ids(prompt, "the prompt")
        self._check_token_ids(params.logit_bias.keys(), "logit_bias")
        return prompt, self._grammar(params), self._logit_bias(params.logit_bias)

    def _check_token_ids(self, tokens: Any, where: str) -> None:
        if len(tokens) and (min(tokens) < 0 or max(tokens) >= self._vocab_size):
            bad = next(t for t in tokens if not 0 <= t < self._vocab_size)
            raise InvalidRequest(
                f"{where} holds token id {bad}, but the model's token ids are "
                f"0 to {self._vocab_size - 1}"
            )

    def _grammar(self, params: SamplingParams) -> LlamaGrammar | None:
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
        # llama-cpp-python's LlamaGrammar does not parse; llama.cpp does, and hands a NULL
        # sampler to a chain that would crash on it. So parse once here, where it can fail.
        with _LOG_ROUTER.capture() as messages, _parser_errors(gbnf) as errors:
            sampler = llama_cpp.llama_sampler_init_grammar(
                self._vocab, gbnf.encode("utf-8"), b"root"
            )
        if not sampler:
            why = "; ".join(errors or messages) or "llama.cpp rejected it"
            raise InvalidGrammar(f"the grammar does not parse: {why}")
        llama_cpp.llama_sampler_free(sampler)
        return LlamaGrammar.from_string(gbnf)

    @staticmethod
    def _logit_bias(logit_bias: Mapping[int, float]) -> LogitsProcessorList | None:
        # Only requests with a bias pay for a Python call over the vocabulary per token.
        if not logit_bias:
            return None
        ids = np.fromiter(logit_bias.keys(), dtype=np.intp, count=len(logit_bias))
        biases = np.fromiter(logit_bias.values(), dtype=np.single, count=len(logit_bias))

        def add_bias(_input_ids: Any, scores: Any) -> Any:
            scores[ids] += biases
            return scores

        return LogitsProcessorList([add_bias])

    def _with_prompt_logprobs(
        self,
        prompt: list[int],
        top: int,
        cancel: threading.Event,
        generation: Iterator[Piece | Finish],
    ) -> Iterator[PromptLogprobs | Piece | Finish]:
        try:
            if cancel.is_set():
                return
            logprobs = self._prompt_logprobs(prompt, top, cancel)
            if logprobs is None:
                return
            yield logprobs
            yield from generation
        finally:
            generation.close()

    def _prompt_logprobs(
        self, prompt: list[int], top: int, cancel: threading.Event
    ) -> PromptLogprobs | None:
        llama = self._llama
        pieces = self._pieces
        # A control token (parsed from the prompt's text) renders as nothing among the
        # sampled tokens; here it renders as its text, so that the tokens join to the prompt.
        tokens = tuple(pieces[t] or _piece(self._vocab, t, True) for t in prompt)
        if len(prompt) < 2:
            return PromptLogprobs(tokens, ())
        # From here on the cache holds what no plan computed: forget it before touching it.
        self._evaluated = None
        self._chunks, self._chunks_done = [], 0
        llama.n_tokens = 0
        entries: list[TokenLogprob] = []
        try:
            _bindings.clear_cache(llama)
            for begin, end in self._plan(prompt):
                if cancel.is_set():
                    return None
                chunk = prompt[begin:end]
                _bindings.decode_every_row(llama, chunk, begin)
                llama.input_ids[begin:end] = chunk
                llama.n_tokens = end
                # Row i predicts the token after it; the last row of the prompt predicts none.
                for row, token in enumerate(prompt[begin + 1 : end + 1]):
                    entries.append(self._logprob(token, top, row, tokens[begin + row + 1]))
        finally:
            # Whether it finished or not, the next prompt is evaluated as on a fresh engine.
            llama.n_tokens = 0
        return PromptLogprobs(tokens, tuple(entries))

    def _generate(
        self,
        prompt: list[int],
        params: SamplingParams,
        cancel: threading.Event,
        grammar: LlamaGrammar | None,
        logits_processor: LogitsProcessorList | None,
    ) -> Iterator[Piece | Finish]:
        if cancel.is_set() or not self._evaluate_prompt(prompt, cancel):
            return
        llama = self._llama
        llama.set_seed(_RANDOM_SEED if params.seed is None else params.seed % _RANDOM_SEED)
        # Stopping one short of a full context means the last sampled token is never evaluated.
        limit = min(params.max_tokens, self._context_size - len(prompt))
        pieces = self._pieces
        end_of_generation = self._end_of_generation
        decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        stops = StopMatcher(params.stop) if params.stop else None
        top_logprobs = params.top_logprobs
        produced = 0
        reason: Literal["stop", "length"] = "length"
        # The cache holds exactly the prompt and its logits are in place: `generate` finds
        # it cached whole and samples at once, without evaluating anything again.
        tokens = llama.generate(
            prompt,
            top_k=0,
            top_p=params.top_p,
            min_p=0.0,
            typical_p=1.0,
            temp=params.temperature,
            repeat_penalty=1.0,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            logits_processor=logits_processor,
            grammar=grammar,
        )
        try:
            for token in tokens:
                if token in end_of_generation:
                    reason = "stop"
                    break
                produced += 1
                text = decode(pieces[token])
                logprobs = () if top_logprobs is None else (self._logprob(token, top_logprobs),)
                if stops is not None:
                    text, stopped = stops.push(text)
                    if stopped:
                        yield Piece(text, 1, logprobs)
                        yield Finish("stop", produced)
                        return
                yield Piece(text, 1, logprobs)
                if cancel.is_set():
                    return
                if produced >= limit:
                    break
        finally:
            tokens.close()
        tail = decode(b"", final=True)
        if stops is not None:
            tail, stopped = stops.push(tail)
            if stopped:
                reason = "stop"
            else:
                tail += stops.flush()
        if tail:
            yield Piece(tail, 0)
        yield Finish(reason, produced)

    def _evaluate_prompt(self, prompt: list[int], cancel: threading.Event) -> bool:
        """Bring the KV cache to ``prompt``, reusing what the class docstring allows.

        Returns False, with the cache consistent, if ``cancel`` was set between two chunks.
        """
        llama = self._llama
        key = tuple(prompt)
        if self._evaluated == key and llama.n_tokens >= len(prompt):
            llama.n_tokens = len(prompt)  # `generate` drops the rest from the cache
            self._last_logits()[:] = self._evaluated_logits
            return True
        self._evaluated = None
        plan = self._plan(prompt)
        kept = shared_chunks(self._chunks[: self._chunks_done], llama.input_ids, plan, prompt)
        self._chunks, self._chunks_done = plan, kept
        # `eval` drops the cache from `n_tokens` on before it evaluates.
        llama.n_tokens = plan[kept - 1][1] if kept else 0
        try:
            for begin, end in plan[kept:]:
                if cancel.is_set():
                    return False
                llama.eval(prompt[begin:end])
                self._chunks_done += 1
        except BaseException:
            llama.n_tokens = self._chunks_done = 0  # the cache's contents are unknown now
            raise
        self._evaluated = key
        self._evaluated_logits = self._last_logits().copy()
        return True

    def _plan(self, prompt: Sequence[int]) -> list[tuple[int, int]]:
        """The chunks that evaluate ``prompt``, whatever the cache holds."""
        turns = turn_boundaries(
            prompt, self._end_of_generation, self._opens_turn, self._breaks_line
        )
        return chunk_plan(prompt, PROMPT_CHUNK, turns)

    def _last_logits(self, row: int = -1) -> np.ndarray[Any, np.dtype[np.single]]:
        """The logits of an output row of the last evaluation (by default its last one).

        llama.cpp's own buffer, not a copy.
        """
        pointer = llama_cpp.llama_get_logits_ith(self._llama.ctx, row)
        return np.ctypeslib.as_array(pointer, shape=(self._vocab_size,))

    def _logprob(
        self, token: int, top: int, row: int = -1, data: bytes | None = None
    ) -> TokenLogprob:
        # With logits_all=False llama.cpp keeps the logits of the last evaluated position,
        # which is exactly the one `token` was sampled from: no need for logits_all's
        # context x vocabulary buffer.
        logits = self._last_logits(row)
        shifted = logits - logits.max()
        log_total = float(np.log(np.exp(shifted).sum()))
        alternatives: tuple[TopLogprob, ...] = ()
        if top:
            best = np.argpartition(shifted, -top)[-top:]
            best = best[np.argsort(-shifted[best], kind="stable")]
            alternatives = tuple(
                TopLogprob(
                    self._pieces[t].decode("utf-8", "replace"),
                    self._pieces[t],
                    float(shifted[t]) - log_total,
                )
                for t in best.tolist()
            )
        if data is None:
            data = self._pieces[token]
        return TokenLogprob(
            data.decode("utf-8", "replace"), data, float(shifted[token]) - log_total, alternatives
        )


def _token_pieces(vocab: Any, vocab_size: int, *, special: bool) -> list[bytes]:
    """Every token's bytes, looked up once so that the token loop indexes a list."""
    buffer = ctypes.create_string_buffer(_PIECE_BUFFER_SIZE)
    return [_piece(vocab, token, special, buffer) for token in range(vocab_size)]


def _piece(vocab: Any, token: int, special: bool, buffer: Any = None) -> bytes:
    if buffer is None:
        buffer = ctypes.create_string_buffer(_PIECE_BUFFER_SIZE)
    size = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, special)
    if size < 0:  # longer than the buffer: ask again with the size llama.cpp needs
        buffer = ctypes.create_string_buffer(-size)
        size = llama_cpp.llama_token_to_piece(vocab, token, buffer, len(buffer), 0, special)
    return buffer.raw[:size]


def _special_text(vocab: Any, token: int) -> str:
    return _piece(vocab, token, True).decode("utf-8", "replace") if token >= 0 else ""


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
