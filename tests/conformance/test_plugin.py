"""The plugin and the command, run as a user runs them, against small local servers (no model).

The target here is a server that answers every request with a small JSON 200: it breaks many
requirements, quickly, without generating anything. The suite runs as a subprocess; the tests
read what it printed, its exit status, and the results.json it wrote.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conformance._reference_process import ReferenceServer
from conformance.cli import main, pytest_args
from conformance.exchange import RequestSpec
from conformance.profile import PROFILES, Settings
from conformance.suite._liveness import UNRESPONSIVE_AFTER
from conformance.suite._run import Run
from tests.conformance.hostile import hostile_server, read_request, recording_server

SECRET = "plugin-test-secret-key"


def run_suite(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MIMIC_")}
    done = subprocess.run(
        [sys.executable, "-m", "conformance", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**clean, **(env or {})},
        cwd=cwd,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def results(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "results.json").read_text())


@pytest.fixture(scope="module")
def json_target() -> Any:
    with hostile_server("json") as base_url:
        yield base_url


@pytest.mark.slow
def test_a_failure_is_recorded_with_evidence_and_gates(json_target: str, tmp_path: Path) -> None:
    status, output = run_suite(
        "--target",
        json_target,
        "--requirement",
        "ERR-UNKNOWN-ROUTE",
        "--api-key",
        SECRET,
        "--seed",
        "42",
        "--report-dir",
        str(tmp_path),
        "--profile",
        "quick",
    )
    assert status == 1, output
    assert "NOT CONFORMANT" in output
    assert str(tmp_path / "report.html") in output
    record = results(tmp_path)
    assert [r["id"] for r in record["requirements"]] == ["ERR-UNKNOWN-ROUTE"]
    assert record["seed"] == 42 and record["target"] == json_target
    assert record["options"]["api_key"] == "***redacted***"
    (case,) = record["cases"]
    assert (case["outcome"], case["operation"]) == ("fail", "(unknown route)")
    assert "answered 200, not 404" in case["evidence"]["message"]
    assert "$MIMIC_API_KEY" in case["evidence"]["curl"]
    for name in ("results.json", "report.html", "junit.xml", "summary.md"):
        assert SECRET not in (tmp_path / name).read_text(), name


@pytest.mark.slow
def test_environment_variables_stand_for_options(json_target: str, tmp_path: Path) -> None:
    env = {
        "MIMIC_TARGET": json_target,
        "MIMIC_REQUIREMENT": "ERR-UNKNOWN-ROUTE,ERR-NOT-OBJECT",
        "MIMIC_REPORT_DIR": str(tmp_path),
        "MIMIC_PROFILE": "quick",
    }
    status, output = run_suite(env=env)
    assert status == 1, output
    record = results(tmp_path)
    assert {r["id"] for r in record["requirements"]} == {"ERR-UNKNOWN-ROUTE", "ERR-NOT-OBJECT"}
    assert isinstance(record["seed"], int)  # random, and recorded


@pytest.mark.slow
def test_auth_rules_skip_without_a_key(json_target: str, tmp_path: Path) -> None:
    status, output = run_suite(
        "--target", json_target, "--requirement", "AUTH-*", "--report-dir", str(tmp_path)
    )
    assert status == 0, output
    record = results(tmp_path)
    assert {r["outcome"] for r in record["requirements"]} == {"skip"}
    assert all("--api-key" in case["reason"] for case in record["cases"])


@pytest.mark.slow
def test_unknown_requirement_is_a_usage_error(json_target: str, tmp_path: Path) -> None:
    status, output = run_suite(
        "--target", json_target, "--requirement", "STREEM-*", "--report-dir", str(tmp_path)
    )
    assert status == 4
    assert "no requirement matches STREEM-*" in output


@pytest.mark.slow
def test_hostile_requirements_need_robust(json_target: str, tmp_path: Path) -> None:
    status, output = run_suite(
        "--target", json_target, "--requirement", "ROBUST-*", "--report-dir", str(tmp_path)
    )
    assert status == 4
    assert "ROBUST-* sends hostile traffic (floods, idle connections): add --robust" in output


@pytest.mark.slow
def test_hostile_requirements_run_last_and_fail_a_server_that_takes_anything(
    json_target: str, tmp_path: Path
) -> None:
    status, output = run_suite(
        "--target",
        json_target,
        "--robust",
        "--requirement",
        "ROBUST-FLOOD",
        "--requirement",
        "ERR-UNKNOWN-ROUTE",
        "--report-dir",
        str(tmp_path),
    )
    record = results(tmp_path)
    assert status == 1, output
    assert record["options"]["robust"] is True
    order = [case["requirement_id"] for case in record["cases"]]
    assert order[0] == "ERR-UNKNOWN-ROUTE" and set(order[1:]) == {"ROBUST-FLOOD"}, order
    flood = next(case for case in record["cases"] if case["requirement_id"] == "ROBUST-FLOOD")
    assert flood["outcome"] == "fail"
    assert "answered 200: a request this invalid is answered 4xx" in flood["evidence"]["message"]
    assert len(flood["evidence"]["curl"]) < 2000


@pytest.mark.slow
def test_a_baseline_gates_on_new_failures_and_stale_entries(
    json_target: str, tmp_path: Path
) -> None:
    # On this target ERR-UNKNOWN-ROUTE fails, ERR-UNKNOWN-MODEL fails, ROBUST-UNENCODABLE passes.
    baseline = tmp_path / "known.toml"
    base = ("--target", json_target, "--robust", "--report-dir", str(tmp_path / "r"))
    picked = ("--requirement", "ERR-UNKNOWN-ROUTE", "--requirement", "ROBUST-UNENCODABLE")
    status, output = run_suite(*base, *picked, "--write-baseline", str(baseline))
    assert status == 1, output
    assert f"baseline written: {baseline} (1 known failure)" in output
    assert "ERR-UNKNOWN-ROUTE" in baseline.read_text()

    status, output = run_suite(*base, *picked, "--baseline", str(baseline))
    assert status == 0, output
    assert results(tmp_path / "r")["verdict"].startswith("NO NEW FAILURES")

    status, output = run_suite(
        *base, *picked, "--requirement", "ERR-UNKNOWN-MODEL", "--baseline", str(baseline)
    )
    assert status == 1, output
    assert "new failures in 1 MUST requirement (ERR-UNKNOWN-MODEL)" in output

    with baseline.open("a") as more:
        more.write(
            '\n[[known_failures]]\nrequirement = "ROBUST-UNENCODABLE"\n'
            'operation = "POST /v1/completions"\nreason = "fixed since"\n'
        )
    status, output = run_suite(*base, *picked, "--baseline", str(baseline))
    assert status == 1, output
    assert "STALE BASELINE" in output
    assert "stale baseline entry (now passes): ROBUST-UNENCODABLE on POST /v1/completions" in output

    baseline.write_text("[[known_failures]]\nrequirement = 'NOPE-1'\n")
    status, output = run_suite(*base, *picked, "--baseline", str(baseline))
    assert status == 4 and "'operation' must be a non-empty string" in output, output


def _answer_404(conn: socket.socket, stop: threading.Event) -> None:
    """A target that answers every request 404 in the spec's error shape."""
    if read_request(conn, stop):
        body = b'{"error": "no such thing", "errorCode": 404, "code": 404}'
        conn.sendall(
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )


