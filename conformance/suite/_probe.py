"""Fixed probes: deterministic requests to one generating operation, and reading their answers.

The SEM and FIELD rules need specific inputs (a stop sequence taken from an earlier answer, a
token bias, a forced tool), so they send hand-built requests rather than generated ones. Every
probe starts from the operation's spec example made deterministic (``temperature: 0``, a seed
from the run, few tokens, one choice); on a path with a model, the body names a *different*
served model, so that the path-wins rule is tested by the same answer.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from conformance.checks import Finding
from conformance.checks.fields import named_refusal
from conformance.checks.streaming import StreamObservation
from conformance.exchange import Exchange, StreamResult
from conformance.suite._draw import derive_seed
from conformance.suite._judgement import Judgement
from conformance.suite._operations import MODEL_FIELD, path_values
from conformance.suite._requests import example_body, json_request
from conformance.suite._run import Run
from spec import Contract, Operation

__all__ = [
    "FORCED_TOOL_CHOICE",
    "PROBE_TOKENS",
    "TOOLS",
    "TOOL_NAME",
    "TOOL_PARAMETERS",
    "TOOL_PROMPT",
    "TOOL_TOKENS",
    "answer_of",
    "field_answer",
    "per_operation",
    "plain_body",
    "send",
    "stream",
    "stream_observation",
    "streamed_pair",
    "tool_body",
    "value_for",
    "with_user_text",
]

PROBE_TOKENS = 8
"""``max_tokens`` of the base probe: enough text to pick a stop sequence from."""

TOOL_NAME = "get_weather"
"""The function of the tool probes."""
TOOL_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string", "enum": ["Paris", "London"]}},
    "required": ["city"],
    "additionalProperties": False,
}
"""Its parameters: one argument, from two values, so that a call is short and checkable."""
TOOLS = {TOOL_NAME: TOOL_PARAMETERS}
TOOL_PROMPT = "What is the weather in Paris?"
TOOL_TOKENS = 24
"""``max_tokens`` of a tool probe. A call costs more tokens than prose (the server may have the
model choose the tool first): 24 leave room for this one-argument call, and a cut call is not
judged."""
FORCED_TOOL_CHOICE = {"type": "function", "function": {"name": TOOL_NAME}}

_DROPPED = (
    "stream",
    "stream_options",
    "n",
    "best_of",
    "stop",
    "max_completion_tokens",
    "logprobs",
    "echo",
)


def per_operation(
    test: Callable[[Judgement, Operation], None],
) -> Callable[[Judgement, Operation | None], None]:
    """Run a suite test on its operation, then conclude the judgement.

    When the spec has no operation the rule applies to, the case is a skip that says so.
    """

    @functools.wraps(test)
    def judged(judgement: Judgement, operation: Operation | None) -> None:
        if operation is None:
            judgement.not_applicable("the spec has no operation this rule applies to")
        else:
            test(judgement, operation)
        judgement.conclude()

    return judged


def plain_body(run: Run, operation: Operation) -> dict[str, Any]:
    """The operation's spec example made deterministic: the base of every probe."""
    body = {
        k: v
        for k, v in example_body(run.contract, operation, run.served_models).items()
        if k not in _DROPPED
    }
    seed = derive_seed(run.settings.seed, "semantics") % (2**31)
    body.update({"temperature": 0, "seed": seed, "max_tokens": PROBE_TOKENS})
    path_model = path_values(run.contract, operation).get(MODEL_FIELD)
    if path_model is not None:
        others = [m for m in run.served_models if m != path_model]
        if others:
            body[MODEL_FIELD] = others[0]
    return body


def with_user_text(body: Mapping[str, Any], text: str) -> dict[str, Any]:
    """``body`` with one user message (chat) or prompt (completions) of ``text``."""
    if "messages" in body:
        return {**body, "messages": [{"role": "user", "content": text}]}
    return {**body, "prompt": text}


def tool_body(run: Run, operation: Operation, tool_choice: Any) -> dict[str, Any]:
    """The base probe asking for the weather, with the tool and ``tool_choice``."""
    tools = [
        {"type": "function", "function": {"name": name, "parameters": parameters}}
        for name, parameters in TOOLS.items()
    ]
    return {
        **with_user_text(plain_body(run, operation), TOOL_PROMPT),
        "tools": tools,
        "tool_choice": tool_choice,
        "max_tokens": TOOL_TOKENS,
    }


def send(run: Run, operation: Operation, body: Mapping[str, Any]) -> Exchange:
    """Send ``body`` to the operation."""
    return run.send(json_request(run.contract, operation, dict(body)))


def stream(
    run: Run, operation: Operation, body: Mapping[str, Any], *, include_usage: bool = True
) -> StreamResult:
    """Send ``body`` streamed (with a usage chunk unless told otherwise) and read every event."""
    streamed: dict[str, Any] = {**body, "stream": True}
    if include_usage:
        streamed["stream_options"] = {"include_usage": True}
    return run.stream(json_request(run.contract, operation, streamed))


