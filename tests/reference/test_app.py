"""The app in-process (falcon.testing and httpx's ASGI transport) with the real model."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import falcon.asgi
import pytest
from falcon import testing
from falcon.util import async_to_sync

from reference import Config, create_app
from reference.config import APIKey, ModelConfig, ServerConfig
from reference.engine import Engine
from reference.scheduler import ModelRunner
from tests.reference._http import (
    CONTRACT,
    assert_conforms,
    assert_response_conforms,
    stream_chunks,
)
from tests.reference._server import _call, call, runners_for

pytestmark = pytest.mark.model

USER = [{"role": "user", "content": "Say hello."}]
CHAT_PATHS = ["/v1/chat/completions", "/asha/v1/chat/completions", "/chub/soji/v1/chat/completions"]
COMPLETION_PATHS = ["/v1/completions", "/mythomax/v1/completions", "/chub/mobile/v1/completions"]


def post(app: Any, path: str, body: Any, **kwargs: Any) -> tuple[int, Any]:
    """POST, check the response against the contract, return status and decoded body/chunks."""
    reply = call(app, "POST", path, json=body, **kwargs)
    return reply.status, assert_response_conforms(
        "POST", path, reply.status, reply.headers, reply.text
    )


def with_model(path: str, body: dict[str, Any], model: str = "mixtral") -> dict[str, Any]:
    return {"model": model, **body} if path.startswith("/v1/") else body


def stream_texts(
    chunks: list[dict[str, Any]], *, completion: bool, include_usage: bool = False
) -> dict[int, tuple[str, str]]:
    """Check the spec's stream rules; return each choice's text and finish reason."""
    assert len({(c["id"], c["created"], c["model"]) for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    if include_usage:
        *chunks, last = chunks
        assert last["choices"] == []
        usage = last["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert all(c["usage"] is None for c in chunks)
    by_index: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for chunk in chunks:
        (choice,) = chunk["choices"]
        by_index[choice["index"]].append(choice)
    result = {}
    for index, choices in by_index.items():
        assert choices[0]["delta"] == {"role": "assistant", "content": ""}
        assert all("role" not in c["delta"] for c in choices[1:])
        finishes = [c["finish_reason"] for c in choices]
        assert finishes[-1] is not None and all(f is None for f in finishes[:-1])
        if completion:
            assert all(c["text"] == (c["delta"].get("content") or "") for c in choices)
        text = "".join(c["delta"].get("content") or "" for c in choices)
        result[index] = (text, finishes[-1])
    return result


# ---------------------------------------------------------------- routes


@pytest.mark.parametrize(
    ("path", "ids"),
    [
        ("/v1/models", ["mythomax", "asha", "soji", "mixtral", "mistral", "mobile"]),
        ("/mistral/v1/models", ["mistral"]),
        ("/chub/asha/v1/models", ["asha"]),
    ],
)
def test_model_lists(client: testing.TestClient, path: str, ids: list[str]) -> None:
    result = client.simulate_get(path)
    assert result.status_code == 200
    body = assert_response_conforms("GET", path, 200, result.headers, result.text)
    assert [m["id"] for m in body["data"]] == ids
    assert {m["owned_by"] for m in body["data"]} == {"mimic-reference"}


def test_health(client: testing.TestClient) -> None:
    result = client.simulate_get("/health")
    assert result.status_code == 200
    assert result.json["status"] == "ok"
    assert set(result.json["models"].values()) == {"ok"}


@pytest.mark.parametrize(
    ("method", "path", "status", "allow"),
    [
        ("GET", "/", 404, None),
        ("GET", "/v2/models", 404, None),
        ("POST", "/v1/models/", 404, None),
        ("GET", "/chub/v1/chat/completions/x", 404, None),
        ("GET", "/v1/chat/completions", 405, "POST"),
        ("PUT", "/asha/v1/completions", 405, "POST"),
        ("DELETE", "/v1/models", 405, "GET"),
        ("POST", "/chub/soji/v1/models", 405, "GET"),
        ("OPTIONS", "/v1/completions", 405, "POST"),
        ("GET", "/gpt-9/v1/models", 422, None),
        ("POST", "/chub/gpt-9/v1/completions", 422, None),
    ],
)
def test_routing_comes_from_the_contract(
    client: testing.TestClient, method: str, path: str, status: int, allow: str | None
) -> None:
    result = client.simulate_request(method, path, json={"prompt": "x"})
    assert result.status_code == status
    body = assert_response_conforms(method, path, status, result.headers, result.text)
    if status == 405:
        assert result.headers["allow"] == allow
    if status == 422:
        assert body["detail"][0]["loc"] == ["path", "model"]


def test_every_operation_is_served(client: testing.TestClient) -> None:
    for operation in CONTRACT.operations:
        path = operation.path.replace("{model}", "asha")
        result = client.simulate_request(operation.method.upper(), path, json={})
        assert result.status_code in (200, 422), operation.label


# ---------------------------------------------------------------- chat and completions


@pytest.mark.parametrize("path", CHAT_PATHS)
def test_chat(app: falcon.asgi.App, path: str) -> None:
    body = {"messages": USER, "max_tokens": 4, "temperature": 0, "model": "mixtral"}
    status, response = post(app, path, body)
    assert status == 200
    (choice,) = response["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] == "length"
    assert response["id"].startswith("chatcmpl-")
    expected_model = "mixtral" if path.startswith("/v1/") else path.split("/")[-4]
    assert response["model"] == expected_model  # the path model wins over the body's
    usage = response["usage"]
    assert usage["completion_tokens"] == 4
    assert usage["total_tokens"] == usage["prompt_tokens"] + 4


@pytest.mark.parametrize("path", COMPLETION_PATHS)
def test_completion(app: falcon.asgi.App, path: str) -> None:
    status, response = post(
        app, path, with_model(path, {"prompt": "Once upon a time", "max_tokens": 3})
    )
    assert status == 200
    (choice,) = response["choices"]
    assert choice["text"] == choice["message"]["content"]
    assert response["id"].startswith("cmpl-")
    assert response["object"] == "chat.completion"
    assert response["usage"]["prompt_tokens"] >= 4


def test_body_model_must_be_served_on_v1(app: falcon.asgi.App) -> None:
    for path, body in [
        ("/v1/chat/completions", {"messages": USER}),
        ("/v1/completions", {"prompt": "x"}),
    ]:
        status, response = post(app, path, {**body, "model": "gpt-9"})
        assert status == 404
        assert "'gpt-9'" in response["error"]
        status, response = post(app, path, body)
        assert status == 422
        assert response["detail"][0]["loc"] == ["body", "model"]


def test_body_model_is_ignored_on_model_paths(app: falcon.asgi.App) -> None:
    status, response = post(
        app, "/soji/v1/completions", {"model": "gpt-9", "prompt": "x", "max_tokens": 1}
    )
    assert (status, response["model"]) == (200, "soji")


def test_several_prompts_times_n_give_consecutive_indexes(app: falcon.asgi.App) -> None:
    status, response = post(
        app,
        "/v1/completions",
        {"model": "asha", "prompt": ["Once upon", "The cat"], "n": 2, "max_tokens": 2, "seed": 3},
    )
    assert status == 200
    assert [c["index"] for c in response["choices"]] == [0, 1, 2, 3]
    assert response["usage"]["completion_tokens"] == 8


def test_unknown_fields_and_nulls_are_accepted(app: falcon.asgi.App) -> None:
    body = {
        "model": "asha",
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": "Hi", "name": "sam"},
        ],
        "max_tokens": 2,
        "temperature": None,
        "stop": None,
        "stream": None,
        "metadata": {"a": "b"},
        "store": True,
        "user": "u1",
        "surprise": {"nested": [1, 2, {"x": None}]},
    }
    status, _ = post(app, "/v1/chat/completions", body)
    assert status == 200


def test_max_completion_tokens_wins(app: falcon.asgi.App) -> None:
    status, response = post(
        app,
        "/v1/chat/completions",
        {"model": "asha", "messages": USER, "max_tokens": 8, "max_completion_tokens": 2},
    )
    assert status == 200
    assert response["usage"]["completion_tokens"] == 2


def test_same_seed_same_text(app: falcon.asgi.App) -> None:
    body = {"model": "asha", "prompt": "My favourite", "max_tokens": 8, "seed": 1234}
    first = post(app, "/v1/completions", {**body, "temperature": 1.2})[1]
    post(app, "/v1/completions", {**body, "seed": 99})  # something else in between
    again = post(app, "/v1/completions", {**body, "temperature": 1.2})[1]
    assert first["choices"][0]["text"] == again["choices"][0]["text"]
    greedy = [
        post(
            app,
            "/v1/chat/completions",
            {"model": "asha", "messages": USER, "max_tokens": 6, "temperature": 0},
        )[1]
        for _ in range(2)
    ]
    assert greedy[0]["choices"][0]["message"] == greedy[1]["choices"][0]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_stop_strings_never_appear(app: falcon.asgi.App, stream: bool) -> None:
    base = {"model": "asha", "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0}
    full = post(app, "/v1/completions", base)[1]["choices"][0]["text"]
    assert len(full) > 12, full
    stop = full[6:11]  # five characters: likely to span a token boundary
    expected = full[: full.index(stop)]
    status, response = post(
        app, "/v1/completions", {**base, "stop": [stop, "zzzz"], "stream": stream}
    )
    assert status == 200
    if stream:
        ((text, reason),) = stream_texts(response, completion=True).values()
    else:
        text, reason = response["choices"][0]["text"], response["choices"][0]["finish_reason"]
    assert stop not in text
    assert (text, reason) == (expected, "stop")


# ---------------------------------------------------------------- streaming


@pytest.mark.parametrize("path", CHAT_PATHS[:2] + COMPLETION_PATHS[1:2])
@pytest.mark.parametrize("include_usage", [False, True])
def test_streams_follow_the_rules(app: falcon.asgi.App, path: str, include_usage: bool) -> None:
    completion = "chat" not in path
    body = {"prompt": "Hello"} if completion else {"messages": USER}
    body = with_model(
        path,
        {
            **body,
            "max_tokens": 5,
            "n": 2,
            "stream": True,
            "seed": 7,
            "stream_options": {"include_usage": include_usage},
        },
    )
    status, chunks = post(app, path, body)
    assert status == 200
    texts = stream_texts(chunks, completion=completion, include_usage=include_usage)
    assert sorted(texts) == [0, 1]
    assert all(reason in ("stop", "length") for _, reason in texts.values())
    if include_usage:
        assert chunks[-1]["usage"]["completion_tokens"] <= 10


def test_stream_and_json_give_the_same_text(app: falcon.asgi.App) -> None:
    body = {"model": "asha", "messages": USER, "max_tokens": 8, "temperature": 0}
    plain = post(app, "/v1/chat/completions", body)[1]["choices"][0]
    chunks = post(app, "/v1/chat/completions", {**body, "stream": True})[1]
    ((text, reason),) = stream_texts(chunks, completion=False).values()
    assert (text, reason) == (plain["message"]["content"], plain["finish_reason"])


def test_echo(app: falcon.asgi.App) -> None:
    body = {"model": "asha", "prompt": "Once upon a time", "max_tokens": 2, "echo": True}
    text = post(app, "/v1/completions", body)[1]["choices"][0]["text"]
    assert text.startswith("Once upon a time") and len(text) > len("Once upon a time")
    chunks = post(app, "/v1/completions", {**body, "stream": True})[1]
    ((streamed, _),) = stream_texts(chunks, completion=True).values()
    assert streamed.startswith("Once upon a time")


def test_echo_with_logprobs_streamed_and_not(app: falcon.asgi.App) -> None:
    prompt = "One, two, three,"
    body = {"model": "asha", "prompt": prompt, "max_tokens": 2, "temperature": 0}
    body |= {"echo": True, "logprobs": 1}
    choice = post(app, "/v1/completions", body)[1]["choices"][0]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"] and choice["text"].startswith(prompt)
    assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
    assert all(len(top) == 1 for top in logprobs["top_logprobs"][1:])
    for offset, token in zip(logprobs["text_offset"], logprobs["tokens"], strict=True):
        assert choice["text"][offset:].startswith(token)
    chunks = post(app, "/v1/completions", {**body, "stream": True})[1]
    ((streamed, _),) = stream_texts(chunks, completion=True).values()
    assert streamed == choice["text"]
    parts = [c["choices"][0]["logprobs"] for c in chunks if c["choices"][0]["logprobs"]]
    assert {key: [v for part in parts for v in part[key]] for key in logprobs} == logprobs


# ---------------------------------------------------------------- what the engine honours


def test_chat_logprobs(app: falcon.asgi.App) -> None:
    body = {"model": "asha", "messages": USER, "max_tokens": 3, "logprobs": True, "top_logprobs": 2}
    choice = post(app, "/v1/chat/completions", body)[1]["choices"][0]
    content = choice["logprobs"]["content"]
    assert len(content) == 3
    assert all(len(entry["top_logprobs"]) == 2 for entry in content)
    # A token may hold part of a character (an emoji, say): its bytes join, its text may not.
    joined = b"".join(bytes(entry["bytes"]) for entry in content)
    assert joined.decode("utf-8", "replace") == choice["message"]["content"]


def test_completion_logprobs(app: falcon.asgi.App) -> None:
    body = {
        "model": "asha",
        "prompt": "One, two,",
        "max_tokens": 3,
        "logprobs": 2,
        "temperature": 0,
    }
    choice = post(app, "/v1/completions", body)[1]["choices"][0]
    logprobs = choice["logprobs"]
    assert len(logprobs["tokens"]) == len(logprobs["token_logprobs"]) == 3
    assert logprobs["text_offset"][0] == 0
    assert "".join(logprobs["tokens"]) == choice["text"]


def test_json_object_response_format(app: falcon.asgi.App) -> None:
    body = {
        "model": "asha",
        "messages": USER,
        "max_tokens": 6,
        "response_format": {"type": "json_object"},
    }
    content = post(app, "/v1/chat/completions", body)[1]["choices"][0]["message"]["content"]
    assert content.lstrip().startswith("{"), content


def test_logit_bias_forces_a_token(app: falcon.asgi.App, engine: Engine) -> None:
    (token,) = engine.tokenize(" dragon", add_bos=False, special=False)
    body = {"model": "asha", "prompt": "Hello", "max_tokens": 3, "logit_bias": {str(token): 100}}
    assert post(app, "/v1/completions", body)[1]["choices"][0]["text"] == " dragon" * 3


def test_tools_with_auto_choice_are_shown_to_the_model(app: falcon.asgi.App) -> None:
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    body = {
        "model": "asha",
        "messages": USER,
        "max_tokens": 2,
        "tools": [tool],
        "tool_choice": "auto",
    }
    assert post(app, "/v1/chat/completions", body)[0] == 200


@pytest.mark.parametrize(
    ("path", "extra", "words"),
    [
        ("/v1/chat/completions", {"modalities": ["text", "audio"]}, "audio"),
        ("/v1/chat/completions", {"audio": {"format": "wav", "voice": "x"}}, "audio"),
        ("/v1/chat/completions", {"top_logprobs": 2}, "'top_logprobs'"),
        ("/v1/chat/completions", {"tool_choice": "required"}, "'tool_choice'"),
        (
            "/v1/chat/completions",
            {"tool_choice": {"type": "function", "function": {"name": "f"}}},
            "'tool_choice'",
        ),
        ("/v1/chat/completions", {"function_call": {"name": "f"}}, "'function_call'"),
        (
            "/v1/chat/completions",
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "nonsense"}},
                }
            },
            "'response_format'",
        ),
        ("/v1/chat/completions", {"logit_bias": {"99999999": 5}}, "logit_bias"),
        ("/v1/completions", {"suffix": "The end."}, "'suffix'"),
        ("/v1/completions", {"n": 3, "best_of": 2}, "'best_of'"),
        ("/v1/completions", {"best_of": 3, "stream": True}, "'best_of'"),
        (
            "/v1/chat/completions",
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "no"}}}
                ],
                "tool_choice": "required",
            },
            "'tools'",
        ),
        (
            "/v1/chat/completions",
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "function_call": {"name": "g"},
            },
            "'g'",
        ),
        ("/v1/completions", {"prompt": ["a"] * 65, "n": 2}, "128"),
        ("/v1/completions", {"prompt": "word " * 600}, "'prompt' is too long"),
        ("/v1/completions", {"prompt": ["x", "y" * 100_000]}, "'prompt' is too long: 100000 bytes"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "hi"}] * 5000},
            "'messages' is too long",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "word " * 600}]},
            "'messages' is too long",
        ),
    ],
)
def test_valid_requests_that_cannot_be_served_are_400(
    app: falcon.asgi.App, path: str, extra: dict[str, Any], words: str
) -> None:
    base = {"model": "asha", "max_tokens": 2}
    base |= {"messages": USER} if "chat" in path else {"prompt": "Hi"}
    status, response = post(app, path, {**base, **extra})
    assert status == 400, response
    assert words in response["error"]


# ---------------------------------------------------------------- auth


@pytest.fixture(scope="module")
def keyed_app(runner: ModelRunner) -> falcon.asgi.App:
    config = Config(keys=(APIKey("sk-all"), APIKey("sk-asha", ("asha",))))
    return create_app(config, runners=runners_for(config, runner))


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer sk-wrong"}, 401),
        ({"Authorization": "Basic sk-all"}, 401),
        ({"Authorization": "Bearer sk-all"}, 200),
        ({"Authorization": "bearer  sk-all "}, 200),
        ({"CH-API-KEY": "sk-all"}, 200),
        ({"samwise": "sk-all"}, 200),
        ({"samwise": "sk-asha"}, 403),
    ],
)
def test_keys(keyed_app: falcon.asgi.App, headers: dict[str, str], status: int) -> None:
    body = {"model": "soji", "prompt": "Hi", "max_tokens": 1}
    got, response = post(keyed_app, "/v1/completions", body, headers=headers)
    assert got == status
    if status == 403:
        assert "'soji'" in response["error"]


def test_keys_scope_the_model_list_and_health_stays_open(keyed_app: falcon.asgi.App) -> None:
    client = testing.TestClient(keyed_app)
    for path, headers, status in [
        ("/v1/models", {"CH-API-KEY": "sk-asha"}, 200),
        ("/soji/v1/models", {"CH-API-KEY": "sk-asha"}, 403),
        ("/v1/models", {}, 401),
    ]:
        result = client.simulate_get(path, headers=headers)
        assert result.status_code == status
        body = assert_response_conforms("GET", path, status, result.headers, result.text)
        if status == 200:
            assert [m["id"] for m in body["data"]] == ["asha"]
    assert client.simulate_get("/health").status_code == 200


# ---------------------------------------------------------------- the queue and the stream's end


@pytest.fixture
def own_runner(engine: Engine) -> ModelRunner:
    """A runner of its own over the session's engine, for tests that close or fill it."""
    return ModelRunner(engine, max_waiting=0)


