"""What each documented request field must visibly do: the FIELD family.

Every ``check_*`` function judges one requirement over parsed answers (a completion response, a
streamed observation, a status) and returns findings; none sends a request. Where a field may
be refused, :func:`named_refusal` tells a refusal that the contract allows (a 400 whose message
names the field) from one it does not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from conformance.checks._answers import choices, clip, listed
from conformance.checks._finding import Finding, schema_problems
from conformance.checks.semantics import choice_texts, index_problem
from conformance.checks.streaming import StreamObservation, streamed_texts

__all__ = [
    "check_banned_token",
    "check_best_of",
    "check_chat_logprobs",
    "check_echo",
    "check_forced_token",
    "check_function_call",
    "check_json_answer",
    "check_legacy_logprobs",
    "check_prompt_list",
    "check_status",
    "check_tool_finish",
    "check_tool_forced",
    "check_tool_none",
    "check_tool_required",
    "check_tool_stream",
    "complete_contents",
    "is_cut_call",
    "named_refusal",
    "repeated_piece",
    "streamed_response",
]

_REPLACEMENT = "\ufffd"


def _message(choice: Mapping[str, Any]) -> Mapping[str, Any]:
    message = choice.get("message")
    return message if isinstance(message, Mapping) else {}


def named_refusal(status: int | None, body: Any, fields: Iterable[str]) -> str | None:
    """The server's message if this is a 400 whose message names one of ``fields``, else None.

    The contract lets a server refuse a documented field with a 400 that names it (its
    ``info.description``, "Documented request fields"); such a refusal is a skip for the field's
    requirement, not a pass and not a failure (``VERDICTS.md``, "Optional fields a target
    refuses").
    """
    if status != 400 or not isinstance(body, Mapping):
        return None
    message = " ".join(str(body.get(key, "")) for key in ("error", "message", "detail"))
    return message.strip() if any(field in message for field in fields) else None


def check_status(
    requirement_id: str, status: int | None, allowed: Callable[[int], bool], what: str
) -> list[Finding]:
    """A requirement that is only about the status: ``allowed(status)`` must hold."""
    if status is None or allowed(status):
        return []
    return [Finding(requirement_id, f"{what}, but the target answered {status}.")]


# ------------------------------------------------------------------------------ choices


def check_best_of(response: Mapping[str, Any], n: int) -> list[Finding]:
    """FIELD-BEST-OF: a request with ``best_of >= n`` gets exactly ``n`` choices."""
    problem = index_problem(response, n)
    if problem is None:
        return []
    return [Finding("FIELD-BEST-OF", f"best_of was at least n={n}, but {problem}.")]


def check_prompt_list(response: Mapping[str, Any], prompts: int, n: int) -> list[Finding]:
    """FIELD-PROMPT-LIST: ``prompts`` prompts with ``n`` choices each give prompts*n choices."""
    problem = index_problem(response, prompts * n)
    if problem is None:
        return []
    return [
        Finding(
            "FIELD-PROMPT-LIST",
            f"the prompt was a list of {prompts} strings and n was {n}, so {prompts * n} "
            f"choices were due, but {problem}.",
        )
    ]


def check_echo(response: Mapping[str, Any], prompt: str) -> list[Finding]:
    """FIELD-ECHO: with ``echo``, every choice's text starts with the prompt."""
    found = []
    for index, text in choice_texts(response).items():
        if not text.startswith(prompt):
            found.append(
                Finding(
                    "FIELD-ECHO",
                    f"echo was true, but choice {index}'s text {clip(text)} does not start "
                    f"with the prompt {clip(prompt)}.",
                )
            )
    return found


# ------------------------------------------------------------------------------ logprobs


def _joined_bytes(entries: Sequence[Mapping[str, Any]]) -> str | None:
    """The entries' ``bytes`` joined and decoded, or None if some entry has none."""
    raw = bytearray()
    for entry in entries:
        data = entry.get("bytes")
        if not isinstance(data, list) or not all(isinstance(b, int) and 0 <= b < 256 for b in data):
            return None
        raw.extend(data)
    return raw.decode("utf-8", "replace")


def _chat_logprob_problems(entries: Any, content: str, k: int, index: Any) -> list[str]:
    """What is wrong with one choice's ``logprobs.content`` (empty: nothing)."""
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        return [f"choice {index} has no logprobs.content list ({clip(entries)})"]
    problems = []
    tokens = "".join(str(e.get("token", "")) for e in entries)
    decoded = _joined_bytes(entries)
    # A token may hold part of a multi-byte character, so its own text can be a placeholder:
    # when every entry has its bytes, those are what must add up to the content.
    if (decoded if decoded is not None else tokens) != content:
        problems.append(
            f"choice {index}'s logprobs tokens join to {clip(decoded or tokens)}, but its "
            f"content is {clip(content)}"
        )
    for number, entry in enumerate(entries):
        alternatives = entry.get("top_logprobs")
        if not isinstance(alternatives, list) or len(alternatives) != k:
            count = len(alternatives) if isinstance(alternatives, list) else alternatives
            problems.append(f"choice {index}'s token {number} has {count!r} top_logprobs, not {k}")
            break
        values = [entry.get("logprob")] + [
            alt.get("logprob") for alt in alternatives if isinstance(alt, Mapping)
        ]
        if any(not isinstance(v, int | float) or v > 0 for v in values):
            problems.append(f"choice {index}'s token {number} has a logprob above 0: {values!r}")
            break
        data = entry.get("bytes")
        if isinstance(data, list) and all(isinstance(b, int) and 0 <= b < 256 for b in data):
            try:
                text = bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                continue  # part of a character: nothing to compare
            if text != entry.get("token"):
                problems.append(
                    f"choice {index}'s token {number} is {clip(entry.get('token'))} but its "
                    f"bytes decode to {clip(text)}"
                )
                break
    return problems


def _logprobs_findings(
    response: Mapping[str, Any],
    requirement_id: str,
    where: str,
    problems_of: Callable[[Mapping[str, Any], str, Any], list[str]],
) -> list[Finding]:
    """Judge each choice's ``logprobs`` against its text with ``problems_of``."""
    problems = []
    texts = choice_texts(response)
    for choice in choices(response):
        index = choice.get("index")
        logprobs = choice.get("logprobs")
        if not isinstance(logprobs, Mapping):
            problems.append(f"choice {index} has logprobs {clip(logprobs)} although asked for")
            continue
        problems += problems_of(logprobs, texts.get(index, ""), index)
    if not problems:
        return []
    return [Finding(requirement_id, f"in {where}, " + "; ".join(problems[:3]) + ".")]


def check_chat_logprobs(
    response: Mapping[str, Any], k: int, where: str = "the response"
) -> list[Finding]:
    """FIELD-CHAT-LOGPROBS: OpenAI's chat logprobs shape, consistent with each choice's content."""
    return _logprobs_findings(
        response,
        "FIELD-CHAT-LOGPROBS",
        where,
        lambda logprobs, text, index: _chat_logprob_problems(
            logprobs.get("content"), text, k, index
        ),
    )


_LEGACY_KEYS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")


def _legacy_problems(logprobs: Mapping[str, Any], text: str, k: int, index: Any) -> list[str]:
    arrays = {key: logprobs.get(key) for key in _LEGACY_KEYS}
    if not all(isinstance(value, list) for value in arrays.values()):
        shown = {key: type(value).__name__ for key, value in arrays.items()}
        return [f"choice {index}'s logprobs lack one of the four arrays ({shown})"]
    lengths = {key: len(value) for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        return [f"choice {index}'s logprobs arrays differ in length: {lengths}"]
    problems = []
    tokens = [str(t) for t in arrays["tokens"]]
    partial = any(_REPLACEMENT in t or t.startswith("bytes:") for t in tokens)
    if not partial and "".join(tokens) != text:
        problems.append(
            f"choice {index}'s logprobs tokens join to {clip(''.join(tokens))}, but its text "
            f"is {clip(text)}"
        )
    offsets = arrays["text_offset"]
    if any(not isinstance(o, int) for o in offsets) or offsets != sorted(offsets):
        problems.append(f"choice {index}'s text_offset is not non-decreasing: {clip(offsets)}")
    if any(
        v is not None and (not isinstance(v, int | float) or v > 0)
        for v in arrays["token_logprobs"]
    ):
        problems.append(f"choice {index} has a token_logprob above 0")
    for number, top in enumerate(arrays["top_logprobs"]):
        size = len(top) if isinstance(top, Mapping) else 0
        # OpenAI: "up to logprobs+1" (the sampled token is always included).
        if top is not None and not k <= size <= k + 1:
            problems.append(
                f"choice {index}'s top_logprobs[{number}] has {size} entries for logprobs={k}"
            )
            break
    return problems


def check_legacy_logprobs(
    response: Mapping[str, Any], k: int, where: str = "the response"
) -> list[Finding]:
    """FIELD-LEGACY-LOGPROBS: the legacy completions shape, consistent with each choice's text."""
    return _logprobs_findings(
        response,
        "FIELD-LEGACY-LOGPROBS",
        where,
        lambda logprobs, text, index: _legacy_problems(logprobs, text, k, index),
    )


def _streamed_message(text: str, calls: Mapping[Any, dict[str, Any]] | None) -> dict[str, Any]:
    if not calls:
        return {"role": "assistant", "content": text}
    ordered = [calls[index] for index in sorted(calls, key=repr)]
    return {"role": "assistant", "content": text or None, "tool_calls": ordered}


def _add_call_delta(calls: dict[Any, dict[str, Any]], entry: Any) -> None:
    """Fold one ``delta.tool_calls`` entry into the calls of its choice, by the entry's index.

    The first ``id``, ``type`` and ``function.name`` a call gets are kept (a repeated one is
    FIELD-TOOL-STREAMED's business, not doubled here), and the string ``function.arguments``
    pieces are joined.
    """
    if not isinstance(entry, Mapping):
        return
    function = entry.get("function") if isinstance(entry.get("function"), Mapping) else {}
    call = calls.setdefault(
        entry.get("index"),
        {"id": None, "type": None, "function": {"name": None, "arguments": ""}},
    )
    for key in ("id", "type"):
        if call[key] is None:
            call[key] = entry.get(key)
    if call["function"]["name"] is None:
        call["function"]["name"] = function.get("name")
    if isinstance(function.get("arguments"), str):
        call["function"]["arguments"] += function["arguments"]


def streamed_response(obs: StreamObservation) -> dict[str, Any]:
    """A non-streamed-shaped response assembled from a stream's chunks, choice by choice.

    Each choice gets the text joined from its deltas, its last non-null ``finish_reason``,
    ``logprobs`` whose lists are the chunks' lists concatenated (None if no chunk of the
    choice carried logprobs), and, if its deltas carried ``tool_calls``, ``message.tool_calls``
    folded from them by index (``content`` then None if no text came); the response gets the
    last ``usage`` a chunk carried (None if none did). So the plain checks judge the stream too.
    """
    texts = streamed_texts(obs)
    logprobs: dict[Any, dict[str, list[Any]]] = {}
    finish: dict[Any, Any] = {}
    calls: dict[Any, dict[Any, dict[str, Any]]] = {}
    usage: Any = None
    for chunk in obs.chunks:
        if chunk.body.get("usage") is not None:
            usage = chunk.body["usage"]
        for choice in choices(chunk.body):
            index = choice.get("index")
            if choice.get("finish_reason") is not None:
                finish[index] = choice["finish_reason"]
            piece = choice.get("logprobs")
            if isinstance(piece, Mapping):
                merged = logprobs.setdefault(index, {})
                for key, value in piece.items():
                    if isinstance(value, list):
                        merged.setdefault(key, []).extend(value)
            delta = choice.get("delta")
            entries = delta.get("tool_calls") if isinstance(delta, Mapping) else None
            for entry in entries if isinstance(entries, list) else ():
                _add_call_delta(calls.setdefault(index, {}), entry)
    return {
        "choices": [
            {
                "index": index,
                "message": _streamed_message(text, calls.get(index)),
                "text": text,
                "logprobs": logprobs.get(index),
                "finish_reason": finish.get(index),
            }
            for index, text in texts.items()
        ],
        "usage": usage,
    }


# ------------------------------------------------------------------------------ logit_bias


def repeated_piece(text: str, count: int, *, exact: bool = False) -> str | None:
    """The piece that ``text`` repeats ``count`` times, or None if it is no such repetition.

    Detokenizers may strip the whitespace at either end of an answer, so ``"a a a"`` counts as
    ``" a"`` three times; with ``exact``, only ``text == piece * count`` counts.
    """
    if count < 1 or not text:
        return None
    if exact:
        piece = text[: len(text) // count]
        return piece if piece and piece * count == text else None
    target = text.strip()
    for length in range(1, len(text) + 1):
        if length * count < len(target):
            continue
        for start in range(len(text) - length + 1):
            piece = text[start : start + length]
            if (piece * count).strip() == target:
                return piece
    return None


def check_forced_token(text: str, completion_tokens: int, token_id: str) -> list[Finding]:
    """FIELD-LOGIT-BIAS-FORCE: with +100 on one token, the text is that token repeated."""
    if repeated_piece(text, completion_tokens) is not None:
        return []
    return [
        Finding(
            "FIELD-LOGIT-BIAS-FORCE",
            f"logit_bias gave token {token_id} a bias of 100 at temperature 0, but the "
            f"{completion_tokens}-token answer {clip(text)} is not one piece repeated "
            f"{completion_tokens} times.",
        )
    ]


def check_banned_token(tokens: Sequence[str], piece: str, token_id: str) -> list[Finding]:
    """FIELD-LOGIT-BIAS-BAN: with -100 on a token, no generated token is that token's text."""
    hits = [number for number, token in enumerate(tokens) if token == piece]
    if not hits:
        return []
    return [
        Finding(
            "FIELD-LOGIT-BIAS-BAN",
            f"logit_bias gave token {token_id} (text {piece!r}) a bias of -100, but the "
            f"answer's tokens {clip(list(tokens))} still hold it at position(s) {hits}.",
        )
    ]


# ------------------------------------------------------------------------------ response_format


def complete_contents(response: Mapping[str, Any]) -> dict[Any, str]:
    """The content of each choice that ended by itself (``finish_reason`` ``stop``).

    A choice cut at the token limit holds an unfinished document: no format rule applies to it.
    """
    return {
        choice.get("index"): content
        for choice in choices(response)
        if choice.get("finish_reason") == "stop"
        and isinstance(content := _message(choice).get("content"), str)
    }


def check_json_answer(
    contents: Mapping[Any, str], requirement_id: str, schema: Mapping[str, Any] | None = None
) -> list[Finding]:
    """FIELD-JSON-OBJECT (no ``schema``: a JSON object) or FIELD-JSON-SCHEMA (valid JSON)."""
    validator = Draft202012Validator(schema) if schema is not None else None
    found = []
    for index, content in contents.items():
        try:
            value = json.loads(content)
        except ValueError:
            found.append(
                Finding(
                    requirement_id,
                    f"response_format asked for JSON, but choice {index}'s complete content "
                    f"{clip(content)} does not parse as JSON.",
                )
            )
            continue
        if validator is None and not isinstance(value, dict):
            found.append(
                Finding(
                    requirement_id,
                    f"response_format json_object asks for a JSON object, but choice {index}'s "
                    f"content {clip(content)} is a JSON {type(value).__name__}.",
                )
            )
            continue
        problems = schema_problems(validator, value) if validator is not None else []
        if problems:
            found.append(
                Finding(
                    requirement_id,
                    f"choice {index}'s content {clip(content)} is not valid against the "
                    f"json_schema given: {'; '.join(problems)}.",
                )
            )
    return found


# ------------------------------------------------------------------------------ tools


def _arguments_problem(arguments: Any, parameters: Mapping[str, Any] | None) -> str | None:
    if not isinstance(arguments, str):
        return f"arguments {clip(arguments)} are not a JSON string"
    try:
        value = json.loads(arguments)
    except ValueError:
        return f"arguments {clip(arguments)} do not parse as JSON"
    if parameters is None:
        return None
    try:
        problems = schema_problems(Draft202012Validator(parameters), value)
    except SchemaError:  # pragma: no cover - the suite sends valid parameter schemas
        return None
    return f"arguments {clip(arguments)} are not valid: {problems[0]}" if problems else None


def _calls(choice: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    calls = _message(choice).get("tool_calls")
    return [c for c in calls if isinstance(c, Mapping)] if isinstance(calls, list) else []


def is_cut_call(choice: Mapping[str, Any]) -> bool:
    """Whether the choice is a tool call cut at the token limit: started right, not judged."""
    return bool(_calls(choice)) and choice.get("finish_reason") == "length"


def _call_problems(
    choice: Mapping[str, Any], tools: Mapping[str, Mapping[str, Any]], allowed: Collection[str]
) -> list[str]:
    index = choice.get("index")
    calls = _calls(choice)
    if is_cut_call(choice):
        return []
    if not calls:
        return [f"choice {index} carries no tool_calls (content {clip(_message(choice))})"]
    problems = []
    for call in calls:
        function = call.get("function")
        function = function if isinstance(function, Mapping) else {}
        name = function.get("name")
        if name not in allowed:
            problems.append(f"choice {index} calls {name!r}, not one of {sorted(allowed)}")
            continue
        problem = _arguments_problem(function.get("arguments"), tools.get(str(name)))
        if problem:
            problems.append(f"choice {index}'s call of {name!r}: {problem}")
    return problems  # its finish_reason is FIELD-TOOL-FINISH's


def check_tool_forced(
    response: Mapping[str, Any], name: str, tools: Mapping[str, Mapping[str, Any]]
) -> list[Finding]:
    """FIELD-TOOL-FORCED: every choice calls the named function with valid arguments."""
    problems = [p for choice in choices(response) for p in _call_problems(choice, tools, [name])]
    if not problems:
        return []
    return [
        Finding(
            "FIELD-TOOL-FORCED",
            f"tool_choice forced {name!r}, but " + "; ".join(problems[:3]) + ".",
        )
    ]


def check_tool_required(
    response: Mapping[str, Any], tools: Mapping[str, Mapping[str, Any]]
) -> list[Finding]:
    """FIELD-TOOL-REQUIRED: every choice calls declared tools with valid arguments."""
    problems = [p for choice in choices(response) for p in _call_problems(choice, tools, tools)]
    if not problems:
        return []
    return [
        Finding(
            "FIELD-TOOL-REQUIRED",
            "tool_choice was 'required', but " + "; ".join(problems[:3]) + ".",
        )
    ]


def check_tool_none(response: Mapping[str, Any]) -> list[Finding]:
    """FIELD-TOOL-NONE: no choice carries a call (``message.tool_calls`` or ``function_call``).

    Only the calls: a ``finish_reason`` that disagrees with them is FIELD-TOOL-FINISH's, so a
    choice without calls that still ends ``tool_calls`` fails that rule, not this one.
    """
    found = []
    for choice in choices(response):
        calls, function_call = _calls(choice), _message(choice).get("function_call")
        if calls:
            carried = f"tool_calls {clip(calls)}"
        elif function_call is not None:
            carried = f"a function_call {clip(function_call)}"
        else:
            continue
        found.append(
            Finding(
                "FIELD-TOOL-NONE",
                f"tool_choice was 'none', but choice {choice.get('index')} carries {carried}.",
            )
        )
    return found


def check_tool_finish(response: Mapping[str, Any], where: str) -> list[Finding]:
    """FIELD-TOOL-FINISH: ``finish_reason`` is ``tool_calls`` exactly when a choice has calls.

    A choice that carries tool calls ends ``tool_calls``, unless it was cut at the token limit
    (``length``: the call is unfinished, and not judged); a choice without calls never ends
    ``tool_calls``. ``where`` names the answer (the probe's ``tool_choice``, plain or streamed);
    a stream is judged on the response it adds up to (:func:`streamed_response`).
    """
    problems = []
    for choice in choices(response):
        index, reason = choice.get("index"), choice.get("finish_reason")
        calls = _calls(choice)
        if calls and reason not in ("tool_calls", "length"):
            problems.append(
                f"choice {index} carries {len(calls)} tool call(s) but finish_reason is "
                f"{reason!r}, not 'tool_calls'"
            )
        elif not calls and reason == "tool_calls":
            problems.append(
                f"choice {index} carries no tool calls (message {clip(_message(choice))}) but "
                "finish_reason is 'tool_calls'"
            )
    if not problems:
        return []
    return [Finding("FIELD-TOOL-FINISH", f"in {where}, " + "; ".join(problems[:3]) + ".")]


def check_function_call(
    response: Mapping[str, Any], name: str, parameters: Mapping[str, Any]
) -> list[Finding]:
    """FIELD-FUNCTION-CALL: every choice carries ``message.function_call`` of ``name``.

    A choice cut at the token limit (``length``) with a function call started is not judged.
    """
    problems = []
    for choice in choices(response):
        index = choice.get("index")
        call = _message(choice).get("function_call")
        if not isinstance(call, Mapping):
            problems.append(f"choice {index} carries no function_call ({clip(_message(choice))})")
        elif call.get("name") != name:
            problems.append(f"choice {index} calls {call.get('name')!r}, not {name!r}")
        elif choice.get("finish_reason") != "length":
            problem = _arguments_problem(call.get("arguments"), parameters)
            if problem:
                problems.append(f"choice {index}'s function_call: {problem}")
    if not problems:
        return []
    return [
        Finding(
            "FIELD-FUNCTION-CALL",
            f"function_call named {name!r}, but " + "; ".join(problems[:3]) + ".",
        )
    ]


def _stream_calls(obs: StreamObservation) -> dict[Any, list[tuple[int, Any]]]:
    """Each choice's ``delta.tool_calls`` entries, with the event that carried them."""
    found: dict[Any, list[tuple[int, Any]]] = {}
    for chunk in obs.chunks:
        for choice in choices(chunk.body):
            delta = choice.get("delta")
            calls = delta.get("tool_calls") if isinstance(delta, Mapping) else None
            if isinstance(calls, list):
                found.setdefault(choice.get("index"), []).extend(
                    (chunk.number, call) for call in calls
                )
    return found


_JSON_KINDS = ((bool, "boolean"), (int | float, "number"), (Mapping, "object"), (list, "array"))


def _json_kind(value: Any) -> str:
    """What JSON value ``value`` is, for a message (``object``, ``array``, ...)."""
    return next((kind for types, kind in _JSON_KINDS if isinstance(value, types)), "value")


def _call_delta_problems(
    index: Any,
    call_index: int,
    repeats: Sequence[tuple[int, str]],
    not_string: tuple[int, Any] | None,
) -> list[str]:
    """The problems of one streamed call's later deltas and of its ``arguments`` pieces."""
    problems = []
    if repeats:
        numbers = [number for number, _ in repeats]
        problems.append(
            f"choice {index}'s tool call {call_index} repeats its {repeats[0][1]} in "
            f"{len(repeats)} later delta(s) (events {listed(numbers)}): only the first delta of "
            "a call carries them, since clients join a call's string fields across deltas "
            "(the openai package's stream accumulator reads a repeated name 'get_weather' "
            "as 'get_weatherget_weather')"
        )
    if not_string is not None:
        number, value = not_string
        problems.append(
            f"choice {index}'s tool call {call_index} sends function.arguments as a JSON "
            f"{_json_kind(value)} in event {number} ({clip(value)}), not as a string: "
            "arguments stream as pieces of their JSON text"
        )
    return problems


def _streamed_call_problems(
    entries: list[tuple[int, Any]],
    name: str,
    tools: Mapping[str, Mapping[str, Any]],
    index: Any,
    cut: bool,
) -> tuple[list[str], list[int]]:
    """What is wrong with one choice's ``delta.tool_calls`` entries, and the events that show it.

    Later deltas of a call must carry no ``id`` and no ``function.name`` (absent or null). The
    openai package's ``openai/lib/streaming/_deltas.py`` (``accumulate_delta``, which its
    stream helper folds every chunk with) joins a later string onto the one it holds
    (``acc_value += delta_value``) for every key but ``index`` and ``type``, which it replaces:
    a repeated ``type`` is harmless, a repeated name or id is doubled, a null is skipped. Every
    ``function.arguments`` must be a string: the same function drops an object that follows a
    string silently.
    """
    calls: dict[int, dict[str, Any]] = {}
    problems: list[str] = []
    events: list[int] = []
    for number, entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("index"), int):
            problems.append(f"choice {index}'s tool call delta in event {number} has no index")
            events.append(number)
            continue
        function = entry.get("function") if isinstance(entry.get("function"), Mapping) else {}
        call = calls.get(entry["index"])
        if call is None:
            if not (
                isinstance(entry.get("id"), str)
                and entry.get("type") == "function"
                and isinstance(function.get("name"), str)
            ):
                problems.append(
                    f"the first delta of choice {index}'s tool call {entry['index']} (event "
                    f"{number}) lacks its id, type or function name: {clip(dict(entry))}"
                )
                events.append(number)
            call = calls[entry["index"]] = {
                "name": function.get("name"),
                "arguments": "",
                "repeats": [],
                "not_string": None,
            }
        else:
            repeated = [
                key
                for key, value in (("id", entry.get("id")), ("function.name", function.get("name")))
                if value is not None
            ]
            if repeated:
                call["repeats"].append((number, " and ".join(repeated)))
                events.append(number)
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call["arguments"] += arguments
        elif arguments is not None:
            call["not_string"] = call["not_string"] or (number, arguments)
            events.append(number)
    if not calls and not problems:
        problems.append(f"choice {index} streamed no delta.tool_calls although {name!r} was forced")
    for call_index, call in calls.items():
        problems += _call_delta_problems(index, call_index, call["repeats"], call["not_string"])
        if cut or call["not_string"]:  # cut at the token limit, or a piece not text: not joined
            continue
        problem = _arguments_problem(call["arguments"], tools.get(str(call["name"])))
        if problem:
            problems.append(f"choice {index}'s streamed tool call {call_index}: joined {problem}")
    return problems, events


def check_tool_stream(
    obs: StreamObservation, name: str, tools: Mapping[str, Mapping[str, Any]]
) -> list[Finding]:
    """FIELD-TOOL-STREAMED: a forced tool call streams as well-formed ``delta.tool_calls``.

    Each entry has an ``index``; a call's first delta carries ``id``, ``type`` and
    ``function.name``, its later ones neither ``id`` nor name; every ``function.arguments`` is a
    string, and a call's pieces join into JSON valid against its parameters (unless the choice
    was cut at the token limit).
    """
    if obs.error_events or not obs.chunks:
        return []
    by_choice = _stream_calls(obs)
    finished = streamed_response(obs)["choices"]
    problems: list[str] = []
    events: list[int] = []
    for choice in finished:
        index, cut = choice["index"], choice["finish_reason"] == "length"
        entries = by_choice.get(index, [])
        found, numbers = _streamed_call_problems(entries, name, tools, index, cut)
        problems += found
        events += numbers
    if not problems:
        return []
    return [
        Finding("FIELD-TOOL-STREAMED", "; ".join(problems[:3]) + ".", event_numbers=tuple(events))
    ]
