"""Rules the schema cannot express: token counts, stop sequences, choices, models, repeatability.

Every function takes parsed JSON (a completion response, a models list, texts joined from a
stream, or a stream's observation) and returns findings; none of them sends a request. Streams
are judged as strictly as plain answers: a plain check runs on the response a stream adds up to
(``conformance.checks.fields.streamed_response``), and the ``check_streamed_*`` functions judge
what only a stream shows (its chunks, its deltas).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conformance.checks._answers import choices, clip, listed
from conformance.checks._finding import Finding
from conformance.checks.streaming import StreamObservation

__all__ = [
    "check_completion_text",
    "check_max_tokens",
    "check_models_scoped",
    "check_n_choices",
    "check_path_model",
    "check_seed_repeatable",
    "check_stop_absent",
    "check_stop_prefix",
    "check_stream_agrees",
    "check_streamed_n_choices",
    "check_streamed_path_model",
    "check_streamed_text_deltas",
    "check_usage_sum",
    "choice_texts",
    "index_problem",
]


def _usage(response: Mapping[str, Any]) -> Mapping[str, Any]:
    usage = response.get("usage")
    return usage if isinstance(usage, Mapping) else {}


def choice_texts(response: Mapping[str, Any]) -> dict[Any, str]:
    """Each choice's text by index: ``message.content``, else ``text`` (empty if neither)."""
    texts = {}
    for choice in choices(response):
        message = choice.get("message")
        content = message.get("content") if isinstance(message, Mapping) else None
        if not isinstance(content, str):
            content = choice.get("text")
        texts[choice.get("index")] = content if isinstance(content, str) else ""
    return texts


def check_max_tokens(
    response: Mapping[str, Any],
    max_tokens: int,
    *,
    may_stop_early: bool = False,
    where: str = "the response",
) -> list[Finding]:
    """SEM-MAX-TOKENS for a one-choice response to a request with ``max_tokens``.

    ``completion_tokens`` must not exceed the limit; when it equals the limit, the choice must
    say ``length`` (unless ``may_stop_early``: a stop sequence may end it on the last token).
    A stream is judged on the response it adds up to, its usage chunk's ``usage`` included.
    """
    completion = _usage(response).get("completion_tokens")
    if not isinstance(completion, int):
        return []  # no usable usage: the schema checks report that
    if completion > max_tokens:
        return [
            Finding(
                "SEM-MAX-TOKENS",
                f"max_tokens was {max_tokens}, but in {where} usage.completion_tokens is "
                f"{completion}.",
            )
        ]
    if completion == max_tokens and not may_stop_early:
        reasons = [c.get("finish_reason") for c in choices(response)]
        if any(reason != "length" for reason in reasons):
            return [
                Finding(
                    "SEM-MAX-TOKENS",
                    f"generation used all {max_tokens} tokens of max_tokens, but in {where} "
                    f"finish_reason is {reasons!r}, not 'length'.",
                )
            ]
    return []


def _delta_text(choice: Mapping[str, Any]) -> str:
    """The text one chunk's choice carries: ``delta.content``, else ``text`` (as streamed)."""
    delta = choice.get("delta")
    piece = delta.get("content") if isinstance(delta, Mapping) else None
    if piece is None:
        piece = choice.get("text")
    return piece if isinstance(piece, str) else ""


def check_streamed_text_deltas(obs: StreamObservation, max_tokens: int) -> list[Finding]:
    """SEM-MAX-TOKENS for a stream: no choice has more deltas that carry text than ``max_tokens``.

    Each such delta carries at least one whole token (the spec's ``MaxTokens``), so more of them
    than the limit means more tokens than the limit, whatever the usage chunk says.
    """
    by_choice: dict[Any, list[int]] = {}
    for chunk in obs.chunks:
        for choice in choices(chunk.body):
            if _delta_text(choice):
                by_choice.setdefault(choice.get("index"), []).append(chunk.number)
    found = []
    for index, numbers in by_choice.items():
        if len(numbers) > max_tokens:
            found.append(
                Finding(
                    "SEM-MAX-TOKENS",
                    f"max_tokens was {max_tokens}, but choice {index} streamed {len(numbers)} "
                    f"deltas that carry text (events {listed(numbers)}); each carries at least "
                    f"one token, so at most {max_tokens} may come.",
                    event_numbers=tuple(numbers),
                )
            )
    return found


