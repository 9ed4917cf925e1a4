"""The catalogue: every requirement the suite judges, with its stable ID, level and source.

A requirement is one rule a conforming server keeps, stated in one sentence. The IDs are stable
(reports, CI gates and ``--requirement`` selections name them), so rename nothing: add new ones.
Each ID starts with its family (``SCHEMA``, ``STREAM``, ``ERR``, ``AUTH``, ``SEM``,
``FIELD``), which is also how the suite's test modules are split: ``FIELD`` holds what each
documented request field (beyond the sampling basics) must visibly do.

Sources name the place in the contract (``spec:``), the published API page (``seed:``) or the
team's design notes (``DESIGN.md``) that the rule comes from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from types import MappingProxyType

from conformance.results import Level, Requirement

__all__ = [
    "FAMILIES",
    "REQUIREMENTS",
    "family_of",
    "requirement",
    "select",
    "unknown_patterns",
]

_MUST, _SHOULD = Level.MUST, Level.SHOULD

REQUIREMENTS: tuple[Requirement, ...] = (
    # ------------------------------------------------------------------ schema (schemathesis)
    Requirement(
        "SCHEMA-NO-5XX",
        _MUST,
        "No request, valid or invalid, is answered with a 5xx status.",
        "spec: info.description 'Status codes' (500 is never caused by input alone); "
        "DESIGN.md §2 Errors",
    ),
    Requirement(
        "SCHEMA-STATUS-DOCUMENTED",
        _MUST,
        "Every response status is one that the operation documents.",
        "spec: paths.*.*.responses",
    ),
    Requirement(
        "SCHEMA-CONTENT-TYPE",
        _MUST,
        "Every response's Content-Type is a media type documented for its status.",
        "spec: paths.*.*.responses.*.content",
    ),
    Requirement(
        "SCHEMA-RESPONSE-VALID",
        _MUST,
        "Every response body, and every event of a stream, is valid against the schema "
        "documented for its status and media type.",
        "spec: components/responses (schema, and itemSchema for text/event-stream)",
    ),
    Requirement(
        "SCHEMA-HEADERS",
        _MUST,
        "Every response carries the headers documented as required for its status "
        "(Allow on 405, Retry-After on 429), in the documented format.",
        "spec: components/headers; components/responses/MethodNotAllowed, TooManyRequests",
    ),
    Requirement(
        "SCHEMA-VALID-ACCEPTED",
        _MUST,
        "A request that is valid against the spec is not rejected as invalid: it gets a 2xx, "
        "or a documented 400 (valid but cannot be served) or 429 (queue full).",
        "spec: info.description 'Status codes'; DESIGN.md §2 Errors (400 vs 422)",
    ),
    Requirement(
        "SCHEMA-INVALID-REJECTED",
        _MUST,
        "A request that violates the spec is never accepted with a 2xx.",
        "spec: info.description 'Status codes' (422); DESIGN.md §2 Errors",
    ),
    Requirement(
        "SCHEMA-METHOD-405",
        _MUST,
        "A method that the spec does not document for a path is answered 405 with an Allow header.",
        "spec: components/responses/MethodNotAllowed; DESIGN.md §2 Errors",
    ),
    # ------------------------------------------------------------------ streaming
    Requirement(
        "STREAM-CONTENT-TYPE",
        _MUST,
        'An accepted request with "stream": true is answered 200 with Content-Type '
        "text/event-stream.",
        "spec: components/responses/ChatCompletion, Completion (text/event-stream); "
        "DESIGN.md §2 Streaming",
    ),
    Requirement(
        "STREAM-FRAMING",
        _MUST,
        "The stream follows the WHATWG event-stream format, and every event is exactly one "
        "'data: <JSON>' line followed by a blank line (comment lines allowed).",
        "WHATWG HTML §9.2.6; spec: x-mimic-decision of the text/event-stream responses; "
        "DESIGN.md §2 Streaming",
    ),
    Requirement(
        "STREAM-EVENT-JSON",
        _MUST,
        "The data of every event but [DONE] is JSON valid against the operation's chunk "
        "schema (or the 500 error body).",
        "spec: components/schemas/ChatCompletionEvent, CompletionEvent (contentSchema)",
    ),
    Requirement(
        "STREAM-DONE-LAST",
        _MUST,
        "The stream's last event is 'data: [DONE]', it comes exactly once, and nothing follows it.",
        "spec: components/schemas/DoneSentinel; DESIGN.md §2 Streaming",
    ),
    Requirement(
        "STREAM-IDS-CONSTANT",
        _MUST,
        "Every chunk of one stream has the same id, created and model.",
        "spec: x-mimic-decision of components/responses/ChatCompletion; DESIGN.md §2 Streaming",
    ),
    Requirement(
        "STREAM-ROLE-FIRST",
        _MUST,
        "The first chunk of each choice carries delta.role 'assistant'.",
        "spec: x-mimic-decision of components/responses/ChatCompletion; DESIGN.md §2 Streaming",
    ),
    Requirement(
        "STREAM-FINISH-ONCE",
        _MUST,
        "Each choice's finish_reason is non-null in exactly one chunk.",
        "spec: x-mimic-decision of components/responses/ChatCompletion; DESIGN.md §2 Streaming",
    ),
    Requirement(
        "STREAM-USAGE",
        _MUST,
        "With stream_options.include_usage true, one chunk with choices [] and usage comes "
        "just before [DONE] and every other chunk has usage null; without it, no chunk "
        "carries usage.",
        "spec: components/schemas/ChunkBase (usage), StreamOptions; DESIGN.md §2 Streaming",
    ),
    Requirement(
        "STREAM-ENDS",
        _MUST,
        "The server ends every stream, closing the connection after [DONE], within the "
        "request timeout.",
        "spec: x-mimic-decision of components/responses/ChatCompletion ('the connection then "
        "closes'); DESIGN.md §3",
    ),
    # ------------------------------------------------------------------ error codes
    Requirement(
        "ERR-MALFORMED-JSON",
        _MUST,
        "A body that is not valid JSON is answered 422 with a detail whose loc starts with 'body'.",
        "spec: requestBodies.*.description; DESIGN.md §2 Errors (422)",
    ),
    Requirement(
        "ERR-NOT-OBJECT",
        _MUST,
        "A JSON body that is not an object is answered 422 with a detail whose loc starts "
        "with 'body'.",
        "spec: requestBodies.*.description; DESIGN.md §2 Errors (422)",
    ),
    Requirement(
        "ERR-MISSING-FIELD",
        _MUST,
        "A body without a required field is answered 422 with a detail whose loc starts "
        "with 'body'.",
        "spec: components/responses/ValidationError; DESIGN.md §2 Errors (422)",
    ),
    Requirement(
        "ERR-WRONG-TYPE",
        _MUST,
        "A body field of a type the schema does not allow is answered 422 with a detail "
        "whose loc starts with 'body'.",
        "spec: components/responses/ValidationError; DESIGN.md §2 Errors (422)",
    ),
    Requirement(
        "ERR-OUT-OF-RANGE",
        _MUST,
        "A body value outside the schema's range (minimum, maximum, minItems) is answered "
        "422 with a detail whose loc starts with 'body'.",
        "spec: components/responses/ValidationError; DESIGN.md §2 Request fields",
    ),
    Requirement(
        "ERR-PATH-MODEL",
        _MUST,
        "A path parameter outside its enum is answered 422 with loc ['path', <name>].",
        "spec: components/parameters/PathModel; DESIGN.md §2 Errors (422)",
    ),
    Requirement(
        "ERR-UNKNOWN-MODEL",
        _MUST,
        "A body model that the server does not list, on an operation whose body chooses the "
        "model, is answered 404.",
        "spec: paths./v1/chat/completions, /v1/completions (description); DESIGN.md §2 Operations",
    ),
    Requirement(
        "ERR-UNKNOWN-ROUTE",
        _MUST,
        "A path that the spec does not have is answered 404.",
        "spec: components/responses/NotFound; DESIGN.md §2 Errors (404)",
    ),
    Requirement(
        "ERR-METHOD-405",
        _MUST,
        "A documented path asked with an undocumented method is answered 405 with an Allow "
        "header that lists exactly the documented methods.",
        "spec: components/responses/MethodNotAllowed, components/headers/Allow; DESIGN.md §2 "
        "Errors (405)",
    ),
    Requirement(
        "ERR-BODY-SHAPE",
        _MUST,
        "Every error response's body is valid against the schema documented for its status, "
        "and its errorCode, where it has one, equals the status.",
        "spec: components/schemas/Error, HTTPValidationError, InternalError; DESIGN.md §2 "
        "Errors ('errorCode is the HTTP status')",
    ),
    # ------------------------------------------------------------------ authentication
    Requirement(
        "AUTH-MISSING-KEY",
        _MUST,
        "When the server requires keys, a request that carries none is answered 401.",
        "spec: components/responses/Unauthorized, security; DESIGN.md §2 Authentication",
    ),
    Requirement(
        "AUTH-WRONG-KEY",
        _MUST,
        "When the server requires keys, a request with a key that it does not know is "
        "answered 401.",
        "spec: components/responses/Unauthorized; DESIGN.md §2 Authentication",
    ),
    Requirement(
        "AUTH-SCHEMES",
        _MUST,
        "A valid key is accepted in every header scheme that the spec declares.",
        "spec: components/securitySchemes; seed: the three header schemes; DESIGN.md §2 "
        "Authentication",
    ),
    # ------------------------------------------------------------------ semantics
    Requirement(
        "SEM-MAX-TOKENS",
        _MUST,
        "usage.completion_tokens never exceeds max_tokens, and finish_reason is 'length' "
        "when generation reached that limit.",
        "spec: components/schemas/MaxTokens, FinishReason; DESIGN.md §2 Responses",
    ),
    Requirement(
        "SEM-USAGE-SUM",
        _MUST,
        "usage.total_tokens equals usage.prompt_tokens + usage.completion_tokens.",
        "spec: components/schemas/Usage; DESIGN.md §2 Responses",
    ),
    Requirement(
        "SEM-STOP-ABSENT",
        _MUST,
        "The returned text never contains a requested stop sequence, streamed or not.",
        "spec: components/schemas/Stop",
    ),
    Requirement(
        "SEM-N-CHOICES",
        _MUST,
        "A request for n choices gets exactly n choices, with indexes 0 to n-1, streamed or not.",
        "spec: components/schemas/ChoiceCount; DESIGN.md §2 Streaming (interleaved by index)",
    ),
    Requirement(
        "SEM-PATH-MODEL",
        _MUST,
        "On a path with {model}, the response's model is the path model, whatever the body says.",
        "spec: x-mimic-decision of the /{model}/… operations; seed: 'Model selection will be "
        "ignored and overridden with the one from the path'",
    ),
    Requirement(
        "SEM-MODELS-SCOPED",
        _MUST,
        "A path-scoped models list holds exactly one entry, whose id is the path model.",
        "spec: x-mimic-decision of listModelsForModel; seed: 'Will only return the path's model'",
    ),
    Requirement(
        "SEM-SEED-REPEATABLE",
        _SHOULD,
        "The same request with the same seed returns the same text (at temperature 0 and "
        "when sampling).",
        "spec: components/schemas/Seed",
    ),
    Requirement(
        "SEM-STREAM-AGREES",
        _SHOULD,
        "A seeded temperature-0 request gives the same text and usage streamed and not streamed.",
        "DESIGN.md §2 Streaming; spec: components/schemas/Seed",
    ),
    Requirement(
        "SEM-COMPLETION-TEXT",
        _SHOULD,
        "A completions choice's text equals its message.content.",
        "spec: components/schemas/CompletionChoice; DESIGN.md §2 Responses",
    ),
    # ------------------------------------------------------------------ request fields
    Requirement(
        "FIELD-BEST-OF",
        _MUST,
        "best_of at least n returns n choices, and best_of below n is answered 400.",
        "spec: CompletionRequest.best_of; DESIGN.md §2 Errors (400: best_of < n)",
    ),
    Requirement(
        "FIELD-CHAT-LOGPROBS",
        _MUST,
        "With logprobs true and top_logprobs k, each choice carries logprobs.content whose "
        "tokens joined give its content, each with k alternatives and logprobs at most 0, "
        "streamed or not.",
        "spec: components/schemas/ChatLogprobs, TokenLogprob; ChatCompletionRequest.top_logprobs",
    ),
    Requirement(
        "FIELD-LEGACY-LOGPROBS",
        _MUST,
        "With completions logprobs k, each choice carries tokens, token_logprobs, top_logprobs "
        "and text_offset of one length, tokens joined give its text and offsets never "
        "decrease, streamed or not.",
        "spec: components/schemas/CompletionLogprobs; CompletionRequest.logprobs",
    ),
    Requirement(
        "FIELD-LOGIT-BIAS-FORCE",
        _MUST,
        "A logit_bias of 100 on one token at temperature 0 makes the output that token repeated.",
        "spec: components/schemas/LogitBias ('100 (always)')",
    ),
    Requirement(
        "FIELD-LOGIT-BIAS-BAN",
        _MUST,
        "A logit_bias of -100 keeps a token out of an output that would otherwise contain it.",
        "spec: components/schemas/LogitBias ('-100 (never)')",
    ),
    Requirement(
        "FIELD-JSON-OBJECT",
        _MUST,
        "With response_format json_object, a complete answer's content parses as a JSON object.",
        "spec: components/schemas/ResponseFormatJsonObject",
    ),
    Requirement(
        "FIELD-JSON-SCHEMA",
        _MUST,
        "With response_format json_schema, a complete answer's content is JSON valid against "
        "the given schema.",
        "spec: components/schemas/ResponseFormatJsonSchema",
    ),
    Requirement(
        "FIELD-JSON-SCHEMA-INVALID",
        _MUST,
        "A response_format json_schema whose schema is not a valid JSON Schema is answered 400.",
        "spec: components/schemas/ResponseFormatJsonSchema ('an invalid schema is a 400')",
    ),
    Requirement(
        "FIELD-TOOL-FORCED",
        _MUST,
        "A tool_choice naming a function returns tool_calls of that function whose arguments "
        "are JSON valid against its parameters, with finish_reason tool_calls.",
        "spec: ChatCompletionRequest.tool_choice, components/schemas/NamedToolChoice, ToolCall; "
        "DESIGN.md §2 Responses",
    ),
    Requirement(
        "FIELD-TOOL-REQUIRED",
        _MUST,
        "tool_choice 'required' returns at least one tool call, each of a declared tool with "
        "JSON arguments valid against its parameters.",
        "spec: ChatCompletionRequest.tool_choice, components/schemas/ToolCall",
    ),
    Requirement(
        "FIELD-TOOL-NONE",
        _MUST,
        "tool_choice 'none' never returns a tool call.",
        "spec: ChatCompletionRequest.tool_choice",
    ),
    Requirement(
        "FIELD-TOOL-STREAMED",
        _MUST,
        "Streamed tool calls arrive as delta.tool_calls with an index, the first delta of each "
        "call carries id, type and function name, and its joined arguments are JSON valid "
        "against the function's parameters.",
        "spec: components/schemas/ChatCompletionEvent (delta.tool_calls), ToolCall",
    ),
    Requirement(
        "FIELD-TOOL-RESULT-ACCEPTED",
        _MUST,
        "A conversation holding an assistant message with tool_calls and a tool message with "
        "its tool_call_id is accepted.",
        "spec: components/schemas/AssistantMessage, ToolMessage",
    ),
    Requirement(
        "FIELD-FUNCTION-CALL",
        _MUST,
        "The deprecated functions with function_call naming one return message.function_call "
        "of that function with arguments JSON valid against its parameters.",
        "spec: ChatCompletionRequest.functions, function_call; components/schemas/ResponseMessage",
    ),
    Requirement(
        "FIELD-MESSAGES-ACCEPTED",
        _MUST,
        "A conversation with developer, system, user, assistant and function messages, names, "
        "text-part content, an assistant function_call and a null refusal is accepted.",
        "spec: components/schemas/ChatMessage and its six message schemas",
    ),
    Requirement(
        "FIELD-PROMPT-LIST",
        _MUST,
        "A prompt of k strings with n choices gets k times n choices, indexed 0 to k*n-1.",
        "spec: CompletionRequest.prompt ('a list gives one set of n choices per prompt')",
    ),
    Requirement(
        "FIELD-ECHO",
        _MUST,
        "With echo true, each choice's text starts with the prompt.",
        "spec: CompletionRequest.echo",
    ),
    Requirement(
        "FIELD-SUFFIX",
        _MUST,
        "A request with suffix is served (2xx) or refused with 400, never 422 or 5xx.",
        "spec: CompletionRequest.suffix",
    ),
    Requirement(
        "FIELD-IGNORED-ACCEPTED",
        _MUST,
        "A request carrying any field that the spec marks x-mimic-ignored is answered 2xx.",
        "spec: the request schemas' x-mimic-ignored fields; DESIGN.md §2 Request fields",
    ),
    Requirement(
        "FIELD-AUDIO-REFUSED",
        _MUST,
        "A request that asks for audio output is answered 400.",
        "spec: ChatCompletionRequest.modalities, audio; DESIGN.md §2 Errors (400)",
    ),
)

FAMILIES: tuple[str, ...] = ("SCHEMA", "STREAM", "ERR", "AUTH", "SEM", "FIELD")
"""The requirement families, in report order."""

_BY_ID: Mapping[str, Requirement] = MappingProxyType({req.id: req for req in REQUIREMENTS})
if len(_BY_ID) != len(REQUIREMENTS):  # pragma: no cover - guards edits to the table above
    raise RuntimeError("duplicate requirement IDs in the catalogue")


def requirement(requirement_id: str) -> Requirement:
    """Return the requirement with this ID; raise KeyError naming the ID if there is none."""
    try:
        return _BY_ID[requirement_id]
    except KeyError:
        raise KeyError(f"no requirement {requirement_id!r} in the catalogue") from None


def family_of(requirement_id: str) -> str:
    """The family of an ID: the part before its first hyphen (``STREAM-DONE-LAST`` → ``STREAM``)."""
    return requirement_id.split("-", 1)[0]


def _matches(requirement_id: str, pattern: str) -> bool:
    return fnmatchcase(requirement_id, pattern.strip().upper())


def unknown_patterns(patterns: Iterable[str]) -> list[str]:
    """The patterns (IDs or globs) that match no requirement: a typo in a CI gate is an error."""
    return [p for p in patterns if not any(_matches(r.id, p) for r in REQUIREMENTS)]


def select(include: Sequence[str] = (), exclude: Sequence[str] = ()) -> tuple[Requirement, ...]:
    """The requirements that match any ``include`` pattern (all if none) and no ``exclude`` one.

    Patterns are IDs or shell-style globs (``STREAM-*``), matched case-insensitively; the
    result keeps catalogue order.
    """
    return tuple(
        req
        for req in REQUIREMENTS
        if (not include or any(_matches(req.id, p) for p in include))
        and not any(_matches(req.id, p) for p in exclude)
    )
