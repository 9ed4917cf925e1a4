"""Whole runs of the suite against targets that die, hang or flood: bounded time and memory.

Each test runs `mimic-conformance` as a subprocess, as a user runs it, against a small local
server (no model) and reads its exit status, its output, results.json and summary.md. The
child's peak memory comes from ``os.wait4`` (the child's own resource usage), so that other
tests' children do not count. Runs use the quick profile and short timeouts where that keeps
the test's point; time bounds are generous (a loaded 2-core CI machine), never tight timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.hostile import hostile_server

DYING_SERVER = Path(__file__).with_name("dying_server.py")
RUN_BOUND = 120.0
"""Seconds within which every run here must end: the bound that is the point."""
MEMORY_BOUND = 1 << 30
"""Peak resident memory a run may use, in bytes, whatever the target sends."""
SEED = "7"

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class SuiteRun:
    """How one run of the suite ended."""

    status: int
    output: str
    results: dict[str, Any]
    summary: str
    elapsed: float
    peak_rss: int
    """Bytes."""

    def outcome(self, requirement_id: str) -> str:
        return next(r["outcome"] for r in self.results["requirements"] if r["id"] == requirement_id)


def run_suite(report_dir: Path, *args: str, code: str | None = None) -> SuiteRun:
    """Run the suite (or ``python -c code``) with ``args``; wait at most twice the run bound."""
    command = [sys.executable, *(("-c", code) if code else ("-m", "conformance"))]
    command += ["--report-dir", str(report_dir), "--seed", SEED, "-q", *args]
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MIMIC_") or k == "MIMIC_MODELS_DIR"
    }
    log = report_dir.with_name(report_dir.name + ".out")
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    while True:
        pid, wait_status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > 2 * RUN_BOUND:
            process.kill()
            pid, wait_status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(wait_status)
            pytest.fail(f"the run did not end: {log.read_text()[-3000:]}")
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(wait_status)
    results_path, summary_path = report_dir / "results.json", report_dir / "summary.md"
    return SuiteRun(
        status=process.returncode,
        output=log.read_text(errors="replace"),
        results=_json(results_path),
        summary=summary_path.read_text() if summary_path.exists() else "",
        elapsed=elapsed,
        peak_rss=usage.ru_maxrss * 1024,  # kilobytes on Linux
    )


def quick_run_against(mode: str, tmp_path: Path, timeout: str) -> SuiteRun:
    """A quick run against the hostile server ``mode``: it must fail, within the run bound."""
    with hostile_server(mode) as target:
        run = run_suite(
            tmp_path / "reports", "--target", target, "--profile", "quick", "--timeout", timeout
        )
    assert run.status == 1, run.output[-3000:]
    assert run.elapsed < RUN_BOUND, f"the run took {run.elapsed:.0f} s"
    return run


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


@contextmanager
def dying_server(after: int) -> Iterator[tuple[str, Path]]:
    """Run dying_server.py on a free port; yield its base URL and the file it logs to."""
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"dying-server-{os.getpid()}-{time.time_ns()}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(DYING_SERVER), "--after", str(after)], stdout=out
        )
    try:
        deadline = time.monotonic() + 30
        while not log.read_text().strip():
            assert process.poll() is None and time.monotonic() < deadline, "it did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{log.read_text().split()[0]}", log
    finally:
        process.kill()
        process.wait()
        log.unlink()


def _says_once_that_it_went_down(run: SuiteRun) -> dict[str, Any]:
    down = run.results["target_down"]
    assert down is not None, run.output[-3000:]
    sentence = "The target stopped answering at " + down["since"]
    for text in (run.output, run.summary, run.results["verdict"]):
        assert text.count("The target stopped answering at") == 1, text[-3000:]
        assert sentence in text
    answered = down["requests_answered"]
    assert f"after answering {answered} request" in run.summary
    errors = sum(case["outcome"] == "error" for case in run.results["cases"])
    assert 0 < down["checks_not_run"] <= errors
    assert f"{down['checks_not_run']} checks could not run because of it" in run.summary
    assert down["last_answered"].startswith("curl ") and down["last_answered"] in run.summary
    return down


def test_a_target_that_dies_is_named_with_the_request_after_which_it_died(tmp_path: Path) -> None:
    with dying_server(after=50) as (target, log):
        run = run_suite(tmp_path / "reports", "--target", target, "--profile", "quick")
        served = log.read_text().splitlines()
    assert run.status == 1, run.output[-3000:]
    assert run.elapsed < RUN_BOUND
    down = _says_once_that_it_went_down(run)
    assert down["cause"] == "3 requests in a row could not connect"
    # Its 50th request was the suite's last answered one (the probe before the run was its 1st).
    assert served[-2].startswith("request 50: ") and served[-1] == "dying after request 50"
    method, path = served[-2].split()[2:4]
    assert f"-X {method} {target}{path}" in down["last_answered"]
    assert down["requests_answered"] == 49
    assert down["server_exit"] is None  # the suite did not start it


def test_a_reference_server_killed_by_a_signal_is_reported_under_xdist(tmp_path: Path) -> None:
    command = (sys.executable, str(DYING_SERVER), "--after", "50", "--signal", "ILL")
    code = (
        "import sys, conformance.plugin as p; "
        "p.ReferenceServer.installed = staticmethod(lambda: True); "
        f"p.ReferenceServer.command = {command!r}; "
        "from conformance.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    run = run_suite(tmp_path / "reports", "--profile", "quick", "-n", "2", code=code)
    assert run.status == 1, run.output[-3000:]
    assert run.elapsed < RUN_BOUND
    down = _says_once_that_it_went_down(run)
    assert down["server_exit"] == "was killed by SIGILL (illegal instruction)"
    assert down["server_log_tail"][-1] == "dying after request 50"
    assert len(down["server_log_tail"]) == 20
    assert "The reference server was killed by SIGILL (illegal instruction)." in run.summary
    assert "dying after request 50" in run.summary and "dying after request 50" in run.output


def test_streams_that_stall_end_the_run_in_bounded_time(tmp_path: Path) -> None:
    run = quick_run_against("stalls-streams", tmp_path, timeout="5")
    assert run.outcome("STREAM-ENDS") == "fail"
    messages = [
        case["evidence"]["message"]
        for case in run.results["cases"]
        if case["requirement_id"] == "STREAM-ENDS" and case["outcome"] == "fail"
    ]
    assert any(message.startswith("the stream stalled") for message in messages), messages
    assert run.outcome("STREAM-CONTENT-TYPE") == "pass"  # what did arrive is still judged
    assert run.results["target_down"] is None  # it stalls, it is not dead


def test_a_target_that_stops_answering_heads_ends_the_run_in_bounded_time(tmp_path: Path) -> None:
    run = quick_run_against("lists-models-then-silent", tmp_path, timeout="5")
    down = _says_once_that_it_went_down(run)
    assert down["cause"] == "5 requests in a row failed"
    assert down["first_failure"] == "no complete response within 5 s"


@pytest.mark.parametrize(
    "mode",
    [
        "silent",
        "garbage",
        "reset",
        "sse-forever",
        "endless-body",
        "gigabyte",
        "trickle",
        "trickle-head",
    ],
)
def test_a_hostile_target_ends_the_run_in_bounded_time_and_memory(
    mode: str, tmp_path: Path
) -> None:
    run = quick_run_against(mode, tmp_path, timeout="2")
    assert run.peak_rss < MEMORY_BOUND, f"the run peaked at {run.peak_rss >> 20} MiB"
    assert "Traceback" not in run.output, run.output[-3000:]
    assert run.results["verdict"].startswith("NOT CONFORMANT"), run.results.get("verdict")