def check_usage_sum(usage: Mapping[str, Any], where: str = "the response") -> list[Finding]:
    """SEM-USAGE-SUM: ``total_tokens == prompt_tokens + completion_tokens``."""
    prompt, completion, total = (
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        usage.get("total_tokens"),
    )
    if not all(isinstance(value, int) for value in (prompt, completion, total)):
        return []
    assert isinstance(prompt, int) and isinstance(completion, int)
    if total == prompt + completion:
        return []
    return [
        Finding(
            "SEM-USAGE-SUM",
            f"in {where}, usage.total_tokens is {total}, but prompt_tokens + completion_tokens "
            f"is {prompt} + {completion} = {prompt + completion}.",
        )
    ]


def check_stop_absent(
    texts: Mapping[Any, str], stops: Sequence[str], where: str = "the response"
) -> list[Finding]:
    """SEM-STOP-ABSENT: no choice's text contains any requested stop sequence."""
    found = []
    for index, text in texts.items():
        for stop in stops:
            if stop and stop in text:
                found.append(
                    Finding(
                        "SEM-STOP-ABSENT",
                        f"in {where}, choice {index}'s text contains the stop sequence "
                        f"{stop!r}: {text[:200]!r}.",
                    )
                )
                break
    return found


def check_stop_prefix(
    streamed: Mapping[Any, str], plain: Mapping[Any, str], stops: Sequence[str]
) -> list[Finding]:
    """SEM-STOP-ABSENT for a stream: no leaked start of a stop sequence at the end of its text.

    A streaming server that sends text which may begin a stop sequence before it knows whether
    the whole sequence follows leaks that start when it does. ``streamed`` and ``plain`` are the
    texts of the same seeded request streamed and sent whole: the streamed text may end with a
    non-empty proper prefix of a stop sequence only where the plain one ends with it too.
    """
    found = []
    for index, text in streamed.items():
        whole = plain.get(index, "")
        for stop in stops:
            leaked = next(
                (
                    stop[:size]
                    for size in range(len(stop) - 1, 0, -1)
                    if text.endswith(stop[:size]) and not whole.endswith(stop[:size])
                ),
                None,
            )
            if leaked is not None:
                found.append(
                    Finding(
                        "SEM-STOP-ABSENT",
                        f"the streamed text of choice {index} ends with {leaked!r}, the start of "
                        f"the stop sequence {stop!r}, but the plain answer to the same seeded "
                        f"request does not ({clip(whole)}), so the stream leaked it: text that "
                        f"may begin a stop sequence must be held back until it is known not to "
                        f"(the streamed text: {clip(text)}).",
                    )
                )
                break
    return found


def index_problem(response: Mapping[str, Any], count: int) -> str | None:
    """Why the response's choices are not exactly ``count``, indexed 0 to count-1 (or None)."""
    indexes = [choice.get("index") for choice in choices(response)]
    if len(indexes) == count and sorted(i for i in indexes if isinstance(i, int)) == list(
        range(count)
    ):
        return None
    return f"the response has {len(indexes)} choice(s) with indexes {indexes!r}"


def check_n_choices(response: Mapping[str, Any], n: int) -> list[Finding]:
    """SEM-N-CHOICES: exactly ``n`` choices, indexed 0 to n-1."""
    problem = index_problem(response, n)
    if problem is None:
        return []
    return [Finding("SEM-N-CHOICES", f"n was {n}, but {problem}.")]


def check_streamed_n_choices(indexes: Sequence[Any], n: int) -> list[Finding]:
    """SEM-N-CHOICES for a stream: the choice indexes its chunks carry are exactly 0 to n-1."""
    seen = sorted({i for i in indexes if isinstance(i, int)})
    others = sorted({repr(i) for i in indexes if not isinstance(i, int)})
    if seen == list(range(n)) and not others:
        return []
    return [
        Finding(
            "SEM-N-CHOICES",
            f"n was {n}, but the stream's chunks carry choice indexes {seen + others!r}, "
            f"not 0 to {n - 1}.",
        )
    ]


