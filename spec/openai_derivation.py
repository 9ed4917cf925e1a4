"""Derive the OpenAI-compatible contract, `openai.yaml`, from the Mimic contract.

Most servers that speak this API family are not Mimic servers: they serve ``/v1`` only, answer
an invalid request ``400`` with OpenAI's envelope ``{"error": {"message", "type", "param",
"code"}}``, and shape text completions as OpenAI's ``text_completion``. The OpenAI contract is
the Mimic contract with exactly those differences, so it is derived, never edited by hand: the
request fields, the stream rules and every other decision stay the Mimic contract's, word for
word. ``python -m spec.openai_derivation`` writes the file; a test holds the committed file equal
to what this module derives.

Why code and not an OpenAPI Overlay document: the differences are structural (drop every path
with a path model, replace one response by another everywhere it is used, rewrite schemas), which
an overlay could only express as a long list of hand-kept JSONPath targets, and no maintained
Python library applies overlays.
"""

from __future__ import annotations

import copy
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["OPENAI_PATH", "derive", "main", "render"]

OPENAI_PATH = Path(__file__).with_name("openai.yaml")
"""Where the derived contract is written, beside `openapi.yaml`."""

_SCHEMAS = "#/components/schemas/"
_RESPONSES = "#/components/responses/"

_TITLE = "OpenAI-compatible chat and completions API"
_SUMMARY = (
    "The Mimic API's `/v1` operations with OpenAI's statuses, error body and text completions."
)
_HEADER = """\
The OpenAI-compatible contract of this kit, derived from the Mimic contract (`openapi.yaml`) by
`spec/openai_derivation.py`; do not edit it by hand. It is what servers that speak OpenAI's API
(llama.cpp's `llama-server`, llama-cpp-python's server, vLLM, Ollama, LiteLLM) claim to serve:
the three `/v1` operations only, OpenAI's `400` and error envelope, and OpenAI's
`text_completion` for text completions. The request fields, the stream rules and every other
decision are the Mimic contract's, unchanged.
"""

_BULLETS: dict[str, str | None] = {
    "Path model wins.": None,
    "Status codes.": """\
- **Status codes.** `400` when the request does not match this document (body not JSON, not an
  object, a missing or mistyped field, a value out of range) and when it matches but cannot be
  served (prompt longer than the context, `best_of < n`, `top_logprobs` without `logprobs:
  true`, an unsupported modality); `401` no or unknown key (only when the server has keys
  configured); `403` a known key not allowed the model; `404` unknown route or body model;
  `405` a known path with a method it lacks (`Allow` lists the methods); `429` the server's
  request queue is full (`Retry-After` says when to retry); `500` a fault of the server, never
  caused by input alone. No response is ever a traceback, an HTML page, or a body in another
  shape.""",
    "Errors": """\
- **Errors** have OpenAI's body, `{"error": {"message", "type", "param", "code"}}`: `message`
  for a person, `type` a category (`invalid_request_error`, `server_error`, ...), `param` the
  offending request field where there is one (`null` otherwise), `code` a machine-readable code
  or `null`.""",
    "Request bodies.": """\
- **Request bodies.** A body larger than 4 MiB (the reference's default `max_body_bytes`), or
  with a `Content-Type` other than JSON (`application/json` or any `*/*+json`, or none at all),
  is a `400`.""",
    "Authentication": """\
- **Authentication** is off by default. A server that is given keys requires one on every
  request, as `Authorization: Bearer <key>` (OpenAI's one scheme); no key or an unknown one is a
  `401`, a known key not allowed the model a `403`.""",
    "Official clients.": """\
- **Official clients.** Answers, their streams, model lists and errors are shaped so that
  OpenAI's official client libraries read them as they read OpenAI's: a chat answer is valid as
  the `openai` package's `ChatCompletion`, each chunk as its `ChatCompletionChunk`, a text
  completion as its `Completion`, a model list entry as its `Model`; its stream helpers
  accumulate a stream, tool calls included, into the message the plain answer to the same
  seeded request holds; and every error raises the client's exception for its status with the
  server's message in it. A request invalid before its stream starts is answered with its error
  status, so the client raises at once.""",
}
"""Bullets of the Mimic contract's decisions (by their bold lead) replaced, or dropped (None)."""

