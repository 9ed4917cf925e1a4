"""Hostile and broken input to every operation: never a 500, always a documented status and body.

Invalid input never reaches the model, so these run without generating (the one valid case
asks for a single token).
"""

from __future__ import annotations

import json

import pytest
from falcon import testing

from tests.reference._http import CONTRACT, assert_response_conforms

pytestmark = pytest.mark.model

JSON = "application/json"
FIVE_MB = 5 * 1024 * 1024

BAD_INPUTS: dict[str, tuple[bytes, str | None]] = {
    "malformed": (b'{"messages": [', JSON),
    "trailing-garbage": (b'{"prompt": "x"} x', JSON),
    "single-quotes": (b"{'prompt': 'x'}", JSON),
    "list": (b"[]", JSON),
    "list-of-objects": (b'[{"prompt": "x"}]', JSON),
    "string": (b'"hello"', JSON),
    "number": (b"42", JSON),
    "null": (b"null", JSON),
    "boolean": (b"true", JSON),
    "empty": (b"", JSON),
    "empty-no-content-type": (b"", None),
    "whitespace": (b"  \n ", JSON),
    "wrong-types": (
        json.dumps(
            {"model": 3, "messages": "hi", "prompt": 5, "max_tokens": "many", "stream": "yes"}
        ).encode(),
        JSON,
    ),
    "huge-float": (b'{"model": "asha", "prompt": "x", "messages": [], "temperature": 1e400}', JSON),
    "huge-int": (
        b'{"model": "asha", "prompt": "x", "messages": [], "n": ' + b"1" + b"0" * 100 + b"}",
        JSON,
    ),
    "too-many-digits": (b'{"seed": ' + b"9" * 5000 + b"}", JSON),
    "nan": (b'{"model": "asha", "prompt": "x", "temperature": NaN}', JSON),
    "only-unknown-fields": (b'{"whatever": {"nested": [1, 2, 3]}}', JSON),
    "text-plain": (b'{"model": "asha", "prompt": "x"}', "text/plain"),
    "form": (b"model=asha&prompt=x", "application/x-www-form-urlencoded"),
    "multipart": (
        b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n--b--\r\n',
        "multipart/form-data; boundary=b",
    ),
    "not-utf8": (b'{"model": "asha", "prompt": "caf\xe9"}', JSON),
    "utf16": ('{"model": "asha", "prompt": "x"}'.encode("utf-16"), JSON),
    "bom": (b'\xef\xbb\xbf{"model": "asha", "prompt": "x"}', JSON),
    "five-megabytes": (b'{"model": "asha", "prompt": "' + b"a" * FIVE_MB + b'"}', JSON),
    "nested-arrays-10k": (b'{"messages": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", JSON),
    "nested-objects-10k": (b'{"a": ' * 10_000 + b"1" + b"}" * 10_000, JSON),
    "nested-900-in-a-field": (
        b'{"model": "asha", "prompt": "x", "stop": ' + b"[" * 900 + b"]" * 900 + b"}",
        JSON,
    ),
}

OPERATIONS = {op.operation_id: op for op in CONTRACT.operations}


def concrete(path: str) -> str:
    return path.replace("{model}", "asha")


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("operation_id", sorted(OPERATIONS))
def test_bad_input_never_breaks_an_operation(
    client: testing.TestClient, operation_id: str, case: str
) -> None:
    operation = OPERATIONS[operation_id]
    data, content_type = BAD_INPUTS[case]
    headers = {"Content-Type": content_type} if content_type else {}
    path = concrete(operation.path)
    result = client.simulate_request(operation.method.upper(), path, body=data, headers=headers)
    assert result.status_code != 500, result.text[:500]
    body = assert_response_conforms(
        operation.method.upper(), path, result.status_code, result.headers, result.text
    )
    if operation.request_body_pointers:
        assert result.status_code == 422, body
        assert all(item["loc"][0] == "body" for item in body["detail"])
    else:
        assert result.status_code == 200  # a body on a GET is ignored


@pytest.mark.parametrize(
    "operation_id", sorted(op for op, o in OPERATIONS.items() if "{model}" in o.path)
)
def test_bad_path_model_on_every_operation(client: testing.TestClient, operation_id: str) -> None:
    operation = OPERATIONS[operation_id]
    for model in ("gpt-9", "ASHA", "%F0%9F%90%89", "a" * 5000):
        path = operation.path.replace("{model}", model)
        result = client.simulate_request(operation.method.upper(), path, json={"prompt": "x"})
        assert result.status_code == 422, (model, result.text[:200])
        body = result.json
        assert body["detail"][0]["loc"] == ["path", "model"]


@pytest.mark.parametrize(
    "operation_id",
    sorted(op for op, o in OPERATIONS.items() if o.request_body_pointers),
)
def test_lone_surrogates_are_served(client: testing.TestClient, operation_id: str) -> None:
    # Valid JSON that is not valid Unicode: served, not a crash in tokenizing or rendering.
    operation = OPERATIONS[operation_id]
    data = (
        b'{"model": "asha", "max_tokens": 1, "prompt": "x\\ud800",'
        b' "messages": [{"role": "user", "content": "\\udfff y"}]}'
    )
    path = concrete(operation.path)
    result = client.simulate_post(path, body=data, headers={"Content-Type": JSON})
    assert result.status_code == 200, result.text[:300]
    assert_response_conforms("POST", path, 200, result.headers, result.text)
