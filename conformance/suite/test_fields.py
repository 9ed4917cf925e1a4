"""FIELD-*: what each documented request field must visibly do, judged by fixed probes.

Each rule runs on one generating operation per request shape whose schema has the field (see
``field_operations``). The probes start from the spec example made deterministic and ask for
at most 16 tokens (24 for a tool call). Where a field is refused with a 400 that names it, the
rule is skipped with the target's own message (``VERDICTS.md``, "Optional fields a target
refuses").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from conformance.checks import Finding
from conformance.checks.fields import (
    check_banned_token,
    check_best_of,
    check_chat_logprobs,
    check_echo,
    check_forced_token,
    check_function_call,
    check_json_answer,
    check_legacy_logprobs,
    check_prompt_list,
    check_status,
    check_tool_finish,
    check_tool_forced,
    check_tool_none,
    check_tool_required,
    check_tool_stream,
    complete_contents,
    is_cut_call,
    repeated_piece,
    streamed_response,
)
from conformance.checks.semantics import choice_texts
from conformance.checks.streaming import StreamObservation
from conformance.exchange import Exchange, StreamResult
from conformance.suite._draw import derive_seed, draw
from conformance.suite._judgement import Judgement
from conformance.suite._operations import ignored_fields, request_schema
from conformance.suite._probe import (
    FORCED_TOOL_CHOICE,
    TOOL_NAME,
    TOOL_PARAMETERS,
    TOOL_PROMPT,
    TOOL_TOKENS,
    TOOLS,
    field_answer,
    per_operation,
    plain_body,
    send,
    stream,
    stream_observation,
    tool_body,
    value_for,
    with_user_text,
)
from conformance.suite._run import Run
from conformance.suite._schemathesis import build_schema
from spec import Operation

requirement = pytest.mark.requirement

_TOP = 2  # alternatives asked per token
_IGNORED_DRAWS = 8  # generated bodies to take the ignored fields' values from
_FORCE_CANDIDATES = ("1000", "2000", "3000")  # token ids below any modern vocabulary's size
_REPEAT_PROMPT = "Repeat after me: "  # followed by the piece a ban is judged on, repeated
_JSON_TOKENS = 16
_JSON_PROMPT = 'Reply with the JSON object {"ok": true} and nothing else.'
_JSON_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
# The forced tool and the prompt that asks for it are shared with the SDK rules (in _probe).
_TOOL, _TOOL_PARAMETERS, _TOOLS = TOOL_NAME, TOOL_PARAMETERS, TOOLS
_TOOL_PROMPT, _TOOL_TOKENS, _user = TOOL_PROMPT, TOOL_TOKENS, with_user_text


def _is_chat(run: Run, operation: Operation) -> bool:
    return "messages" in request_schema(run.contract, operation)["properties"]


def _expect_status(
    judgement: Judgement,
    operation: Operation,
    body: Mapping[str, Any],
    allowed: Callable[[int], bool],
    what: str,
) -> None:
    """Send ``body``; the rule is only about the status: ``allowed(status)`` must hold."""
    exchange = send(judgement.run, operation, body)
    if exchange.status is None:
        judgement.transport_error(exchange)
        return
    findings = check_status(judgement.requirement_id, exchange.status, allowed, what)
    judgement.findings(findings, exchange=exchange)


def _judge_answer(
    judgement: Judgement,
    operation: Operation,
    body: Mapping[str, Any],
    fields: tuple[str, ...],
    check: Callable[[Mapping[str, Any]], list[Finding]],
) -> dict[str, Any] | None:
    """Send a probe of ``fields`` and judge its answer with ``check``; return the answer."""
    exchange = send(judgement.run, operation, body)
    answer = field_answer(judgement, exchange, fields)
    if answer is not None:
        judgement.findings(check(answer), exchange=exchange)
    return answer


def _prompt(body: Mapping[str, Any]) -> str:
    """The example's prompt if it is one string (the FIELD probes need one)."""
    prompt = body.get("prompt")
    return prompt if isinstance(prompt, str) and prompt else "Once upon a time"


def _is_2xx(status: int) -> bool:
    return 200 <= status < 300


# ------------------------------------------------------------------------------ choices


