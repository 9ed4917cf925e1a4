"""The hostile samples of the ROBUST rules: what they hold, and curl commands short to paste."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from conformance._options import DEFAULT_TIMEOUT
from conformance.curl import to_curl
from conformance.profile import PROFILES, Settings
from conformance.suite._hostile import (
    FLOOD_ITEMS,
    LONE_SURROGATE,
    Flood,
    flood_samples,
    follow_up,
    schema_bomb_samples,
    unencodable_samples,
)
from conformance.suite._operations import request_shapes
from conformance.suite._run import Run
from spec import SPEC_PATH, Operation

BODY_LIMIT = 4 * 1024 * 1024
TARGET = "http://127.0.0.1:9"


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    settings = Settings(
        target=TARGET,
        api_key=None,
        seed=1,
        max_examples=None,
        timeout=DEFAULT_TIMEOUT,
        report_dir=SPEC_PATH.parent,
        requirements=(),
        skip_requirements=(),
        gate_should=False,
        profile=PROFILES["quick"],
        spec_path=SPEC_PATH,
        robust=True,
    )
    run = Run(settings, TARGET)
    run.__dict__["served_models"] = ("mythomax", "asha")  # nothing to ask: no target runs
    yield run
    run.close()


def shapes(run: Run) -> list[Operation]:
    return request_shapes(run.contract)


def test_the_spec_has_a_chat_and_a_completions_shape(run: Run) -> None:
    assert {op.path for op in shapes(run)} == {"/v1/chat/completions", "/v1/completions"}


def test_a_flood_is_its_shell_command_byte_for_byte() -> None:
    for flood in (
        Flood.into({"a": 1, "b": "it's"}, "a", "1", 5),
        Flood.into({"a": 1}, "m", '"k%d":1', 3, kind="map"),
        Flood.into({"a": 1}, "t", "a", 4, kind="text"),
    ):
        printed = subprocess.run(
            ["bash", "-c", flood.shell_command()], capture_output=True, check=True
        ).stdout
        assert printed.decode() == flood.text()
        json.loads(flood.text())
    assert json.loads(Flood.into({"a": 1}, "m", '"k%d":1', 3, kind="map").text())["m"] == {
        "k0": 1,
        "k1": 1,
        "k2": 1,
    }


def test_floods_stay_under_the_body_limit_but_one(run: Run) -> None:
    for operation in shapes(run):
        samples = flood_samples(run, operation)
        sizes = {sample.what: len(sample.request.body or b"") for sample in samples}
        over = [what for what, size in sizes.items() if size > BODY_LIMIT]
        assert over == ["a body of 5 MiB (over the 4 MiB limit)"], sizes
        main = next(s for s in samples if "integers" in s.what)
        payload = json.loads(main.request.body or b"")
        field = "messages" if "chat" in operation.path else "prompt"
        assert len(payload[field]) == FLOOD_ITEMS and payload["max_tokens"] == 4


def test_a_floods_curl_command_is_short_and_sends_the_same_body(run: Run) -> None:
    operation = shapes(run)[0]
    sample = flood_samples(run, operation)[0]
    request = run.transport.prepare(sample.request)
    command = to_curl(request)
    assert len(command) < 2000 and "--data-binary @-" in command
    body_source = command.split(" | curl", 1)[0]
    printed = subprocess.run(["bash", "-c", body_source], capture_output=True, check=True).stdout
    assert printed == sample.request.body


def test_lone_surrogates_travel_as_escapes(run: Run) -> None:
    for operation in shapes(run):
        samples = unencodable_samples(run, operation)
        assert len(samples) >= 4
        for sample in samples:
            body = sample.request.body or b""
            assert body.isascii() and b"\\ud800" in body, sample.what
            assert LONE_SURROGATE in json.dumps(json.loads(body), ensure_ascii=False)


def test_schema_bombs_only_where_schemas_become_grammars(run: Run) -> None:
    by_path = {op.path: schema_bomb_samples(run, op) for op in shapes(run)}
    chat = by_path["/v1/chat/completions"]
    assert len(chat) == 5 and any("forced tool" in sample.what for sample in chat)
    assert all(len(sample.request.body or b"") < 200_000 for sample in chat)
    assert by_path["/v1/completions"] == []  # no response_format, no tools


def test_the_follow_up_asks_for_one_token(run: Run) -> None:
    for operation in shapes(run):
        assert json.loads(follow_up(run, operation).body or b"")["max_tokens"] == 1
