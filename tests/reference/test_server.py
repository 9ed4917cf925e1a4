"""`mimic-reference` as a real uvicorn process with the real model."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.reference._http import assert_response_conforms, stream_chunks
from tests.reference._server import ServerProcess, _command, start_server

pytestmark = pytest.mark.model

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"


def long_stream_body(max_tokens: int) -> dict[str, Any]:
    # A prompt the model keeps going on, and a ban on its end-of-generation tokens (ids 0, 2
    # and 4 in SmolLM2's vocabulary) so that it does not stop before max_tokens.
    return {
        "model": "asha",
        "prompt": "Chapter one. It was a dark and stormy night, and",
        "max_tokens": max_tokens,
        "stream": True,
        "logit_bias": {"0": -100, "2": -100, "4": -100},
    }


def read_events(lines: Iterator[str], count: int) -> list[str]:
    """Read `count` data events from a stream's lines."""
    events: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            events.append(line[5:].strip())
            if len(events) == count:
                break
    return events


def test_answers(server: ServerProcess) -> None:
    response = httpx.get(f"{server.base_url}/v1/models", timeout=10)
    body = assert_response_conforms(
        "GET", "/v1/models", response.status_code, response.headers, response.text
    )
    assert response.status_code == 200 and len(body["data"]) == 6
    health = httpx.get(f"{server.base_url}/health", timeout=10)
    assert health.json()["status"] == "ok"
    response = httpx.post(
        f"{server.base_url}/mythomax/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3},
        timeout=60,
    )
    body = assert_response_conforms(
        "POST", "/mythomax/v1/chat/completions", 200, response.headers, response.text
    )
    assert body["model"] == "mythomax"
    assert "mimic.reference.access" in server.log()