@requirement("FIELD-BEST-OF", applies_to="field:best_of")
@per_operation
def test_best_of(judgement: Judgement, operation: Operation) -> None:
    """best_of >= n gives n choices; best_of < n is a 400."""
    run = judgement.run
    base = {**plain_body(run, operation), "max_tokens": 2}
    below = {**base, "n": 2, "best_of": 1}
    _expect_status(judgement, operation, below, lambda s: s == 400, "best_of 1 is below n 2")
    above = {**base, "n": 1, "best_of": 2}
    _judge_answer(judgement, operation, above, ("best_of",), lambda a: check_best_of(a, 1))


@requirement("FIELD-PROMPT-LIST", applies_to="field:prompt-list")
@per_operation
def test_prompt_list(judgement: Judgement, operation: Operation) -> None:
    """Two prompts with n=2 give four choices, indexed 0 to 3."""
    base = plain_body(judgement.run, operation)
    body = {**base, "prompt": [_prompt(base), "Hello"], "n": 2, "max_tokens": 2}
    _judge_answer(judgement, operation, body, ("prompt", "n"), lambda a: check_prompt_list(a, 2, 2))


@requirement("FIELD-ECHO", applies_to="field:echo")
@per_operation
def test_echo(judgement: Judgement, operation: Operation) -> None:
    """With echo, each text starts with the prompt."""
    base = plain_body(judgement.run, operation)
    prompt = _prompt(base)
    body = {**base, "prompt": prompt, "echo": True, "max_tokens": 2}
    _judge_answer(judgement, operation, body, ("echo",), lambda a: check_echo(a, prompt))


@requirement("FIELD-SUFFIX", applies_to="field:suffix")
@per_operation
def test_suffix(judgement: Judgement, operation: Operation) -> None:
    """A suffix is served or refused with 400."""
    run = judgement.run
    body = {**plain_body(run, operation), "suffix": " The end.", "max_tokens": 2}
    _expect_status(
        judgement,
        operation,
        body,
        lambda s: _is_2xx(s) or s == 400,
        "a suffix must be served or refused with 400",
    )


# ------------------------------------------------------------------------------ logprobs


def _plain_and_streamed(
    judgement: Judgement,
    operation: Operation,
    body: Mapping[str, Any],
    fields: tuple[str, ...],
    check: Callable[[Mapping[str, Any], str], list[Finding]],
) -> None:
    """Judge the answer to ``body`` with ``check``, then the same request streamed.

    The quick profile skips the streamed half (``Profile.field_probes_full``).
    """
    answer = _judge_answer(judgement, operation, body, fields, lambda a: check(a, "the response"))
    if answer is None or not judgement.run.settings.profile.field_probes_full:
        return
    result = stream(judgement.run, operation, body)
    observation = stream_observation(judgement, result)
    if observation is not None:
        judgement.findings(check(streamed_response(observation), "the stream"), stream=result)


@requirement("FIELD-CHAT-LOGPROBS", applies_to="field:chat-logprobs")
@per_operation
def test_chat_logprobs(judgement: Judgement, operation: Operation) -> None:
    """Chat logprobs: tokens join to the content, k alternatives each; also streamed."""
    asked = {"logprobs": True, "top_logprobs": _TOP, "max_tokens": 4}
    body = {**plain_body(judgement.run, operation), **asked}
    _plain_and_streamed(
        judgement,
        operation,
        body,
        ("logprobs", "top_logprobs"),
        lambda answer, where: check_chat_logprobs(answer, _TOP, where),
    )


@requirement("FIELD-LEGACY-LOGPROBS", applies_to="field:legacy-logprobs")
@per_operation
def test_legacy_logprobs(judgement: Judgement, operation: Operation) -> None:
    """Completions logprobs: four arrays of one length matching the text; also streamed."""
    body = {**plain_body(judgement.run, operation), "logprobs": _TOP, "max_tokens": 4}
    _plain_and_streamed(
        judgement,
        operation,
        body,
        ("logprobs",),
        lambda answer, where: check_legacy_logprobs(answer, _TOP, where),
    )


# ------------------------------------------------------------------------------ logit_bias