def test_full_queue_is_429_with_retry_after(own_runner: ModelRunner) -> None:
    config = Config(server=ServerConfig(max_waiting=0))
    app = create_app(config, runners=runners_for(config, own_runner))

    async def while_busy() -> Any:
        async with own_runner.reserve():
            return await _call(
                app, "POST", "/v1/completions", json={"model": "asha", "prompt": "x"}
            )

    reply = async_to_sync(while_busy)
    assert reply.status == 429
    assert reply.headers["retry-after"].isdigit()
    assert_response_conforms("POST", "/v1/completions", 429, reply.headers, reply.text)


def test_waiting_too_long_is_429(engine: Engine) -> None:
    slow = ModelRunner(engine, max_waiting=4)
    config = Config(server=ServerConfig(request_timeout=0.2))
    app = create_app(config, runners=runners_for(config, slow))

    async def while_busy() -> Any:
        async with slow.reserve():
            started = time.monotonic()
            reply = await _call(
                app, "POST", "/v1/completions", json={"model": "asha", "prompt": "x"}
            )
            return reply, time.monotonic() - started

    reply, waited = async_to_sync(while_busy)
    assert reply.status == 429
    assert 0.15 < waited < 2
    async_to_sync(slow.close)


def test_failure_after_the_200_is_an_error_event_then_done(own_runner: ModelRunner) -> None:
    config = Config()
    app = create_app(config, runners=runners_for(config, own_runner))
    body = {"model": "asha", "prompt": "Once upon a time", "max_tokens": 400, "stream": True}

    async def shut_down_mid_stream() -> Any:
        request = asyncio.ensure_future(_call(app, "POST", "/v1/completions", json=body))
        while not own_runner.busy:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        await own_runner.close(grace=0)  # the model goes away under the running stream
        return await request

    reply = async_to_sync(shut_down_mid_stream)
    assert reply.status == 200
    chunks = stream_chunks("createCompletion", reply.text)
    assert chunks[-1]["errorCode"] == 500
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("errorCode" not in chunk for chunk in chunks[:-1])