def streamed_pair(run: Run, operation: Operation) -> StreamResult:
    """The base probe streamed for two choices of two tokens each, with usage; fetched once.

    The STREAM rules judge it (so that their per-choice rules see n > 1) and so does
    SEM-N-CHOICES (every index 0..n-1 streams).
    """
    body = {**plain_body(run, operation), "n": 2, "max_tokens": 2}
    return run.cached(("streamed-pair", operation.label), lambda: stream(run, operation, body))


def _json_object(judgement: Judgement, exchange: Exchange) -> dict[str, Any] | None:
    try:
        value = json.loads(exchange.body)
    except ValueError:
        judgement.not_applicable("the 200 answer is not JSON (judged by SCHEMA-RESPONSE-VALID)")
        return None
    if not isinstance(value, dict):
        judgement.not_applicable(
            "the 200 answer is not a JSON object (judged by SCHEMA-RESPONSE-VALID)"
        )
        return None
    return value


def answer_of(judgement: Judgement, exchange: Exchange) -> dict[str, Any] | None:
    """The JSON object of a 200 answer; otherwise count the sample as an error or not applicable."""
    if exchange.status is None:
        judgement.transport_error(exchange)
        return None
    if exchange.status != 200:
        judgement.not_applicable(
            f"the target answered {exchange.status} to the spec's example request "
            "(a 400 may refuse it; other statuses are judged by the SCHEMA and ERR rules)"
        )
        return None
    return _json_object(judgement, exchange)


def field_answer(
    judgement: Judgement, exchange: Exchange, fields: Iterable[str]
) -> dict[str, Any] | None:
    """The JSON object of a 2xx answer to a probe of ``fields``.

    A 400 whose message names one of the fields is a refusal the contract allows (its
    ``info.description``, "Documented request fields"): not applicable, with the target's own
    message as the reason (``VERDICTS.md``, "Optional fields a target refuses"). Any other
    status fails the rule: the field was neither honoured nor refused as the contract says.
    """
    fields = tuple(fields)
    if exchange.status is None:
        judgement.transport_error(exchange)
        return None
    if 200 <= exchange.status < 300:
        return _json_object(judgement, exchange)
    if exchange.status == 429:  # busy, not a verdict on the field (SCHEMA-HEADERS judges it)
        judgement.not_applicable("the target answered 429 (queue full) to the probe")
        return None
    try:
        body = json.loads(exchange.body)
    except ValueError:
        body = None
    refusal = named_refusal(exchange.status, body, fields)
    if refusal is not None:
        judgement.not_applicable(f"the target refuses {', '.join(fields)}: {refusal!r}")
        return None
    judgement.findings(
        [
            Finding(
                judgement.requirement_id,
                f"a valid request with {', '.join(fields)} was answered {exchange.status}, "
                "neither served nor refused with a 400 that names the field.",
            )
        ],
        exchange=exchange,
    )
    return None


def stream_observation(judgement: Judgement, result: StreamResult) -> StreamObservation | None:
    """The observation of a complete 200 stream; otherwise count an error or not applicable."""
    if result.exchange.status is None:
        judgement.transport_error(result.exchange, stream=result)
        return None
    if result.exchange.status != 200 or result.ended_by != "eof":
        judgement.not_applicable(
            f"the streamed request got {result.exchange.status}, reading ended by "
            f"{result.ended_by} (judged by the STREAM rules)"
        )
        return None
    return StreamObservation.from_result(result, include_usage=True)


def value_for(contract: Contract, schema: Any) -> Any:
    """A small, non-null value valid against ``schema``: what a client would plausibly send.

    The suite's dependencies have no public "one valid instance of this schema" call
    (schemathesis generates whole requests, and its schema-level generator is internal), and a
    field probe needs a *present*, non-null value, which generated bodies often omit.
    """
    while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
        schema = contract.resolve(schema["$ref"][1:])
    if not isinstance(schema, Mapping):
        return "mimic"
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return next((v for v in schema["enum"] if v is not None), None)
    for key in ("oneOf", "anyOf"):
        if schema.get(key):
            return value_for(contract, schema[key][0])
    declared = schema.get("type", "object")
    types = [declared] if isinstance(declared, str) else [t for t in declared if t != "null"]
    kind = types[0] if types else "null"
    properties = schema.get("properties", {})
    if kind == "object":
        required = schema.get("required", [])
        return {name: value_for(contract, properties.get(name)) for name in required}
    if kind == "array":
        count = int(schema.get("minItems", 0))
        return [value_for(contract, schema.get("items")) for _ in range(count)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    return {"boolean": True, "null": None}.get(kind, "mimic")
