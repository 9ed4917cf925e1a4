"""The official `openai` package as a real client of the running server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import openai
import pytest

from tests.reference._http import assert_conforms
from tests.reference._server import ServerProcess, start_server

pytestmark = pytest.mark.model

MESSAGES = [{"role": "user", "content": "Say hello."}]


@contextlib.contextmanager
def client_for(
    server: ServerProcess, prefix: str = "/v1", key: str = "unused"
) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{server.base_url}{prefix}", api_key=key, max_retries=0, timeout=120
    ) as client:
        yield client


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with start_server(
        tmp_path_factory.mktemp("keyed"), env={"MIMIC_API_KEYS": "sk-openai-test"}
    ) as running:
        yield running
        assert running.stop() == 0


@pytest.mark.parametrize(("prefix", "model"), [("/v1", "asha"), ("/mythomax/v1", "mythomax")])
def test_chat(server: ServerProcess, prefix: str, model: str) -> None:
    with client_for(server, prefix) as client:
        completion = client.chat.completions.create(
            model="asha", messages=MESSAGES, max_tokens=4, temperature=0, seed=1
        )
    assert_conforms(
        "createChatCompletion", 200, "application/json", completion.model_dump(exclude_unset=True)
    )
    assert completion.model == model
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 4


def test_chat_streaming(server: ServerProcess) -> None:
    with client_for(server) as client:
        chunks = list(
            client.chat.completions.create(
                model="asha",
                messages=MESSAGES,
                max_tokens=6,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        plain = client.chat.completions.create(
            model="asha", messages=MESSAGES, max_tokens=6, temperature=0
        )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks[:-1]].count("length") == 1
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content


def test_completions(server: ServerProcess) -> None:
    with client_for(server, "/chub/soji/v1") as client:
        completion = client.completions.create(
            model="ignored", prompt="Once upon a time", max_tokens=4, temperature=0
        )
    assert completion.model == "soji"
    assert completion.choices[0].text
    with client_for(server) as client:
        streamed = client.completions.create(
            model="asha", prompt="Once upon a time", max_tokens=4, temperature=0, stream=True
        )
        text = "".join(chunk.choices[0].text for chunk in streamed if chunk.choices)
    assert text == completion.choices[0].text


def test_models(server: ServerProcess) -> None:
    with client_for(server) as client:
        ids = [model.id for model in client.models.list()]
    assert ids == ["mythomax", "asha", "soji", "mixtral", "mistral", "mobile"]
    with client_for(server, "/chub/mobile/v1") as client:
        assert [model.id for model in client.models.list()] == ["mobile"]


def test_not_found(server: ServerProcess) -> None:
    with client_for(server) as client, pytest.raises(openai.NotFoundError) as failure:
        client.chat.completions.create(model="gpt-9", messages=MESSAGES)
    assert failure.value.status_code == 404
    body = failure.value.response.json()
    assert_conforms("createChatCompletion", 404, "application/json", body)
    assert failure.value.body == body["error"]  # openai reads the seed's `error` field


def test_unprocessable(server: ServerProcess) -> None:
    with client_for(server) as client, pytest.raises(openai.UnprocessableEntityError) as failure:
        client.chat.completions.create(model="asha", messages=MESSAGES, temperature=7)
    assert failure.value.status_code == 422
    body = failure.value.response.json()
    assert_conforms("createChatCompletion", 422, "application/json", body)
    assert body["detail"][0]["loc"] == ["body", "temperature"]


def test_unauthorized(keyed_server: ServerProcess) -> None:
    with (
        client_for(keyed_server, key="sk-wrong") as client,
        pytest.raises(openai.AuthenticationError) as failure,
    ):
        client.models.list()
    assert failure.value.status_code == 401
    assert_conforms("listModels", 401, "application/json", failure.value.response.json())
    with client_for(keyed_server, key="sk-openai-test") as client:
        assert len(client.models.list().data) == 6


def test_bad_request(server: ServerProcess) -> None:
    with client_for(server) as client, pytest.raises(openai.BadRequestError) as failure:
        client.completions.create(model="asha", prompt="x", suffix="The end.", max_tokens=2)
    assert "'suffix'" in failure.value.response.json()["error"]