def test_a_client_gone_mid_stream_frees_the_model(
    client: testing.TestClient, runner: ModelRunner
) -> None:
    # End-of-generation tokens banned: 1500 tokens would hold the model for 15 s or more.
    body = {
        "model": "asha",
        "prompt": "Once upon a time",
        "max_tokens": 1500,
        "stream": True,
        "logit_bias": {"0": -100, "2": -100, "4": -100},
    }
    started = time.monotonic()
    result = client.simulate_post("/v1/completions", json=body)  # disconnects at once
    assert result.status_code == 200

    async def until_free() -> float:
        while runner.busy:
            await asyncio.sleep(0.005)
        return time.monotonic() - started

    # A liveness bound, not a speed figure: cancelling takes a token, finishing 15 s or more.
    assert async_to_sync(until_free) < 8.0
    after = client.simulate_post(
        "/v1/completions", json={"model": "asha", "prompt": "x", "max_tokens": 1}
    )
    body = assert_response_conforms(
        "POST", "/v1/completions", after.status_code, after.headers, after.text
    )
    assert body["usage"]["completion_tokens"] == 1


def test_documented_statuses_only(app: falcon.asgi.App) -> None:
    # A request body on a GET is ignored; a 200 is the documented answer.
    reply = call(app, "GET", "/v1/models", content=b"{not json")
    assert reply.status == 200
    assert_conforms("listModels", 200, "application/json", json.loads(reply.text))