@pytest.mark.slow
def test_replay_sends_only_the_failures_again(json_target: str, tmp_path: Path) -> None:
    picked = ["ERR-UNKNOWN-ROUTE", "ERR-UNKNOWN-MODEL", "SEM-MODELS-SCOPED", "SEM-USAGE-SUM"]
    selection = [arg for rid in picked for arg in ("--requirement", rid)]
    status, output = run_suite("--target", json_target, *selection, "--report-dir", str(tmp_path))
    first = results(tmp_path)
    failed = {
        (c["requirement_id"], c["operation"]) for c in first["cases"] if c["outcome"] == "fail"
    }
    assert status == 1 and len(failed) == 5, output  # SEM-USAGE-SUM skips: no usage to add

    started = time.monotonic()
    status, output = run_suite("replay", str(tmp_path / "results.json"), "-q")
    assert time.monotonic() - started < 30
    assert status == 1, output
    replayed = results(tmp_path / "replay")
    assert {(c["requirement_id"], c["operation"]) for c in replayed["cases"]} == failed
    assert replayed["seed"] == first["seed"]
    assert "### Still failing (5)" in output

    # Against a target that answers 404 to everything, the error rules hold, and the scoped
    # models list cannot be judged: fixed is not claimed for what was not judged.
    with hostile_server(_answer_404) as fixed_target:
        status, output = run_suite(
            "replay", str(tmp_path / "results.json"), "--target", fixed_target, "-q"
        )
    assert status == 0, output
    assert "### Fixed (3)" in output and "### No longer judged (2)" in output