def _forced(run: Run, operation: Operation, token: str) -> Exchange:
    """The answer with a +100 bias on ``token``, asked once (both logit_bias rules read it)."""
    body = {**plain_body(run, operation), "max_tokens": 4, "logit_bias": {token: 100}}
    return run.cached(
        ("logit-bias-forced", operation.label, token), lambda: send(run, operation, body)
    )


def _forced_text(answer: Mapping[str, Any]) -> tuple[str, int]:
    usage = answer.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
    return choice_texts(answer).get(0, ""), tokens if isinstance(tokens, int) else 0


@requirement("FIELD-LOGIT-BIAS-FORCE", applies_to="field:logit_bias")
@per_operation
def test_logit_bias_forces(judgement: Judgement, operation: Operation) -> None:
    """+100 on one token makes the output that token repeated."""
    for token in _FORCE_CANDIDATES:
        exchange = _forced(judgement.run, operation, token)
        answer = field_answer(judgement, exchange, ("logit_bias",))
        if answer is None:
            continue
        text, count = _forced_text(answer)
        if count < 2 or not text:
            judgement.not_applicable(
                f"with token {token} forced, the answer had {count} token(s) and text "
                f"{text!r}: the token may end generation, so repetition cannot be judged"
            )
            continue
        judgement.findings(check_forced_token(text, count, token), exchange=exchange)
        return


def _answer_tokens(answer: Mapping[str, Any]) -> list[str] | None:
    """The first choice's generated tokens, as its logprobs (chat or legacy shape) list them."""
    choices = answer.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    logprobs = choice.get("logprobs") if isinstance(choice, Mapping) else None
    if not isinstance(logprobs, Mapping):
        return None
    if isinstance(logprobs.get("content"), list):
        return [str(e.get("token")) for e in logprobs["content"] if isinstance(e, Mapping)]
    if isinstance(logprobs.get("tokens"), list):
        return [str(t) for t in logprobs["tokens"]]
    return None


@requirement("FIELD-LOGIT-BIAS-BAN", applies_to="field:logit_bias")
@per_operation
def test_logit_bias_bans(judgement: Judgement, operation: Operation) -> None:
    """-100 on a token the greedy answer holds keeps it out.

    The token's text is learned by forcing it (+100: the answer is that text repeated); the
    context asks for that text repeated and shows it (`_REPEAT_PROMPT`), which a model tends to
    continue with the same token: bare repetition alone is too weak a cue for a small model,
    which SmolLM2 answered with "I'm sorry" or "-100" under one attention kernel and with the
    token under another. Only when the unbiased answer does hold it is the ban judged, by the
    tokens that logprobs list.
    """
    run = judgement.run
    logprobs: dict[str, Any] = {"logprobs": True} if _is_chat(run, operation) else {"logprobs": 0}
    for token in _FORCE_CANDIDATES:
        exchange = _forced(run, operation, token)
        try:
            forced = exchange.json() if exchange.status == 200 else None
        except ValueError:
            forced = None
        if not isinstance(forced, Mapping):
            continue
        text, count = _forced_text(forced)
        piece = repeated_piece(text, count, exact=True) if count >= 2 else None
        if not piece or not piece.strip():
            continue
        context = _REPEAT_PROMPT + piece * 12
        body = {**_user(plain_body(run, operation), context), **logprobs, "max_tokens": 4}
        free = send(run, operation, body)
        answer = field_answer(judgement, free, ("logprobs",))
        tokens = _answer_tokens(answer) if answer is not None else None
        if tokens is None or piece not in tokens:
            # One context per run: each more costs two generations on a slow model.
            judgement.not_applicable(
                f"the unbiased answer to {piece!r} repeated does not list token {token} "
                f"({piece!r}) among its logprobs tokens, so a ban cannot be seen"
            )
            return
        banned = send(run, operation, {**body, "logit_bias": {token: -100}})
        answer = field_answer(judgement, banned, ("logit_bias", "logprobs"))
        tokens = _answer_tokens(answer) if answer is not None else None
        if tokens is not None:
            judgement.findings(check_banned_token(tokens, piece, token), exchange=banned)
            return
    judgement.not_applicable("no forced token gave a text that a ban could be judged on")


# ------------------------------------------------------------------------------ response_format


