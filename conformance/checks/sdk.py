"""What OpenAI's official Python client makes of the target's answers (``SDK-*``).

Each check hands the bytes the target sent to the ``openai`` package, through an HTTP transport
that answers every request of the client with those bytes: the client then parses, streams,
accumulates and raises exactly as it would against the target, but nothing is sent twice and
the suite's own transport keeps its bounds and its evidence. Types are checked strictly too
(``model_validate``), since the client itself builds its objects without validating them and
only fails later, in the user's code.

Why not a JSON schema of OpenAI's types: the client is what users run, and it breaks in ways a
schema does not show (a tool-call delta without an integer ``index`` crashes its stream
accumulator; a usage chunk without ``choices`` crashes it too).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import openai
import pydantic
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from conformance.checks._finding import Finding
from conformance.exchange import Exchange
from conformance.sse import Event

__all__ = [
    "check_chat_plain",
    "check_error_raised",
    "check_models",
    "check_stream_matches",
    "read_chat_stream",
]

_MESSAGES = [{"role": "user", "content": "replayed"}]
_DROPPED_HEADERS = frozenset({"content-length", "transfer-encoding", "content-encoding"})
_MAX_PROBLEMS = 3


def _client_httpx() -> ModuleType:
    """The HTTP library the installed ``openai`` package is built on (httpx, or its successor)."""
    base = next(c for c in openai.DefaultHttpxClient.__mro__[1:] if c.__name__ == "Client")
    return importlib.import_module(base.__module__.split(".")[0])


@contextmanager
def _client_answering(exchange: Exchange) -> Iterator[openai.OpenAI]:
    """An ``openai.OpenAI`` client whose every request gets ``exchange``'s response."""
    http = _client_httpx()
    headers = [(k, v) for k, v in exchange.headers if k.lower() not in _DROPPED_HEADERS]

    def answer(request: Any) -> Any:
        return http.Response(exchange.status or 0, headers=headers, content=exchange.body)

    transport = http.MockTransport(answer)
    with openai.OpenAI(
        base_url="http://target.invalid/v1",
        api_key="replayed",
        max_retries=0,
        http_client=openai.DefaultHttpxClient(transport=transport),
    ) as client:
        yield client


def _validation_problems(error: pydantic.ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or '(root)'}: {item['msg']}"
        for item in error.errors()[:_MAX_PROBLEMS]
    ]
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def _failed(call: Callable[[], Any]) -> str | None:
    """Run ``call``; describe what the client raised, or None if it did not."""
    try:
        call()
    except Exception as error:  # the client's own failure is what is judged
        return f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
    return None


def check_chat_plain(requirement_id: str, exchange: Exchange) -> list[Finding]:
    """A 200 chat answer: the client returns it, and it validates as ``ChatCompletion``."""
    findings = []
    with _client_answering(exchange) as client:
        crash = _failed(lambda: client.chat.completions.create(model="m", messages=_MESSAGES))
    if crash is not None:
        findings.append(Finding(requirement_id, f"The openai client failed: {crash}."))
    try:
        ChatCompletion.model_validate(json.loads(exchange.body))
    except ValueError as error:
        detail = (
            _validation_problems(error)
            if isinstance(error, pydantic.ValidationError)
            else f"not JSON ({error})"
        )
        findings.append(
            Finding(requirement_id, f"The answer is not a valid openai ChatCompletion: {detail}.")
        )
    return findings


def _event_problems(requirement_id: str, events: Sequence[Event]) -> list[Finding]:
    findings = []
    for event in events:
        if event.data == "[DONE]":
            continue
        try:
            ChatCompletionChunk.model_validate_json(event.data)
        except pydantic.ValidationError as error:
            findings.append(
                Finding(
                    requirement_id,
                    f"Event {event.number} is not a valid openai ChatCompletionChunk: "
                    f"{_validation_problems(error)}.",
                    event_numbers=(event.number,),
                )
            )
            break
    return findings


def read_chat_stream(
    requirement_id: str, exchange: Exchange, events: Sequence[Event]
) -> tuple[Any | None, list[Finding]]:
    """Read a 200 chat stream as the client does, and accumulate it with its stream helper.

    Returns the completion the helper accumulated (None if the client failed) and the findings:
    the client's failure, and the first event that is not a valid ``ChatCompletionChunk``.
    """
    state = ChatCompletionStreamState()

    def read() -> None:
        with (
            _client_answering(exchange) as client,
            client.chat.completions.create(model="m", messages=_MESSAGES, stream=True) as stream,
        ):
            for chunk in stream:
                state.handle_chunk(chunk)

    findings = []
    crash = _failed(read)
    final = None
    if crash is None:
        # The snapshot, not get_final_completion(): that one also parses, and raises for a
        # finish_reason "length", which is the client's rule, not a fault of the stream.
        try:
            final = state.current_completion_snapshot
        except Exception as error:  # the helper's own failure is what is judged
            crash = f"{type(error).__name__}: {error}"
    if crash is not None:
        findings.append(
            Finding(requirement_id, f"The openai client failed on the stream: {crash}.")
        )
    return final, findings + _event_problems(requirement_id, events)