def test_other_routes_answer_at_once_during_a_long_stream(server: ServerProcess) -> None:
    with (
        httpx.Client(base_url=server.base_url, timeout=120) as http,
        http.stream("POST", COMPLETIONS, json=long_stream_body(200)) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert len(read_events(lines, 3)) == 3  # the generation is running
        answered = []
        for path in ("/v1/models", "/health", "/asha/v1/models"):
            answer = httpx.get(f"{server.base_url}{path}", timeout=120)
            assert answer.status_code == 200
            answered.append(answer.headers["x-request-id"])
        rest = "\n".join(lines)
    # Ordering, not timing: each of them was answered and logged before the stream ended (a
    # stream's access log line is written when it ends).
    stream_id = f"id={response.headers['x-request-id']}"
    deadline = time.monotonic() + 10  # the line is written just after the last event is sent
    while stream_id not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log()
    stream_logged = log.find(stream_id)
    assert stream_logged >= 0, log
    for request_id in answered:
        assert 0 <= log.find(f"id={request_id}") < stream_logged, log
    text = "\n\n".join(f"data: {line[5:].strip()}" for line in rest.splitlines() if line)
    chunks = stream_chunks("createCompletion", text)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_a_client_gone_mid_stream_stops_its_generation(server: ServerProcess) -> None:
    with (
        httpx.Client(base_url=server.base_url, timeout=120) as http,
        http.stream("POST", COMPLETIONS, json=long_stream_body(1500)) as response,
    ):
        lines = response.iter_lines()
        assert len(read_events(lines, 3)) == 3
    # Closing the half-read response closed the connection. 1500 tokens would hold the model
    # for 15 s or more (35 s measured on a busy 2-core machine); the next request must get it
    # within a few tokens.
    started = time.perf_counter()
    response = httpx.post(
        f"{server.base_url}{COMPLETIONS}",
        json={"model": "asha", "prompt": "Hi", "max_tokens": 2},
        timeout=60,
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 200
    assert elapsed < 12, f"the next request waited {elapsed:.1f} s"
    deadline = time.monotonic() + 5
    while "closed early (client gone)" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "closed early (client gone)" in server.log()


#: Every Mimic name on one engine that decodes two sequences together.
TWO_AT_A_TIME = "".join(
    f"[models.{name}]\nparallel = 2\n"
    for name in ("mythomax", "asha", "soji", "mixtral", "mistral", "mobile")
)


def test_requests_beyond_parallel_and_a_full_queue_are_429(tmp_path: Path) -> None:
    config = "[server]\nmax_waiting = 0\n" + TWO_AT_A_TIME
    with start_server(tmp_path, config_toml=config) as small:
        with (
            httpx.Client(base_url=small.base_url, timeout=120) as http,
            http.stream("POST", COMPLETIONS, json=long_stream_body(300)) as first,
            http.stream("POST", COMPLETIONS, json=long_stream_body(300)) as second,
        ):
            # Both stream at once (each is held: dropping it would close the connection).
            held = [first.iter_lines(), second.iter_lines()]
            assert [len(read_events(lines, 2)) for lines in held] == [2, 2]
            assert len(read_events(held[0], 2)) == 2
            refused = httpx.post(
                f"{small.base_url}{CHAT}",
                json={
                    "model": "soji",
                    "messages": [{"role": "user", "content": "Hi"}],
                    "max_tokens": 2,
                },
                timeout=10,
            )
            assert refused.status_code == 429
            assert refused.headers["retry-after"].isdigit()
            assert_response_conforms("POST", CHAT, 429, refused.headers, refused.text)
            # Model lists need no turn on the model.
            assert httpx.get(f"{small.base_url}/v1/models", timeout=10).status_code == 200
        assert small.stop() == 0


def test_sigterm_when_idle_exits_cleanly(tmp_path: Path) -> None:
    with start_server(tmp_path) as idle:
        started = time.perf_counter()
        assert idle.stop() == 0, idle.log()
        assert time.perf_counter() - started < 5
        assert "Traceback" not in idle.log()


def test_sigterm_lets_a_running_stream_finish(tmp_path: Path) -> None:
    with start_server(tmp_path) as running:
        with (
            httpx.Client(base_url=running.base_url, timeout=120) as http,
            http.stream("POST", COMPLETIONS, json=long_stream_body(30)) as response,
        ):
            lines = response.iter_lines()
            first = read_events(lines, 2)  # a token out: the prompt has been evaluated
            running.process.send_signal(signal.SIGTERM)
            rest = read_events(lines, 10_000)
        events = first + rest
        assert events[-1] == "[DONE]"
        chunks = [json.loads(event) for event in events[:-1]]
        assert all("errorCode" not in chunk for chunk in chunks)
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
        assert running.process.wait(15) == 0


def test_sigterm_ends_a_long_stream_cleanly_after_the_grace_period(tmp_path: Path) -> None:
    with start_server(tmp_path, config_toml="[server]\nshutdown_grace = 1\n") as running:
        with (
            httpx.Client(base_url=running.base_url, timeout=120) as http,
            http.stream("POST", COMPLETIONS, json=long_stream_body(1500)) as response,
        ):
            lines = response.iter_lines()
            first = read_events(lines, 2)  # a token out: the prompt has been evaluated
            started = time.perf_counter()
            running.process.send_signal(signal.SIGTERM)
            rest = read_events(lines, 10_000)
        events = first + rest
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["errorCode"] == 500
        assert running.process.wait(15) == 0
        assert time.perf_counter() - started < 8


def test_keys_from_the_environment(tmp_path: Path) -> None:
    secret = "sk-test-4f1c9e"
    with start_server(tmp_path, env={"MIMIC_API_KEYS": f"other,{secret}"}) as keyed:
        url = f"{keyed.base_url}/v1/models"
        refused = httpx.get(url, timeout=10)
        assert refused.status_code == 401
        assert_response_conforms("GET", "/v1/models", 401, refused.headers, refused.text)
        assert httpx.get(url, headers={"Authorization": f"Bearer {secret}"}).status_code == 200
        assert httpx.get(url, headers={"CH-API-KEY": secret}).status_code == 200
        assert httpx.get(url, headers={"samwise": "nope"}).status_code == 401
        assert httpx.get(f"{keyed.base_url}/health", timeout=10).status_code == 200
        assert keyed.stop() == 0
        assert secret not in keyed.log()


def test_start_up_failures_are_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    missing.write_text('[models.asha]\npath = "/nonexistent/model.gguf"\n', encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'eighty'\n", encoding="utf-8")
    command = _command()
    done = subprocess.run(
        [*command, "--port", "0", "--config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "server.port: must be an integer" in done.stderr
    assert "Traceback" not in done.stderr
    done = subprocess.run(
        [*command, "--port", "0", "--config", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "no GGUF file at /nonexistent/model.gguf" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_client_gone_before_a_plain_answer_frees_the_model(server: ServerProcess) -> None:
    body = {**long_stream_body(1500), "stream": False}
    request = json.dumps(body).encode()
    with socket.create_connection(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(
            b"POST " + COMPLETIONS.encode() + b" HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(request)).encode() + b"\r\n\r\n" + request
        )
        time.sleep(0.5)  # likely mid-generation; any moment must do
    # 1500 tokens would hold the model for 15 s or more. Ordering, not timing: the abandoned
    # request is logged as cancelled, and only then is the next one answered.
    response = httpx.post(
        f"{server.base_url}{COMPLETIONS}",
        json={"model": "asha", "prompt": "Hello there", "max_tokens": 2},
        timeout=120,
    )
    assert response.status_code == 200
    log = server.log()
    gone = log.find("client gone before the response; generation cancelled")
    assert gone >= 0, log
    answered = log.find("POST /v1/completions 200", gone)
    assert answered > gone, log