_LIMITS_422 = re.compile(r"A `422` lists at most 100 problems;.*?each list\. ", re.DOTALL)

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "OpenAI's error body, for every error status; also the one error event of a stream that "
        "fails after its `200`."
    ),
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {
                    "type": "string",
                    "description": "What went wrong, for a person.",
                },
                "type": {
                    "type": "string",
                    "description": "A category, such as `invalid_request_error` or `server_error`.",
                },
                "param": {
                    "type": ["string", "null"],
                    "description": "The request field at fault, where there is one.",
                },
                "code": {
                    "type": ["string", "integer", "null"],
                    "description": "A machine-readable code, or null.",
                },
            },
        }
    },
}

_COMPLETION_CHOICE: dict[str, Any] = {
    "type": "object",
    "description": "OpenAI's text completion choice.",
    "required": ["index", "text", "logprobs", "finish_reason"],
    "properties": {
        "index": {"type": "integer", "minimum": 0},
        "text": {"type": "string"},
        "logprobs": {"$ref": f"{_SCHEMAS}CompletionLogprobs"},
        "finish_reason": {"$ref": f"{_SCHEMAS}FinishReason"},
    },
}

_COMPLETION_CHUNK_CHOICE: dict[str, Any] = {
    "type": "object",
    "description": "One choice of a text completion chunk: the text generated since the last.",
    "required": ["index", "text", "finish_reason"],
    "properties": {
        "index": {"type": "integer", "minimum": 0},
        "text": {"type": "string"},
        "logprobs": {"$ref": f"{_SCHEMAS}CompletionLogprobs"},
        "finish_reason": {"oneOf": [{"$ref": f"{_SCHEMAS}FinishReason"}, {"type": "null"}]},
    },
}

_CONFORMANCE: dict[str, Any] = {
    "contract": "openai",
    "invalid-request-status": 400,
    "invalid-request-field": "error.param",
    "not-applicable": {
        "SEM-COMPLETION-TEXT": (
            "a text completion choice carries `text` only, no `message` to agree with"
        ),
    },
}


def _replace_refs(node: Any, old: str, new: str) -> Any:
    """``node`` with every ``$ref`` to ``old`` pointing to ``new``."""
    if isinstance(node, dict):
        if node.get("$ref") == old:
            return {**node, "$ref": new}
        return {key: _replace_refs(value, old, new) for key, value in node.items()}
    if isinstance(node, list):
        return [_replace_refs(item, old, new) for item in node]
    return node


def _description(mimic: str) -> str:
    """The Mimic decisions with OpenAI's bullets in place of the Mimic-only ones."""
    _, _, decisions = mimic.partition("Decisions that apply everywhere:")
    bullets = re.split(r"\n(?=- \*\*)", decisions.strip())
    kept = []
    for bullet in bullets:
        lead = next((name for name in _BULLETS if bullet.startswith(f"- **{name}")), None)
        if lead is None:
            kept.append(_LIMITS_422.sub("", bullet))
        elif _BULLETS[lead] is not None:
            kept.append(_BULLETS[lead])
    text = "\n".join(kept).replace(
        "`500` error body (`InternalError`)", "`500` error body (`Error`)"
    )
    return _HEADER + "\nDecisions that apply everywhere:\n\n" + text + "\n"


def _error_response(response: Mapping[str, Any], status: int) -> dict[str, Any]:
    """An error response of the Mimic contract with OpenAI's body (and an example of it)."""
    derived = copy.deepcopy(dict(response))
    media = derived["content"]["application/json"]
    media["schema"] = {"$ref": f"{_SCHEMAS}Error"}
    example = media.get("example")
    message = example.get("error") if isinstance(example, Mapping) else None
    if status == 500 and isinstance(example, Mapping):
        message = example.get("message")
    media["example"] = {
        "error": {
            "message": message if isinstance(message, str) else "the request is invalid",
            "type": "server_error" if status == 500 else "invalid_request_error",
            "param": None,
            "code": None,
        }
    }
    return derived


def _text_completion(schemas: dict[str, Any]) -> None:
    """OpenAI's ``text_completion`` for text completions, plain and streamed."""
    base = copy.deepcopy(schemas["CompletionResponseBase"])
    base["properties"]["object"] = {"const": "text_completion"}
    schemas["TextCompletionBase"] = base
    schemas["Completion"]["allOf"][0] = {"$ref": f"{_SCHEMAS}TextCompletionBase"}
    schemas["CompletionChoice"] = _COMPLETION_CHOICE
    schemas["CompletionChunkChoice"] = _COMPLETION_CHUNK_CHOICE
    example = schemas["Completion"]["examples"][0]
    example["object"] = "text_completion"
    for choice in example["choices"]:
        choice.pop("message", None)
    chunk_base = copy.deepcopy(schemas["ChunkBase"])
    chunk_base["properties"]["object"] = {"const": "text_completion"}
    schemas["CompletionChunkBase"] = chunk_base
    schemas["CompletionChunk"]["allOf"][0] = {"$ref": f"{_SCHEMAS}CompletionChunkBase"}