def _json_probe(judgement: Judgement, operation: Operation, response_format: Any) -> None:
    run = judgement.run
    body = {
        **_user(plain_body(run, operation), _JSON_PROMPT),
        "response_format": response_format,
        "max_tokens": _JSON_TOKENS,
    }
    exchange = send(run, operation, body)
    answer = field_answer(judgement, exchange, ("response_format",))
    if answer is None:
        return
    contents = complete_contents(answer)
    if not contents:
        judgement.not_applicable(
            f"no choice ended by itself within {_JSON_TOKENS} tokens: a cut answer is no "
            "document to judge"
        )
        return
    schema = response_format.get("json_schema", {}).get("schema")
    judgement.findings(
        check_json_answer(contents, judgement.requirement_id, schema), exchange=exchange
    )


@requirement("FIELD-JSON-OBJECT", applies_to="field:response_format")
@per_operation
def test_json_object(judgement: Judgement, operation: Operation) -> None:
    """json_object: a complete answer parses as a JSON object."""
    _json_probe(judgement, operation, {"type": "json_object"})


@requirement("FIELD-JSON-SCHEMA", applies_to="field:response_format")
@per_operation
def test_json_schema(judgement: Judgement, operation: Operation) -> None:
    """json_schema: a complete answer is JSON valid against the schema."""
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "ok", "schema": _JSON_SCHEMA},
    }
    _json_probe(judgement, operation, response_format)


@requirement("FIELD-JSON-SCHEMA-INVALID", applies_to="field:response_format")
@per_operation
def test_json_schema_invalid(judgement: Judgement, operation: Operation) -> None:
    """An invalid json_schema is a 400."""
    run = judgement.run
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "broken", "schema": {"type": "not-a-json-type"}},
    }
    body = {**plain_body(run, operation), "response_format": response_format, "max_tokens": 2}
    _expect_status(
        judgement,
        operation,
        body,
        lambda s: s == 400,
        "the json_schema's schema has type 'not-a-json-type', which is no valid JSON Schema",
    )


# ------------------------------------------------------------------------------ tools


_tool_body = tool_body
_FORCED_CHOICE = FORCED_TOOL_CHOICE
_TOOL_CHOICES: dict[str, Any] = {
    "forced": _FORCED_CHOICE,
    "required": "required",
    "auto": "auto",
    "none": "none",
}
"""The tool probes by name: each tool_choice the FIELD-TOOL rules send."""


def _tool_probe(run: Run, operation: Operation, name: str) -> dict[str, Any]:
    body = _tool_body(run, operation, _TOOL_CHOICES[name])
    return {**body, "max_tokens": 4} if name == "none" else body  # no call to make room for


def _shown_choice(name: str) -> str:
    """A tool probe's tool_choice, for messages."""
    return f"tool_choice naming {_TOOL!r}" if name == "forced" else f"tool_choice {name!r}"


def _tool_answer(run: Run, operation: Operation, name: str) -> Exchange:
    """The plain answer to a tool probe, asked once (its rule and FIELD-TOOL-FINISH read it)."""
    return run.cached(
        ("tool-answer", operation.label, name),
        lambda: send(run, operation, _tool_probe(run, operation, name)),
    )


def _tool_stream(run: Run, operation: Operation, name: str) -> StreamResult:
    """A tool probe streamed with usage, asked once (FIELD-TOOL-STREAMED and -FINISH read it)."""
    return run.cached(
        ("tool-stream", operation.label, name),
        lambda: stream(run, operation, _tool_probe(run, operation, name)),
    )


def _judge_calls(judgement: Judgement, exchange: Exchange, check: Callable[[Any], Any]) -> None:
    answer = field_answer(judgement, exchange, ("tool_choice", "tools"))
    if answer is None:
        return
    choices = answer.get("choices")
    if (
        isinstance(choices, list)
        and choices
        and all(isinstance(c, Mapping) and is_cut_call(c) for c in choices)
    ):
        judgement.not_applicable(
            f"the tool call was cut at max_tokens {_TOOL_TOKENS}: its arguments are unfinished"
        )
        return
    judgement.findings(check(answer), exchange=exchange)


@requirement("FIELD-TOOL-FORCED", applies_to="field:tools")
@per_operation
def test_tool_forced(judgement: Judgement, operation: Operation) -> None:
    """A named tool_choice returns a call of that function with valid arguments."""
    exchange = _tool_answer(judgement.run, operation, "forced")
    _judge_calls(judgement, exchange, lambda answer: check_tool_forced(answer, _TOOL, _TOOLS))