@pytest.mark.slow
def test_replay_of_a_run_without_failures_does_nothing(json_target: str, tmp_path: Path) -> None:
    run_suite("--target", json_target, "--requirement", "AUTH-*", "--report-dir", str(tmp_path))
    status, output = run_suite("replay", str(tmp_path / "results.json"))
    assert status == 0 and "has no failures to replay" in output
    status, output = run_suite("replay", str(tmp_path / "absent.json"))
    assert status == 2 and "cannot read" in output


@pytest.mark.slow
def test_workers_results_are_merged(json_target: str, tmp_path: Path) -> None:
    args = ("--target", json_target, "--requirement", "ERR-*", "--seed", "1", "--profile", "quick")
    serial, _ = run_suite(*args, "--report-dir", str(tmp_path / "serial"))
    parallel, parallel_output = run_suite(
        *args, "--report-dir", str(tmp_path / "parallel"), "-n", "2"
    )
    assert serial == parallel == 1, parallel_output

    def summary(directory: Path) -> list[tuple[str, str, str]]:
        return sorted(
            (c["requirement_id"], c["operation"], c["outcome"]) for c in results(directory)["cases"]
        )

    assert summary(tmp_path / "parallel") == summary(tmp_path / "serial")
    assert len(summary(tmp_path / "serial")) > 20


@pytest.mark.slow
def test_no_target_and_no_reference_is_one_clear_line(tmp_path: Path) -> None:
    code = (
        "import sys, conformance.plugin as p; "
        "p.ReferenceServer.installed = staticmethod(lambda: False); "
        "from conformance.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "--report-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("MIMIC_")},
    )
    assert done.returncode != 0
    assert (
        "no --target given and the reference server is not installed: "
        "pip install 'mimic-conformance[reference]'" in done.stderr
    )


@pytest.mark.slow
def test_the_command_runs_isolated_from_the_working_directory(
    json_target: str, tmp_path: Path
) -> None:
    # A project whose pytest configuration would break the suite (an unknown option in addopts).
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --no-such-option\n")
    status, output = run_suite(
        "--target", json_target, "--requirement", "ERR-UNKNOWN-ROUTE", cwd=tmp_path
    )
    assert status == 1, output
    assert (tmp_path / "reports" / "results.json").exists()
    assert not (tmp_path / ".pytest_cache").exists()


def test_cli_help_and_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "[$MIMIC_TARGET]" in capsys.readouterr().out  # the options, from their table
    args = pytest_args(["--target", "http://x"])
    assert args[:2] == ["-c", os.devnull]
    assert args[-2:] == ["--pyargs", "conformance.suite"]
    assert "conformance.plugin" in args


def _settings(target: str, timeout: float) -> Settings:
    import spec

    return Settings(
        target=target,
        api_key=None,
        seed=1,
        max_examples=None,
        timeout=timeout,
        report_dir=Path("reports"),
        requirements=(),
        skip_requirements=(),
        gate_should=False,
        profile=PROFILES["quick"],
        spec_path=spec.SPEC_PATH,
    )


def test_a_target_that_stops_answering_is_not_asked_forever() -> None:
    with hostile_server("silent") as target:
        run = Run(_settings(target, 0.3), target)
        try:
            started = time.monotonic()
            exchanges = [
                run.send(RequestSpec("GET", "/v1/models")) for _ in range(UNRESPONSIVE_AFTER + 20)
            ]
            elapsed = time.monotonic() - started
        finally:
            run.close()
    assert all(e.failure is not None for e in exchanges)
    outage = run.liveness.outage
    assert outage is not None and f"{UNRESPONSIVE_AFTER} requests in a row failed" in outage.cause
    assert elapsed < UNRESPONSIVE_AFTER * 0.3 + 3
    assert "not sent" in (exchanges[-1].failure.message if exchanges[-1].failure else "")