def derive(mimic: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI-compatible contract derived from the Mimic contract ``mimic`` (not mutated)."""
    document = copy.deepcopy(dict(mimic))
    info = document["info"]
    info["title"] = _TITLE
    info["summary"] = _SUMMARY
    info["description"] = _description(info["description"])
    document["x-conformance"] = copy.deepcopy(_CONFORMANCE)
    document["paths"] = {
        path: item for path, item in document["paths"].items() if path.startswith("/v1/")
    }
    for item in document["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict):
                operation.get("responses", {}).pop("422", None)
                operation["description"] = operation["description"].replace(
                    "OpenAI Mimic API endpoint", "Endpoint"
                )
    components = document["components"]
    components.pop("parameters", None)
    schemes = components["securitySchemes"]
    components["securitySchemes"] = {"bearerAuth": schemes["bearerAuth"]}
    document["security"] = [{}, {"bearerAuth": []}]
    responses = components["responses"]
    responses.pop("ValidationError")
    for name, response in list(responses.items()):
        status = _ERROR_STATUSES.get(name)
        if status is not None:
            responses[name] = _error_response(response, status)
    responses["BadRequest"]["description"] = (
        "Bad Request. The request does not match this document, or matches it but cannot be "
        "served; `error.message` says why and `error.param` names the field where there is one."
    )
    responses["NotFound"]["description"] = (
        "Not Found. An unknown route, or a body `model` that the server does not serve."
    )
    schemas = components["schemas"]
    for name in ("InternalError", "HTTPValidationError", "ValidationErrorItem"):
        schemas.pop(name)
    schemas["Error"] = copy.deepcopy(_ERROR_SCHEMA)
    _text_completion(schemas)
    document = _replace_refs(document, f"{_SCHEMAS}InternalError", f"{_SCHEMAS}Error")
    for body in document["components"]["requestBodies"].values():
        body["description"] = re.sub(
            r"; anything else is a `422` whose `loc` is `\[\"body\"\]`",
            "; anything else is a `400`",
            body["description"],
        )
    _drop_unused_schemas(document)
    return document


_ERROR_STATUSES = {
    "BadRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "MethodNotAllowed": 405,
    "TooManyRequests": 429,
    "InternalError": 500,
}


def _references(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMAS):
            found.add(ref.removeprefix(_SCHEMAS))
        for value in node.values():
            _references(value, found)
    elif isinstance(node, list):
        for item in node:
            _references(item, found)
    return found


def _drop_unused_schemas(document: dict[str, Any]) -> None:
    """Remove the schemas nothing refers to any more (the requests of path-model routes)."""
    schemas = document["components"]["schemas"]
    outside = {key: value for key, value in document.items() if key != "components"}
    others = {key: value for key, value in document["components"].items() if key != "schemas"}
    used = _references([outside, others], set())
    pending = list(used)
    while pending:
        name = pending.pop()
        for found in _references(schemas.get(name), set()) - used:
            used.add(found)
            pending.append(found)
    for name in [name for name in schemas if name not in used]:
        del schemas[name]


class _Dumper(yaml.SafeDumper):
    """Block-style YAML with multi-line strings as literal blocks, so the file reads well."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def render(document: Mapping[str, Any]) -> str:
    """The YAML text of ``document`` as committed: a header comment, keys in document order."""
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return (
        "# Derived from openapi.yaml by spec/openai_derivation.py: do not edit by hand;\n"
        "# run `python -m spec.openai_derivation` after changing openapi.yaml.\n" + body
    )


def main(
    argv: list[str] | None = None, *, load: Callable[[], Mapping[str, Any]] | None = None
) -> int:
    """Write (or, with ``--check``, compare) ``openai.yaml``; return the exit status."""
    import spec

    args = sys.argv[1:] if argv is None else argv
    text = render(derive((load or spec.load)()))
    if "--check" in args:
        current = OPENAI_PATH.read_text(encoding="utf-8") if OPENAI_PATH.exists() else ""
        if current != text:
            print(f"{OPENAI_PATH} is out of date: run python -m spec.openai_derivation")
            return 1
        return 0
    OPENAI_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {OPENAI_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