def _streamed_view(choice: Any) -> tuple[str, list[tuple[Any, Any]], Any]:
    """Content, tool calls (name, arguments) and finish_reason of the client's choice object."""
    message = getattr(choice, "message", None)
    calls = getattr(message, "tool_calls", None) or []
    return (
        getattr(message, "content", None) or "",
        [(call.function.name, call.function.arguments) for call in calls],
        getattr(choice, "finish_reason", None),
    )


def _plain_view(choice: Mapping[str, Any]) -> tuple[str, list[tuple[Any, Any]], Any]:
    """The same of a plain answer's choice, as JSON."""
    message = choice.get("message") or {}
    calls = message.get("tool_calls") or []
    return (
        message.get("content") or "",
        [
            ((c.get("function") or {}).get("name"), (c.get("function") or {}).get("arguments"))
            for c in calls
        ],
        choice.get("finish_reason"),
    )


def check_stream_matches(
    requirement_id: str, final: Any, plain: Mapping[str, Any]
) -> list[Finding]:
    """The client's accumulated stream holds the plain answer's message and finish_reason."""
    streamed_choices = list(getattr(final, "choices", None) or [])
    plain_choices = plain.get("choices") or []
    if not streamed_choices or not plain_choices or not isinstance(plain_choices[0], Mapping):
        return [Finding(requirement_id, "The stream or the plain answer has no choice.")]
    streamed, expected = _streamed_view(streamed_choices[0]), _plain_view(plain_choices[0])
    findings = []
    names = ("content", "tool calls", "finish_reason")
    for name, got, want in zip(names, streamed, expected, strict=True):
        if got != want:
            findings.append(
                Finding(
                    requirement_id,
                    f"The client's accumulated stream has {name} {got!r:.200}; the plain "
                    f"answer to the same request has {want!r:.200}.",
                )
            )
    return findings


def check_models(requirement_id: str, exchange: Exchange) -> list[Finding]:
    """A 200 models list: the client lists it, and each entry validates as ``Model``."""
    findings = []
    with _client_answering(exchange) as client:
        crash = _failed(lambda: list(client.models.list()))
    if crash is not None:
        findings.append(Finding(requirement_id, f"The openai client failed: {crash}."))
    try:
        entries = json.loads(exchange.body).get("data") or []
    except (ValueError, AttributeError):
        return findings  # not a list at all: SCHEMA-RESPONSE-VALID says so
    for number, entry in enumerate(entries):
        try:
            Model.model_validate(entry)
        except pydantic.ValidationError as error:
            findings.append(
                Finding(
                    requirement_id,
                    f"Entry {number} of the list is not a valid openai Model: "
                    f"{_validation_problems(error)}.",
                )
            )
            break
    return findings


def _call_for(client: openai.OpenAI, kind: str, stream: bool) -> Callable[[], Any]:
    """The client call that reads an answer of this operation kind (chat, completions, models)."""
    if kind == "chat":
        return lambda: client.chat.completions.create(model="m", messages=_MESSAGES, stream=stream)
    if kind == "completions":
        return lambda: client.completions.create(model="m", prompt="replayed", stream=stream)
    return lambda: client.models.list()


def check_error_raised(
    requirement_id: str, exchange: Exchange, what: str, *, kind: str, stream: bool
) -> list[Finding]:
    """An error answer makes the client raise its status error at once, the message kept.

    ``kind`` says which client call reads the operation's answers (``chat``, ``completions``
    or ``models``); with ``stream`` the call asks for a stream, and must raise before a single
    chunk is read.
    """
    status = exchange.status or 0
    raised: BaseException | None = None
    with _client_answering(exchange) as client:
        try:
            answer = _call_for(client, kind, stream)()
            if stream:
                with answer:
                    next(iter(answer), None)
        except Exception as error:  # what the client raises is what is judged
            raised = error
    if not isinstance(raised, openai.APIStatusError):
        got = "nothing" if raised is None else type(raised).__name__
        when = " while reading the stream" if raised is not None and stream else ""
        return [
            Finding(
                requirement_id,
                f"{what} was answered {status}, and the openai client raised {got}{when}, "
                f"not its status error for {status}.",
            )
        ]
    findings = []
    if raised.status_code != status:
        findings.append(
            Finding(
                requirement_id,
                f"The openai client raised a status error for {raised.status_code}; the "
                f"answer to {what} was {status}.",
            )
        )
    body = raised.body
    if body in (None, "", {}, []) and str(raised).strip() == f"Error code: {status}":
        findings.append(
            Finding(
                requirement_id,
                f"The openai client's {type(raised).__name__} for {what} holds no message from "
                "the server (an empty error body).",
            )
        )
    return findings