def test_a_target_that_stalls_only_its_streams_is_not_taken_for_down() -> None:
    # The plain sends of streamed bodies (as the SDK and ERR-RECOVERS rules make them) stall
    # after the first one left its answer open past the timeout: those cut-offs are bounded
    # silences of a target that answers, so they must not add up to an outage.
    body = json.dumps({"model": "mythomax", "prompt": "x", "stream": True}).encode()
    request = RequestSpec("POST", "/v1/completions", (("content-type", "application/json"),), body)
    with hostile_server("stalls-streams") as target:
        run = Run(_settings(target, 0.5), target)
        try:
            exchanges = [run.send(request) for _ in range(UNRESPONSIVE_AFTER + 2)]
        finally:
            run.close()
    assert all(exchange.status == 200 for exchange in exchanges)
    assert exchanges[0].failure is not None and exchanges[-1].failure is not None
    assert run.liveness.outage is None


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "import os, signal, resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); "
            "os.kill(os.getpid(), signal.SIGILL)",
            "was killed by SIGILL (illegal instruction)",
        ),
        ("import sys; sys.exit(3)", "exited with status 3"),
        ("import time; time.sleep(30)", "is still running"),
    ],
)
def test_the_reference_servers_end_is_described(code: str, expected: str, tmp_path: Path) -> None:
    server = ReferenceServer(tmp_path / "reference-server.log", None)
    assert server.exit_description() is None and server.log_tail() == ()
    server.process = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert server.exit_description(wait=10.0 if "running" not in expected else 0.1) == expected
    finally:
        server.process.kill()
        server.process.wait()


def test_the_reference_servers_log_tail(tmp_path: Path) -> None:
    server = ReferenceServer(tmp_path / "reference-server.log", None)
    server.log_path.write_text("".join(f"line {n}\n" for n in range(100)) + "\n")
    assert server.log_tail() == tuple(f"line {n}" for n in range(80, 100))


def test_a_request_can_go_out_without_the_runs_key_yet_bounded_like_the_others() -> None:
    with recording_server() as (target, received):
        settings = dataclasses.replace(_settings(target, 2.0), api_key=SECRET)
        run = Run(settings, target)
        try:
            keyed = run.send(RequestSpec("GET", "/v1/models"))
            bare = run.send(RequestSpec("GET", "/v1/models"), credentials=False)
        finally:
            run.close()
    assert keyed.status == bare.status == 204
    assert [SECRET in str(request.headers) for request in received] == [True, False]
    assert run.liveness.answered == 2


@pytest.mark.slow
def test_the_openai_contract_is_chosen_shown_and_judged(json_target: str, tmp_path: Path) -> None:
    status, output = run_suite(
        "--target",
        json_target,
        "--contract",
        "openai",
        "--requirement",
        "ERR-MALFORMED-JSON",
        "--requirement",
        "ERR-PATH-MODEL",
        "--requirement",
        "SEM-COMPLETION-TEXT",
        "--report-dir",
        str(tmp_path),
    )
    assert status == 1, output[-2000:]
    found = results(tmp_path)
    assert found["spec"]["contract"] == "openai"
    assert found["spec"]["title"] == "OpenAI-compatible chat and completions API"
    by_id = {r["id"]: r["outcome"] for r in found["requirements"]}
    assert by_id == {
        "ERR-MALFORMED-JSON": "fail",
        "ERR-PATH-MODEL": "not-applicable",
        "SEM-COMPLETION-TEXT": "not-applicable",
    }
    failure = next(c for c in found["cases"] if c["outcome"] == "fail")
    assert "not 400" in failure["evidence"]["message"]
    assert found["summary"]["must"]["not_applicable"] == 1
    html = (tmp_path / "report.html").read_text()
    assert "OpenAI-compatible conformance report" in html
    assert "Not applicable under the OpenAI-compatible contract" in html
    assert "not applicable: " in (tmp_path / "junit.xml").read_text()
    assert "OpenAI-compatible conformance" in output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--contract", "gpt"), "--contract gpt: no such contract (use mimic or openai)"),
        (("--contract", "openai", "--spec", "openai"), "give --contract or --spec, not both"),
    ],
)
def test_contract_usage_errors(
    json_target: str, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    status, output = run_suite("--target", json_target, *args, "--report-dir", str(tmp_path))
    assert status == 4
    assert message in output