@requirement("FIELD-TOOL-REQUIRED", applies_to="field:tools")
@per_operation
def test_tool_required(judgement: Judgement, operation: Operation) -> None:
    """tool_choice 'required' returns at least one call of a declared tool."""
    exchange = _tool_answer(judgement.run, operation, "required")
    _judge_calls(judgement, exchange, lambda answer: check_tool_required(answer, _TOOLS))


@requirement("FIELD-TOOL-NONE", applies_to="field:tools")
@per_operation
def test_tool_none(judgement: Judgement, operation: Operation) -> None:
    """tool_choice 'none' never returns a tool call."""
    exchange = _tool_answer(judgement.run, operation, "none")
    answer = field_answer(judgement, exchange, ("tool_choice", "tools"))
    if answer is not None:
        judgement.findings(check_tool_none(answer), exchange=exchange)


def _tool_observation(
    judgement: Judgement, result: StreamResult
) -> tuple[StreamResult, StreamObservation] | None:
    """The observation of a streamed tool probe; a refusal or other status is judged as plain."""
    exchange = result.exchange
    if exchange.status is not None and exchange.status != 200:
        field_answer(judgement, exchange, ("tool_choice", "tools"))
        return None
    observation = stream_observation(judgement, result)
    return None if observation is None else (result, observation)


@requirement("FIELD-TOOL-STREAMED", applies_to="field:tools")
@per_operation
def test_tool_streamed(judgement: Judgement, operation: Operation) -> None:
    """A forced tool call streams as deltas: index, then id, type and name first, never again."""
    observed = _tool_observation(judgement, _tool_stream(judgement.run, operation, "forced"))
    if observed is not None:
        result, observation = observed
        judgement.findings(check_tool_stream(observation, _TOOL, _TOOLS), stream=result)


_FINISH_STREAMED = {True: ("forced", "required", "auto"), False: ("forced",)}
"""The tool probes FIELD-TOOL-FINISH also streams: all in full runs, the shared one in quick."""


@requirement("FIELD-TOOL-FINISH", applies_to="field:tools")
@per_operation
def test_tool_finish(judgement: Judgement, operation: Operation) -> None:
    """finish_reason is 'tool_calls' exactly when a choice carries calls, plain and streamed.

    Every tool probe's plain answer is judged (forced, required, auto, and none: an answer
    without calls must not end 'tool_calls' either); the streams are judged on the response
    they add up to. The forced and required answers and the forced stream are the ones the
    other FIELD-TOOL rules read; auto costs one more generation, and the quick profile streams
    only the forced probe.
    """
    run = judgement.run
    for name in _TOOL_CHOICES:
        exchange = _tool_answer(run, operation, name)
        answer = field_answer(judgement, exchange, ("tool_choice", "tools"))
        if answer is not None:
            where = f"the answer to {_shown_choice(name)}"
            judgement.findings(check_tool_finish(answer, where), exchange=exchange)
    for name in _FINISH_STREAMED[run.settings.profile.field_probes_full]:
        observed = _tool_observation(judgement, _tool_stream(run, operation, name))
        if observed is not None:
            result, observation = observed
            where = f"the stream for {_shown_choice(name)}"
            findings = check_tool_finish(streamed_response(observation), where)
            judgement.findings(findings, stream=result)


@requirement("FIELD-TOOL-RESULT-ACCEPTED", applies_to="field:tools")
@per_operation
def test_tool_result_accepted(judgement: Judgement, operation: Operation) -> None:
    """A conversation with a tool call and its tool result is accepted."""
    run = judgement.run
    call = {
        "id": "call_mimic_1",
        "type": "function",
        "function": {"name": _TOOL, "arguments": '{"city": "Paris"}'},
    }
    messages = [
        {"role": "user", "content": _TOOL_PROMPT},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 degrees."},
    ]
    body = {**plain_body(run, operation), "messages": messages, "max_tokens": 1}
    _expect_status(
        judgement,
        operation,
        body,
        _is_2xx,
        "a conversation with an assistant tool call and its tool message must be accepted",
    )


