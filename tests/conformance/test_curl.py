from __future__ import annotations

import os
import shutil
import string
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conformance.curl import to_curl
from conformance.exchange import RequestSpec
from tests.conformance.hostile import ReceivedRequest, recording_server

CURL = shutil.which("curl")
SHELLS = [shell for shell in ("sh", "bash") if shutil.which(shell)]
SECRET_PREFIX = "sk-test-"  # quoting may split the secret; its prefix shows a leak anyway
SECRET = SECRET_PREFIX + "'$(touch /tmp/pwned)`x`\"!"

pytestmark = pytest.mark.skipif(CURL is None, reason="curl is not installed")


def _run(command: str, shell: str, *, key: str | None = SECRET) -> None:
    env = {"PATH": os.environ["PATH"]}
    if key is not None:
        env["MIMIC_API_KEY"] = key
    completed = subprocess.run(
        [shell, "-c", command], env=env, capture_output=True, timeout=20, check=False
    )
    assert completed.returncode == 0, completed.stderr.decode()


def _assert_reproduced(request: RequestSpec, seen: ReceivedRequest, base_url: str) -> None:
    assert seen.method == request.method
    assert base_url + seen.target == request.url
    expected = [(name.lower(), value) for name, value in request.headers]
    own = {name.lower() for name, _ in request.headers}
    sent = [(name.lower(), value) for name, value in seen.headers if name.lower() in own]
    assert sent == expected
    if request.header("content-type") is None:
        assert seen.header("content-type") is None  # curl's form default was suppressed
    assert seen.body == (request.body or b"")


def _send_with_curl(
    request: RequestSpec, received: list[ReceivedRequest], shell: str
) -> ReceivedRequest:
    received.clear()
    command = to_curl(request, secrets=[SECRET])
    assert SECRET_PREFIX not in command
    _run(command, shell)
    (seen,) = received
    return seen


@pytest.mark.parametrize("shell", SHELLS)
def test_json_request_with_a_secret_is_reproduced_without_showing_the_key(shell: str) -> None:
    with recording_server() as (base_url, received):
        request = RequestSpec.json(
            "POST",
            base_url + "/v1/chat/completions",
            {"model": "mythomax", "messages": [{"role": "user", "content": "it's $HOME `id`"}]},
            headers={"Authorization": f"Bearer {SECRET}", "CH-API-KEY": SECRET},
        )
        seen = _send_with_curl(request, received, shell)
    _assert_reproduced(request, seen, base_url)
    assert seen.header("authorization") == f"Bearer {SECRET}"
    assert not os.path.exists("/tmp/pwned")


@pytest.mark.parametrize("shell", SHELLS)
def test_binary_body_is_piped_through_printf(shell: str) -> None:
    body = bytes(range(256)) + b"-%s%%\\n'\"$(id)`"
    with recording_server() as (base_url, received):
        request = RequestSpec("POST", base_url + "/v1/completions", (), b"-" + body)
        command = to_curl(request)
        assert command.startswith("printf ") and "--data-binary @-" in command
        seen = _send_with_curl(request, received, shell)
    _assert_reproduced(request, seen, base_url)


@pytest.mark.parametrize("shell", SHELLS)
def test_odd_urls_and_empty_headers_are_reproduced(shell: str) -> None:
    with recording_server() as (base_url, received):
        request = RequestSpec(
            "DELETE",
            base_url + "/chub/{model}/v1/../v1/./models[0]?q=a%20b&x={y}",
            (("X-Empty", ""), ("X-Dup", "1"), ("X-Dup", "2")),
        )
        seen = _send_with_curl(request, received, shell)
    _assert_reproduced(request, seen, base_url)


_token = st.text(string.ascii_letters + string.digits + "-", min_size=1, max_size=12)
_header_value = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30
) | st.just(f"Bearer {SECRET}")
_path = st.text(string.ascii_letters + string.digits + "-._~/[]{}%!$&'()*+,;=:@", max_size=30)


@st.composite
def _requests(draw: st.DrawFn, base_url: str) -> RequestSpec:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]))
    path = "/" + draw(_path).replace("%", "%25")
    names = draw(st.lists(_token.map(lambda name: f"X-{name}"), max_size=4))
    headers = tuple((name, draw(_header_value)) for name in names)
    if draw(st.booleans()):
        headers += (("Content-Type", draw(st.sampled_from(["application/json", "text/plain"]))),)
    body = draw(
        st.none()
        | st.binary(max_size=200)
        | st.text(max_size=100).map(str.encode)
        | st.just(SECRET.encode())
    )
    return RequestSpec(method, base_url + path, headers, body)


@pytest.mark.parametrize("shell", SHELLS)
def test_any_request_is_reproduced_byte_for_byte(shell: str) -> None:
    with recording_server() as (base_url, received):

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(_requests(base_url))
        def check(request: RequestSpec) -> None:
            _assert_reproduced(request, _send_with_curl(request, received, shell), base_url)

        check()


def test_command_shape() -> None:
    stream = RequestSpec.json("POST", "http://h/v1/completions", {"stream": True})
    command = to_curl(stream, multiline=False)
    assert command.startswith("curl -sS -N -X POST http://h/v1/completions -H ")
    assert "\n" not in command
    assert "-N" not in to_curl(stream, stream=False)
    assert to_curl(RequestSpec("GET", "http://h/v1/models")) == (
        "curl -sS -X GET http://h/v1/models"
    )
    assert to_curl(RequestSpec("HEAD", "http://h/")).startswith("curl -sS --head ")
    no_type = to_curl(RequestSpec("POST", "http://h/", body=b"x"))
    assert "-H 'Content-Type:'" in no_type


def test_secrets_become_environment_variables() -> None:
    request = RequestSpec("GET", "http://h/", (("A", "k1 and k22"), ("B", "k22")))
    command = to_curl(request, secrets=["k1", "k22"])
    assert "'A: '\"$MIMIC_API_KEY\"' and '\"$MIMIC_API_KEY_2\"" in command
    assert "'B: '\"$MIMIC_API_KEY_2\"" in command
    named = to_curl(request, secrets={"k22": "OTHER"})
    assert '"$OTHER"' in named and "k1" in named


def test_relative_url_is_refused() -> None:
    with pytest.raises(ValueError, match="absolute URL"):
        to_curl(RequestSpec("GET", "/v1/models"))