def test_the_app_loads_its_models_once_at_start_up(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small = {"context_size": 256, "threads": 1}
    config = Config(
        models={
            "asha": ModelConfig("asha", path=model_path, **small),
            "soji": ModelConfig("soji", path=model_path, **small),
            "roomy": ModelConfig("roomy", path=model_path, context_size=384, threads=1),
        }
    )
    app = create_app(config)

    async def scenario() -> list[Any]:
        seen = []
        async with testing.ASGIConductor(app) as conductor:
            health = await conductor.simulate_get("/health")
            seen.append((health.status_code, health.json["status"]))
            for name in ("soji", "roomy"):  # waits for the models to load
                reply = await conductor.simulate_post(
                    "/v1/completions", json={"model": name, "prompt": "Hi", "max_tokens": 1}
                )
                seen.append((reply.status_code, reply.json["model"]))
            health = await conductor.simulate_get("/health")
            seen.append((health.status_code, health.json))
        return seen

    with caplog.at_level(logging.INFO, logger="mimic.reference"):
        seen = async_to_sync(scenario)
    assert seen[0] in ((503, "loading"), (200, "ok"))
    assert seen[1:3] == [(200, "soji"), (200, "roomy")]
    assert seen[3] == (200, {"status": "ok", "models": dict.fromkeys(config.models, "ok")})
    loads = [r.getMessage() for r in caplog.records if r.getMessage().startswith("loaded")]
    assert len(loads) == 2  # asha and soji share one engine
    assert any("for asha, soji" in message for message in loads)