@requirement("FIELD-FUNCTION-CALL", applies_to="field:functions")
@per_operation
def test_function_call(judgement: Judgement, operation: Operation) -> None:
    """The deprecated functions / function_call pair returns message.function_call."""
    run = judgement.run
    body = {
        **_user(plain_body(run, operation), _TOOL_PROMPT),
        "functions": [{"name": _TOOL, "parameters": _TOOL_PARAMETERS}],
        "function_call": {"name": _TOOL},
        "max_tokens": _TOOL_TOKENS,
    }
    _judge_answer(
        judgement,
        operation,
        body,
        ("function_call", "functions"),
        lambda answer: check_function_call(answer, _TOOL, _TOOL_PARAMETERS),
    )


@requirement("FIELD-MESSAGES-ACCEPTED", applies_to="field:tools")
@per_operation
def test_messages_accepted(judgement: Judgement, operation: Operation) -> None:
    """Every documented message role and message field is accepted."""
    run = judgement.run
    call = {"name": _TOOL, "arguments": '{"city": "Paris"}'}
    messages = [
        {"role": "developer", "content": "Answer briefly."},
        {"role": "system", "content": "You report the weather.", "name": "rules"},
        {"role": "user", "content": _TOOL_PROMPT, "name": "alice"},
        {"role": "assistant", "content": None, "function_call": call, "name": "helper"},
        {"role": "function", "name": _TOOL, "content": "Sunny, 21 degrees."},
        {"role": "assistant", "content": "It is sunny.", "refusal": None},
        {"role": "user", "content": [{"type": "text", "text": "And tomorrow?"}]},
    ]
    body = {**plain_body(run, operation), "messages": messages, "max_tokens": 1}
    what = "the conversation uses only message shapes the spec documents"
    _expect_status(judgement, operation, body, _is_2xx, what)


# ------------------------------------------------------------------------------ the rest


def _ignored_values(run: Run, operation: Operation) -> dict[str, Any]:
    """A value for each x-mimic-ignored field, generated from the spec's schema where possible.

    The values come from request bodies that schemathesis generates from the capped request
    schema (as the STREAM samples do); a field no generated body sets non-null gets a small
    valid value built from its schema.
    """
    fields = ignored_fields(run.contract, operation)
    schema = run.cached("schemathesis-positive", lambda: build_schema(run, "positive"))
    strategy = schema.find_operation_by_label(operation.label).as_strategy()
    seed = derive_seed(run.settings.seed, "ignored", operation.label)
    found: dict[str, Any] = {}
    for case in draw(strategy, _IGNORED_DRAWS, seed):
        body = case.body if isinstance(case.body, dict) else {}
        for name in fields:
            if body.get(name) is not None:
                found.setdefault(name, body[name])
    return {
        name: found[name] if name in found else value_for(run.contract, field_schema)
        for name, field_schema in fields.items()
    }


@requirement("FIELD-IGNORED-ACCEPTED", applies_to="field:ignored")
@per_operation
def test_ignored_fields_accepted(judgement: Judgement, operation: Operation) -> None:
    """Each field the spec marks x-mimic-ignored gets a 2xx: alone, or all at once (quick)."""
    run = judgement.run
    base = {**plain_body(run, operation), "max_tokens": 1}
    values = _ignored_values(run, operation)
    probes = [{name: value} for name, value in values.items()]
    if not run.settings.profile.field_probes_full:
        probes = [values]
    for fields in probes:
        what = f"the spec marks {', '.join(map(repr, fields))} as accepted and ignored"
        _expect_status(judgement, operation, {**base, **fields}, _is_2xx, what)


@requirement("FIELD-AUDIO-REFUSED", applies_to="field:audio")
@per_operation
def test_audio_refused(judgement: Judgement, operation: Operation) -> None:
    """Asking for audio output is a 400."""
    run = judgement.run
    properties = request_schema(run.contract, operation)["properties"]
    body = {**plain_body(run, operation), "modalities": ["text", "audio"], "max_tokens": 2}
    if "audio" in properties:
        body["audio"] = value_for(run.contract, properties["audio"])
    what = "the request asks for audio output (modalities holds 'audio')"
    _expect_status(judgement, operation, body, lambda s: s == 400, what)
