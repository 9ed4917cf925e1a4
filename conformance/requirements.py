"""The catalogue: every requirement the suite judges, with its stable ID, level and source.

A requirement is one rule a conforming server keeps, stated in one sentence. The IDs are stable
(reports, CI gates and ``--requirement`` selections name them), so rename nothing: add new ones.
Each ID starts with its family (``SCHEMA``, ``STREAM``, ``ERR``, ``AUTH``, ``SEM``,
``FIELD``, ``SDK``, ``ROBUST``), which is also how the suite's test modules are split: ``FIELD``
holds what each documented request field (beyond the sampling basics) must visibly do, ``SDK``
what OpenAI's official client makes of the answers, ``ROBUST`` what a server does with hostile
traffic (judged only on request, see :data:`HOSTILE_FAMILY`).

Each source names the places the rule comes from, all shipped with the kit (see
:mod:`conformance.sources`): nodes of the contract by JSON pointer (``spec:#/components/...``),
where every wire decision is written and the published API page's own words are recorded, and
sections of the suite's rules, ``VERDICTS.md`` (``verdicts:#bounded-time``). A test holds every
reference to a place that exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from types import MappingProxyType

from conformance.results import Level, Requirement

__all__ = [
    "FAMILIES",
    "HOSTILE_FAMILY",
    "REQUIREMENTS",
    "family_of",
    "hostile_only_patterns",
    "is_hostile",
    "requirement",
    "select",
    "unknown_patterns",
]

_MUST, _SHOULD = Level.MUST, Level.SHOULD

_INFO = "spec:#/info/description"
"""The decisions that apply everywhere (status codes, errors, streaming, authentication, ...)."""
_STREAM_RULES = (
    "spec:#/components/responses/ChatCompletion/content/text~1event-stream/x-mimic-decision"
)
"""The stream rules (framing, ids, roles, finish reasons, usage, the end, tool calls)."""

REQUIREMENTS: tuple[Requirement, ...] = (
    # ------------------------------------------------------------------ schema (schemathesis)
    Requirement(
        "SCHEMA-NO-5XX",
        _MUST,
        "No request, valid or invalid, is answered with a 5xx status.",
        f"{_INFO} (Status codes: 500 is never caused by input alone); "
        "spec:#/components/responses/InternalError",
    ),
    Requirement(
        "SCHEMA-STATUS-DOCUMENTED",
        _MUST,
        "Every response status is one that the operation documents.",
        "spec:#/paths (the responses of every operation)",
    ),
    Requirement(
        "SCHEMA-CONTENT-TYPE",
        _MUST,
        "Every response's Content-Type is a media type documented for its status.",
        "spec:#/components/responses (the content of each response)",
    ),
    Requirement(
        "SCHEMA-RESPONSE-VALID",
        _MUST,
        "Every response body, and every event of a stream, is valid against the schema "
        "documented for its status and media type.",
        "spec:#/components/responses (schema, and itemSchema for text/event-stream)",
    ),
    Requirement(
        "SCHEMA-HEADERS",
        _MUST,
        "Every response carries the headers documented as required for its status "
        "(Allow on 405, Retry-After on 429), in the documented format.",
        "spec:#/components/headers; spec:#/components/responses/MethodNotAllowed; "
        "spec:#/components/responses/TooManyRequests",
    ),
    Requirement(
        "SCHEMA-VALID-ACCEPTED",
        _MUST,
        "A request that is valid against the spec is not rejected as invalid: it gets a 2xx, "
        "or a documented 400 (valid but cannot be served) or 429 (queue full).",
        f"{_INFO} (Status codes: 400 and 429 for valid requests, 422 for invalid ones)",
    ),
    Requirement(
        "SCHEMA-INVALID-REJECTED",
        _MUST,
        "A request that violates the spec is never accepted with a 2xx.",
        f"{_INFO} (Status codes: 422); spec:#/components/responses/ValidationError",
    ),
    Requirement(
        "SCHEMA-METHOD-405",
        _MUST,
        "A method that the spec does not document for a path is answered 405 with an Allow header.",
        f"spec:#/components/responses/MethodNotAllowed; {_INFO} (Status codes: 405)",
    ),
    # ------------------------------------------------------------------ streaming
    Requirement(
        "STREAM-CONTENT-TYPE",
        _MUST,
        'An accepted request with "stream": true is answered 200 with Content-Type '
        "text/event-stream.",
        f"{_INFO} (Streaming); spec:#/components/responses/ChatCompletion; "
        "spec:#/components/responses/Completion",
    ),
    Requirement(
        "STREAM-FRAMING",
        _MUST,
        "The stream follows the WHATWG event-stream format, and every event is exactly one "
        "'data: <JSON>' line followed by a blank line (comment lines allowed).",
        f"{_STREAM_RULES}; verdicts:#event-stream-parsing",
    ),
    Requirement(
        "STREAM-EVENT-JSON",
        _MUST,
        "The data of every event but [DONE] is JSON valid against the operation's chunk "
        "schema (or the 500 error body).",
        "spec:#/components/schemas/ChatCompletionEvent; spec:#/components/schemas/CompletionEvent",
    ),
    Requirement(
        "STREAM-DONE-LAST",
        _MUST,
        "The stream's last event is 'data: [DONE]', it comes exactly once, and nothing follows it.",
        f"spec:#/components/schemas/DoneSentinel; {_STREAM_RULES}",
    ),
    Requirement(
        "STREAM-IDS-CONSTANT",
        _MUST,
        "Every chunk of one stream has the same id, created and model.",
        f"{_STREAM_RULES}",
    ),
    Requirement(
        "STREAM-ROLE-FIRST",
        _MUST,
        "The first chunk of each choice carries delta.role 'assistant'.",
        f"{_STREAM_RULES}",
    ),
    Requirement(
        "STREAM-FINISH-ONCE",
        _MUST,
        "Each choice's finish_reason is non-null in exactly one chunk.",
        f"{_STREAM_RULES}",
    ),
    Requirement(
        "STREAM-USAGE",
        _MUST,
        "With stream_options.include_usage true, one chunk with choices [] and usage comes "
        'just before [DONE] and every other chunk carries "usage": null, present; without it, '
        "no chunk carries a non-null usage.",
        f"{_STREAM_RULES}; spec:#/components/schemas/ChunkBase/properties/usage; "
        "spec:#/components/schemas/StreamOptions/properties/include_usage",
    ),
    Requirement(
        "STREAM-ERROR-EVENT",
        _MUST,
        "An error after the 200 is exactly one event carrying the 500 error body, followed by "
        "[DONE] alone: no chunk comes after it and no second error.",
        f"{_INFO} (Streaming); {_STREAM_RULES}; spec:#/components/schemas/InternalError",
    ),
    Requirement(
        "STREAM-ENDS",
        _MUST,
        "The server ends every stream, closing the connection after [DONE], within the "
        "request timeout.",
        f"{_STREAM_RULES} (the connection then closes); verdicts:#bounded-time; "
        "verdicts:#streams-are-read-event-by-event",
    ),
    Requirement(
        "STREAM-INCREMENTAL",
        _SHOULD,
        "A stream is sent as it is generated: in a long one, the content events arrive spread "
        "over at least a fifth of the time from the request to the last of them, not held "
        "back and sent together.",
        f"{_INFO} (Streaming: events go out as they are generated); {_STREAM_RULES}; "
        "verdicts:#stream-timings",
    ),
    # ------------------------------------------------------------------ error codes
    Requirement(
        "ERR-MALFORMED-JSON",
        _MUST,
        "A body that is not valid JSON gets the contract's status for an invalid request "
        "(Mimic: 422 with a detail whose loc starts with 'body'; OpenAI: 400).",
        "spec:#/components/requestBodies/ChatCompletionRequest/description; "
        "spec:#/components/requestBodies/CompletionRequest/description",
    ),
    Requirement(
        "ERR-NOT-OBJECT",
        _MUST,
        "A JSON body that is not an object gets the contract's status for an invalid request "
        "(Mimic: 422 with a detail whose loc starts with 'body'; OpenAI: 400).",
        "spec:#/components/requestBodies/ChatCompletionRequest/description; "
        "spec:#/components/requestBodies/CompletionRequest/description",
    ),
    Requirement(
        "ERR-MISSING-FIELD",
        _MUST,
        "A body without a required field gets the contract's status for an invalid request "
        "(Mimic: 422 with a detail whose loc starts with 'body'; OpenAI: 400 whose error.param "
        "names the field).",
        f"{_INFO} (Status codes: 422); spec:#/components/responses/ValidationError; "
        "spec:#/components/schemas/ValidationErrorItem",
    ),
    Requirement(
        "ERR-WRONG-TYPE",
        _MUST,
        "A body field of a type the schema does not allow gets the contract's status for an "
        "invalid request (Mimic: 422 with a detail whose loc starts with 'body'; OpenAI: 400 "
        "whose error.param names the field).",
        f"{_INFO} (Status codes: 422); spec:#/components/responses/ValidationError; "
        "spec:#/components/schemas/ValidationErrorItem",
    ),
    Requirement(
        "ERR-OUT-OF-RANGE",
        _MUST,
        "A body value outside the schema's range (minimum, maximum, minItems) gets the "
        "contract's status for an invalid request (Mimic: 422 with a detail whose loc starts "
        "with 'body'; OpenAI: 400 whose error.param names the field).",
        f"{_INFO} (Status codes: 422); spec:#/components/responses/ValidationError; "
        "spec:#/components/schemas/ValidationErrorItem",
    ),
    Requirement(
        "ERR-PATH-MODEL",
        _MUST,
        "A path parameter outside its enum is answered 422 with loc ['path', <name>].",
        "spec:#/components/parameters/PathModel",
    ),
    Requirement(
        "ERR-UNKNOWN-MODEL",
        _MUST,
        "A body model that the server does not list, on an operation whose body chooses the "
        "model, is answered 404.",
        "spec:#/paths/~1v1~1chat~1completions/post/description; "
        f"spec:#/paths/~1v1~1completions/post/description; {_INFO} (Body model on /v1/…)",
    ),
    Requirement(
        "ERR-UNKNOWN-ROUTE",
        _MUST,
        "A path that the spec does not have is answered 404.",
        f"spec:#/components/responses/NotFound; {_INFO} (Status codes: 404)",
    ),
    Requirement(
        "ERR-METHOD-405",
        _MUST,
        "A documented path asked with an undocumented method is answered 405 with an Allow "
        "header that lists exactly the documented methods.",
        "spec:#/components/responses/MethodNotAllowed; spec:#/components/headers/Allow",
    ),
    Requirement(
        "ERR-BODY-SHAPE",
        _MUST,
        "Every error response's body is valid against the schema documented for its status, "
        "and its errorCode, where it has one, equals the status.",
        f"{_INFO} (Errors: errorCode is the HTTP status); spec:#/components/schemas/Error; "
        "spec:#/components/schemas/HTTPValidationError; spec:#/components/schemas/InternalError",
    ),
    Requirement(
        "ERR-NO-LEAK",
        _MUST,
        "No error answer carries a stack trace, a source file path or an exception class name, "
        "or echoes the API key the request carried.",
        f"{_INFO} (Status codes: no traceback; Authentication); "
        "spec:#/components/schemas/InternalError",
    ),
    Requirement(
        "ERR-RECOVERS",
        _MUST,
        "After each kind of rejected request (malformed, invalid, unknown model or route, wrong "
        "method, oversized), and after a client that leaves mid-stream, the next valid request "
        "is served 2xx promptly.",
        f"{_INFO} (Limits: the next request is served as if it had not come)",
    ),
    Requirement(
        "ERR-BEFORE-STREAM",
        _MUST,
        'A request with "stream": true that is refused before generation starts (a value out '
        "of range, an unknown body model) gets the error status the same request gets without "
        "stream and an application/json error body, never a 200 event stream holding the error.",
        f"{_INFO} (Streaming: a request refused before its generation starts; Official clients); "
        "spec:#/components/responses/ValidationError; spec:#/components/responses/NotFound",
    ),
    # ------------------------------------------------------------------ authentication
    Requirement(
        "AUTH-MISSING-KEY",
        _MUST,
        "When the server requires keys, a request that carries none is answered 401 on "
        "every operation, streamed or not, and no method a path does not document is "
        "answered 2xx without one.",
        f"{_INFO} (Authentication); spec:#/components/responses/Unauthorized; spec:#/security",
    ),
    Requirement(
        "AUTH-WRONG-KEY",
        _MUST,
        "When the server requires keys, a request with a key that it does not know is "
        "answered 401 on every operation, streamed or not, and no method a path does not "
        "document is answered 2xx with it.",
        f"{_INFO} (Authentication); spec:#/components/responses/Unauthorized",
    ),
    Requirement(
        "AUTH-SCHEMES",
        _MUST,
        "A valid key is accepted in every header scheme that the spec declares.",
        "spec:#/components/securitySchemes (the published page's three header schemes); "
        f"{_INFO} (Authentication)",
    ),
    # ------------------------------------------------------------------ semantics
    Requirement(
        "SEM-MAX-TOKENS",
        _MUST,
        "usage.completion_tokens never exceeds max_tokens and finish_reason is 'length' when "
        "generation reached that limit, streamed or not, and a streamed choice has no more "
        "content deltas than max_tokens.",
        "spec:#/components/schemas/MaxTokens (streamed, the same); "
        "spec:#/components/schemas/FinishReason",
    ),
    Requirement(
        "SEM-USAGE-SUM",
        _MUST,
        "usage.total_tokens equals usage.prompt_tokens + usage.completion_tokens.",
        "spec:#/components/schemas/Usage",
    ),
    Requirement(
        "SEM-STOP-ABSENT",
        _MUST,
        "The returned text never contains a requested stop sequence, streamed or not, and a "
        "streamed text does not end with the start of one unless the plain answer to the same "
        "seeded request does too.",
        "spec:#/components/schemas/Stop (and its decision: nothing of a stop sequence leaks "
        "into a stream)",
    ),
    Requirement(
        "SEM-N-CHOICES",
        _MUST,
        "A request for n choices gets exactly n choices, with indexes 0 to n-1, streamed or not.",
        "spec:#/components/schemas/ChoiceCount",
    ),
    Requirement(
        "SEM-PATH-MODEL",
        _MUST,
        "On a path with {model}, the response's model, and every chunk's model when streamed, "
        "is the path model, whatever the body says.",
        "spec:#/paths/~1{model}~1v1~1chat~1completions/post "
        "(the published page's words, and the decision); "
        f"{_INFO} (Path model wins)",
    ),
    Requirement(
        "SEM-MODELS-SCOPED",
        _MUST,
        "A path-scoped models list holds exactly one entry, whose id is the path model.",
        "spec:#/paths/~1{model}~1v1~1models/get (its description quotes the published page)",
    ),
    Requirement(
        "SEM-SEED-REPEATABLE",
        _SHOULD,
        "The same request with the same seed returns the same text (at temperature 0 and "
        "when sampling), streamed or not.",
        "spec:#/components/schemas/Seed",
    ),
    Requirement(
        "SEM-STREAM-AGREES",
        _SHOULD,
        "A seeded temperature-0 request gives the same text and usage streamed and not streamed.",
        "spec:#/components/schemas/Seed (streamed or not)",
    ),
    Requirement(
        "SEM-COMPLETION-TEXT",
        _SHOULD,
        "A completions choice's text equals its message.content.",
        "spec:#/components/schemas/CompletionChoice",
    ),
    # ------------------------------------------------------------------ request fields
    Requirement(
        "FIELD-BEST-OF",
        _MUST,
        "best_of at least n returns n choices, and best_of below n is answered 400.",
        "spec:#/components/schemas/CompletionRequest/properties/best_of",
    ),
    Requirement(
        "FIELD-CHAT-LOGPROBS",
        _MUST,
        "With logprobs true and top_logprobs k, each choice carries logprobs.content whose "
        "tokens joined give its content, each with k alternatives and logprobs at most 0, "
        "streamed or not.",
        "spec:#/components/schemas/ChatLogprobs; spec:#/components/schemas/TokenLogprob; "
        "spec:#/components/schemas/ChatCompletionRequest/properties/top_logprobs",
    ),
    Requirement(
        "FIELD-LEGACY-LOGPROBS",
        _MUST,
        "With completions logprobs k, each choice carries tokens, token_logprobs, top_logprobs "
        "and text_offset of one length, tokens joined give its text and offsets never "
        "decrease, streamed or not.",
        "spec:#/components/schemas/CompletionLogprobs; "
        "spec:#/components/schemas/CompletionRequest/properties/logprobs",
    ),
    Requirement(
        "FIELD-LOGIT-BIAS-FORCE",
        _MUST,
        "A logit_bias of 100 on one token at temperature 0 makes the output that token repeated.",
        "spec:#/components/schemas/LogitBias (100: always)",
    ),
    Requirement(
        "FIELD-LOGIT-BIAS-BAN",
        _MUST,
        "A logit_bias of -100 keeps a token out of an output that would otherwise contain it.",
        "spec:#/components/schemas/LogitBias (-100: never)",
    ),
    Requirement(
        "FIELD-JSON-OBJECT",
        _MUST,
        "With response_format json_object, a complete answer's content parses as a JSON object.",
        "spec:#/components/schemas/ResponseFormatJsonObject",
    ),
    Requirement(
        "FIELD-JSON-SCHEMA",
        _MUST,
        "With response_format json_schema, a complete answer's content is JSON valid against "
        "the given schema.",
        "spec:#/components/schemas/ResponseFormatJsonSchema",
    ),
    Requirement(
        "FIELD-JSON-SCHEMA-INVALID",
        _MUST,
        "A response_format json_schema whose schema is not a valid JSON Schema is answered 400.",
        "spec:#/components/schemas/ResponseFormatJsonSchema (an uncompilable schema is a 400)",
    ),
    Requirement(
        "FIELD-TOOL-FORCED",
        _MUST,
        "A tool_choice naming a function returns tool_calls of that function whose arguments "
        "are JSON valid against its parameters.",
        "spec:#/components/schemas/ChatCompletionRequest/properties/tool_choice; "
        "spec:#/components/schemas/NamedToolChoice; spec:#/components/schemas/ToolCall",
    ),
    Requirement(
        "FIELD-TOOL-REQUIRED",
        _MUST,
        "tool_choice 'required' returns at least one tool call, each of a declared tool with "
        "JSON arguments valid against its parameters.",
        "spec:#/components/schemas/ChatCompletionRequest/properties/tool_choice; "
        "spec:#/components/schemas/ToolCall",
    ),
    Requirement(
        "FIELD-TOOL-NONE",
        _MUST,
        "tool_choice 'none' never returns a tool call.",
        "spec:#/components/schemas/ChatCompletionRequest/properties/tool_choice",
    ),
    Requirement(
        "FIELD-TOOL-STREAMED",
        _MUST,
        "Streamed tool calls arrive as delta.tool_calls with an index, the first delta of each "
        "call carries id, type and function name and the later ones neither id nor name, every "
        "arguments piece is a string, and a call's joined arguments are JSON valid against the "
        "function's parameters.",
        f"{_STREAM_RULES} (tool calls); spec:#/components/schemas/ChunkDelta/properties/tool_calls",
    ),
    Requirement(
        "FIELD-TOOL-FINISH",
        _MUST,
        "finish_reason is 'tool_calls' exactly when the choice carries tool calls (a choice cut "
        "at the token limit aside), whatever the tool_choice, streamed or not.",
        "spec:#/components/schemas/FinishReason; "
        "spec:#/components/schemas/ChatCompletionRequest/properties/tool_choice; "
        f"{_STREAM_RULES} (tool calls)",
    ),
    Requirement(
        "FIELD-TOOL-RESULT-ACCEPTED",
        _MUST,
        "A conversation holding an assistant message with tool_calls and a tool message with "
        "its tool_call_id is accepted.",
        "spec:#/components/schemas/AssistantMessage; spec:#/components/schemas/ToolMessage",
    ),
    Requirement(
        "FIELD-FUNCTION-CALL",
        _MUST,
        "The deprecated functions with function_call naming one return message.function_call "
        "of that function with arguments JSON valid against its parameters.",
        "spec:#/components/schemas/ChatCompletionRequest/properties/functions; "
        "spec:#/components/schemas/ChatCompletionRequest/properties/function_call; "
        "spec:#/components/schemas/ResponseMessage",
    ),
    Requirement(
        "FIELD-MESSAGES-ACCEPTED",
        _MUST,
        "A conversation with developer, system, user, assistant and function messages, names, "
        "text-part content, an assistant function_call and a null refusal is accepted.",
        "spec:#/components/schemas/ChatMessage (and its six message schemas)",
    ),
    Requirement(
        "FIELD-PROMPT-LIST",
        _MUST,
        "A prompt of k strings with n choices gets k times n choices, indexed 0 to k*n-1.",
        "spec:#/components/schemas/CompletionRequest/properties/prompt",
    ),
    Requirement(
        "FIELD-ECHO",
        _MUST,
        "With echo true, each choice's text starts with the prompt.",
        "spec:#/components/schemas/CompletionRequest/properties/echo",
    ),
    Requirement(
        "FIELD-SUFFIX",
        _MUST,
        "A request with suffix is served (2xx) or refused with 400, never 422 or 5xx.",
        "spec:#/components/schemas/CompletionRequest/properties/suffix; "
        f"{_INFO} (Documented request fields)",
    ),
    Requirement(
        "FIELD-IGNORED-ACCEPTED",
        _MUST,
        "A request carrying any field that the spec marks x-mimic-ignored is answered 2xx.",
        f"{_INFO} (Documented request fields); "
        "spec:#/components/schemas/ChatCompletionRequest/description",
    ),
    Requirement(
        "FIELD-AUDIO-REFUSED",
        _MUST,
        "A request that asks for audio output is answered 400.",
        "spec:#/components/schemas/ChatCompletionRequest/properties/audio; "
        "spec:#/components/schemas/ChatCompletionRequest/properties/modalities",
    ),
    # ------------------------------------------------------------------ the official client
    Requirement(
        "SDK-CHAT-PLAIN",
        _MUST,
        "A chat completion is valid as the openai package's ChatCompletion type.",
        f"{_INFO} (Official clients); spec:#/components/schemas/ChatCompletion",
    ),
    Requirement(
        "SDK-CHAT-STREAM",
        _MUST,
        "A chat stream, plain or with a forced tool call, is read to its end by the openai "
        "package, each chunk valid as its ChatCompletionChunk, and its stream accumulator "
        "builds the final message from it without error.",
        f"{_INFO} (Official clients); {_STREAM_RULES}",
    ),
    Requirement(
        "SDK-STREAM-MATCHES",
        _SHOULD,
        "The message the openai package accumulates from a seeded temperature-0 chat stream "
        "has the content, tool calls and finish_reason of the plain answer to the same request.",
        f"{_INFO} (Official clients); spec:#/components/schemas/Seed (streamed or not)",
    ),
    Requirement(
        "SDK-MODELS",
        _MUST,
        "Every entry of a models list is valid as the openai package's Model type.",
        f"{_INFO} (Official clients); spec:#/components/schemas/ModelList",
    ),
    Requirement(
        "SDK-ERRORS",
        _MUST,
        "An error answer, also to a request for a stream, makes the openai package raise its "
        "exception for the status at once, with the server's message in it.",
        f"{_INFO} (Official clients; Streaming); spec:#/components/schemas/Error",
    ),
    # ------------------------------------------------------------------ hostile input (opt-in)
    Requirement(
        "ROBUST-SCHEMA-BOMB",
        _MUST,
        "A schema that is costly as a grammar (maxItems 1,000,000, 500-deep nesting, 10,000 "
        "enum values, a pattern repeated a million times) is answered 2xx, 400 or 422 in "
        "bounded time, and the target then serves a valid request.",
        f"{_INFO} (Limits); spec:#/components/schemas/ResponseFormatJsonSchema; "
        "verdicts:#hostile-traffic",
    ),
    Requirement(
        "ROBUST-FLOOD",
        _MUST,
        "A body within the size limit that floods a list or map with a million invalid items, "
        "or a body over the limit, is answered 4xx in bounded time, and the target then serves "
        "a valid request.",
        f"{_INFO} (Limits; Request bodies); verdicts:#hostile-traffic",
    ),
    Requirement(
        "ROBUST-UNENCODABLE",
        _MUST,
        "A lone surrogate in any string or key of a body is answered with a documented status "
        "other than 5xx and a JSON body, and the target then serves a valid request.",
        f"{_INFO} (Unencodable text; Limits); verdicts:#hostile-traffic",
    ),
    Requirement(
        "ROBUST-IDLE-CONNECTIONS",
        _MUST,
        "While 2,000 connections sit open without sending a request, a valid request on a new "
        "connection is served 2xx in bounded time.",
        f"{_INFO} (Limits); verdicts:#hostile-traffic",
    ),
    Requirement(
        "ROBUST-STALLED-CLOSED",
        _SHOULD,
        "A connection whose request head, or body, stops arriving is closed (or answered 4xx) "
        "within the request timeout.",
        f"{_INFO} (Limits); verdicts:#hostile-traffic",
    ),
)

FAMILIES: tuple[str, ...] = (
    "SCHEMA",
    "STREAM",
    "ERR",
    "AUTH",
    "SEM",
    "FIELD",
    "SDK",
    "ROBUST",
)
"""The requirement families, in report order."""
HOSTILE_FAMILY = "ROBUST"
"""The family that sends hostile traffic: judged only when a run opts in (``--robust``)."""

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


def is_hostile(requirement_id: str) -> bool:
    """Whether judging this requirement sends hostile traffic (the ``ROBUST`` family)."""
    return family_of(requirement_id) == HOSTILE_FAMILY


def hostile_only_patterns(patterns: Iterable[str]) -> list[str]:
    """The patterns that match hostile requirements only: they select nothing without opting in."""
    return [
        p
        for p in patterns
        if any(_matches(r.id, p) for r in REQUIREMENTS)
        and all(is_hostile(r.id) for r in REQUIREMENTS if _matches(r.id, p))
    ]


def select(
    include: Sequence[str] = (), exclude: Sequence[str] = (), *, hostile: bool = False
) -> tuple[Requirement, ...]:
    """The requirements that match any ``include`` pattern (all if none) and no ``exclude`` one.

    Patterns are IDs or shell-style globs (``STREAM-*``), matched case-insensitively; the
    result keeps catalogue order. The hostile family is left out unless ``hostile`` is true.
    """
    return tuple(
        req
        for req in REQUIREMENTS
        if (hostile or not is_hostile(req.id))
        and (not include or any(_matches(req.id, p) for p in include))
        and not any(_matches(req.id, p) for p in exclude)
    )