def check_path_model(
    response: Mapping[str, Any], path_model: str, body_model: str | None
) -> list[Finding]:
    """SEM-PATH-MODEL: the response's ``model`` is the path's model."""
    model = response.get("model")
    if model == path_model:
        return []
    body = f" (the body said {body_model!r})" if body_model is not None else ""
    return [
        Finding(
            "SEM-PATH-MODEL",
            f"the path model is {path_model!r}{body}, but the response's model is {model!r}.",
        )
    ]


def check_streamed_path_model(
    obs: StreamObservation, path_model: str, body_model: str | None
) -> list[Finding]:
    """SEM-PATH-MODEL for a stream: every chunk's ``model`` (the usage chunk too) is the path's."""
    wrong = [chunk for chunk in obs.chunks if chunk.body.get("model") != path_model]
    if not wrong:
        return []
    body = f" (the body said {body_model!r})" if body_model is not None else ""
    numbers = [chunk.number for chunk in wrong]
    return [
        Finding(
            "SEM-PATH-MODEL",
            f"the path model is {path_model!r}{body}, but {len(wrong)} of the stream's "
            f"{len(obs.chunks)} chunks carry another model (events {listed(numbers)}); the "
            f"first, event {numbers[0]}, has {wrong[0].body.get('model')!r}.",
            event_numbers=tuple(numbers),
        )
    ]


def check_models_scoped(listing: Mapping[str, Any], path_model: str) -> list[Finding]:
    """SEM-MODELS-SCOPED: a path-scoped list has one entry, the path model."""
    data = listing.get("data")
    ids = (
        [entry.get("id") for entry in data if isinstance(entry, Mapping)]
        if isinstance(data, list)
        else []
    )
    if ids == [path_model]:
        return []
    return [
        Finding(
            "SEM-MODELS-SCOPED",
            f"the models list for path model {path_model!r} holds {ids[:10]!r}"
            f"{' …' if len(ids) > 10 else ''}, not just that model.",
        )
    ]


def check_seed_repeatable(
    first: Mapping[Any, str], second: Mapping[Any, str], setting: str
) -> list[Finding]:
    """SEM-SEED-REPEATABLE: two answers to the same seeded request have the same texts."""
    if first == second:
        return []
    return [
        Finding(
            "SEM-SEED-REPEATABLE",
            f"the same request with the same seed ({setting}) gave different texts: "
            f"{_short(first)} then {_short(second)}.",
        )
    ]


def check_stream_agrees(
    plain: Mapping[str, Any],
    streamed_texts: Mapping[Any, str],
    streamed_usage: Mapping[str, Any] | None,
) -> list[Finding]:
    """SEM-STREAM-AGREES: a streamed answer has the same texts (and usage) as the plain one."""
    problems = []
    plain_texts = choice_texts(plain)
    if plain_texts != dict(streamed_texts):
        problems.append(
            f"texts differ: {_short(plain_texts)} not streamed, {_short(streamed_texts)} streamed"
        )
    if streamed_usage is not None:
        keys = ("prompt_tokens", "completion_tokens", "total_tokens")
        plain_usage = {key: _usage(plain).get(key) for key in keys}
        stream_usage = {key: streamed_usage.get(key) for key in keys}
        if plain_usage != stream_usage:
            problems.append(f"usage differs: {plain_usage} not streamed, {stream_usage} streamed")
    if not problems:
        return []
    return [Finding("SEM-STREAM-AGREES", "; ".join(problems) + ".")]


def check_completion_text(response: Mapping[str, Any]) -> list[Finding]:
    """SEM-COMPLETION-TEXT: each completions choice's ``text`` equals its ``message.content``."""
    found = []
    for choice in choices(response):
        message = choice.get("message")
        content = message.get("content") if isinstance(message, Mapping) else None
        text = choice.get("text")
        if text != content:
            found.append(
                Finding(
                    "SEM-COMPLETION-TEXT",
                    f"choice {choice.get('index')} has text {clip(text)} but message.content "
                    f"{clip(content)}.",
                )
            )
    return found


def _short(texts: Mapping[Any, str]) -> str:
    return "{" + ", ".join(f"{index}: {clip(text)}" for index, text in texts.items()) + "}"
