"""The suite against deliberately broken servers: each must fail exactly what it breaks.

A check that cannot fail is worthless. Each broken server is the real reference server (started
once for the module, with the real model and an API key) behind a fault-injecting proxy that
breaks one requirement. The suite runs as a subprocess, as a user runs it (`mimic-conformance`),
narrowed to the fault's family, with a fixed seed; its results.json must show exactly the
expected failures, no errors, and the exit status that the requirement's level calls for.

A failure shows something only if the honest server passes: so the unproxied reference must pass
every requirement a broken server breaks, under the same options, or that broken server's test
fails and says why. The reference is judged once for all of them (and once more for each set of
extra options some broken servers need).

Also here: the unproxied reference passes every MUST (run under pytest-xdist, so that merging
the workers' results is exercised too); an unreachable target ends the run at once with one clear
line. Targets that die, hang or flood are in ``test_hostile_runs.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conformance.broken.faults import API_KEY, BROKEN_SERVERS, BrokenServer
from tests.conformance.broken.proxy import fault_proxy
from tests.conformance.broken.reference import reference_server

SEED = "20251125"
pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def reference() -> Iterator[str]:
    """The reference server with the real model, requiring API_KEY."""
    with reference_server(api_key=API_KEY) as base_url:
        yield base_url


def run_suite(
    target: str, report_dir: Path, *args: str, timeout: float = 300
) -> tuple[int, dict[str, Any], str, float]:
    """Run `mimic-conformance` on ``target``: (exit status, results.json, output, seconds)."""
    script = Path(sys.executable).with_name("mimic-conformance")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "conformance"]
    command += ["--target", target, "--report-dir", str(report_dir), "--seed", SEED, "-q", *args]
    started = time.monotonic()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MIMIC_") or k == "MIMIC_MODELS_DIR"
    }
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    elapsed = time.monotonic() - started
    output = done.stdout + done.stderr
    results_path = report_dir / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    return done.returncode, results, output, elapsed


def outcomes(results: dict[str, Any], outcome: str) -> set[str]:
    return {r["id"] for r in results.get("requirements", []) if r["outcome"] == outcome}


def why_not_passed(results: dict[str, Any], requirement_id: str) -> str:
    """How ``requirement_id`` ended in ``results`` (not a pass), with its first reasons."""
    outcome = next(
        (r["outcome"] for r in results.get("requirements", []) if r["id"] == requirement_id),
        "not judged",
    )
    reasons = []
    for case in results.get("cases", []):
        if case["requirement_id"] == requirement_id and case["outcome"] != "pass":
            evidence = case.get("evidence") or {}
            reasons.append(case.get("reason") or evidence.get("message") or "")
    shown = "; ".join(dict.fromkeys(reason for reason in reasons if reason))
    return f"{requirement_id} {outcome}" + (f" ({shown[:300]})" if shown else "")


@pytest.fixture(scope="module")
def reference_run(
    reference: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[int, dict[str, Any], str, Path]:
    """The whole suite against the unproxied reference (quick, with the API key), once.

    Run under pytest-xdist. Returns the exit status, results.json, the output and the report
    directory.
    """
    report_dir = tmp_path_factory.mktemp("reference-run")
    status, results, output, _ = run_suite(
        reference, report_dir, "--profile", "quick", "--api-key", API_KEY, "-n", "2"
    )
    return status, results, output, report_dir


@pytest.fixture(scope="module")
def honest_results(
    reference: str,
    reference_run: tuple[int, dict[str, Any], str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[BrokenServer], dict[str, Any]]:
    """The reference's results.json under a broken server's own extra options.

    Without extra options that is the whole run (:func:`reference_run`); each other set of
    options is run once, narrowed to what the broken servers that use it break.
    """
    runs: dict[tuple[str, ...], dict[str, Any]] = {(): reference_run[1]}

    def results_for(broken: BrokenServer) -> dict[str, Any]:
        if broken.args not in runs:
            breaking = {r for b in BROKEN_SERVERS if b.args == broken.args for r in b.expected}
            selection = [arg for r in sorted(breaking) for arg in ("--requirement", r)]
            _, results, _, _ = run_suite(
                reference,
                tmp_path_factory.mktemp("reference-with-options"),
                "--profile",
                "quick",
                "--api-key",
                API_KEY,
                *selection,
                *broken.args,
            )
            runs[broken.args] = results
        return runs[broken.args]

    return results_for


@pytest.mark.parametrize("broken", BROKEN_SERVERS, ids=[b.name for b in BROKEN_SERVERS])
def test_broken_server_fails_exactly_its_requirement(
    broken: BrokenServer,
    reference: str,
    honest_results: Callable[[BrokenServer], dict[str, Any]],
    tmp_path: Path,
) -> None:
    honest = honest_results(broken)
    not_passed = sorted(broken.expected - outcomes(honest, "pass"))
    if not_passed:
        pytest.fail(
            f"the reference itself does not pass what {broken.name!r} breaks, so its failing "
            f"shows nothing: " + "; ".join(why_not_passed(honest, r) for r in not_passed),
            pytrace=False,
        )
    with fault_proxy(reference, broken.fault) as target:
        status, results, output, _ = run_suite(
            target,
            tmp_path,
            "--profile",
            "quick",
            "--api-key",
            API_KEY,
            "--requirement",
            broken.selection,
            *broken.args,
        )
    assert results, output
    assert outcomes(results, "fail") == set(broken.expected), output[-3000:]
    assert outcomes(results, "error") == set(), output[-3000:]
    if broken.should_only:
        assert status == 0, output[-2000:]
        assert "CONFORMANT" in results["verdict"]
    else:
        assert status == 1, output[-2000:]
        assert results["verdict"].startswith("NOT CONFORMANT")
    for case in results["cases"]:
        if case["outcome"] == "fail":
            evidence = case["evidence"]
            # A stalled connection is no one HTTP request: bash's /dev/tcp sends it instead.
            assert "curl -sS" in evidence["curl"] or "/dev/tcp/" in evidence["curl"], evidence
            assert API_KEY not in json.dumps(evidence), "the API key leaked into the evidence"
            if (
                case["requirement_id"].startswith("STREAM-")
                and case["requirement_id"] != "STREAM-CONTENT-TYPE"
            ):
                assert evidence["events"], evidence


def test_should_failures_gate_only_with_gate_should(reference: str, tmp_path: Path) -> None:
    broken = next(b for b in BROKEN_SERVERS if b.name == "completion-text-differs")
    with fault_proxy(reference, broken.fault) as target:
        args = ("--profile", "quick", "--requirement", "SEM-COMPLETION-TEXT", "--api-key", API_KEY)
        plain, _, output, _ = run_suite(target, tmp_path / "plain", *args)
        gated, results, gated_output, _ = run_suite(
            target, tmp_path / "gated", *args, "--gate-should"
        )
    assert plain == 0, output[-2000:]
    assert gated == 1, gated_output[-2000:]
    assert outcomes(results, "fail") == {"SEM-COMPLETION-TEXT"}


def test_reference_passes_every_must(
    reference_run: tuple[int, dict[str, Any], str, Path],
) -> None:
    status, results, output, report_dir = reference_run
    assert status == 0, output[-4000:]
    assert outcomes(results, "fail") == set(), output[-4000:]
    assert outcomes(results, "error") == set(), output[-4000:]
    assert not outcomes(results, "skip") & {"STREAM-DONE-LAST", "AUTH-MISSING-KEY", "SEM-N-CHOICES"}
    assert results["seed"] == int(SEED)
    assert results["options"]["api_key"] == "***redacted***"
    html = (report_dir / "report.html").read_text()
    assert "CONFORMANT" in html and API_KEY not in html
    timed = [
        case["measurements"]
        for case in results["cases"]
        if case["requirement_id"] == "STREAM-INCREMENTAL" and case["measurements"]
    ]
    assert timed and all({"ttft_s", "itl_median_s", "tokens_per_s"} <= set(t) for t in timed)
    assert "Stream timings" in html and "Stream timings" in (report_dir / "summary.md").read_text()
    assert (report_dir / "junit.xml").exists() and (report_dir / "summary.md").exists()


def test_unreachable_target_is_one_clear_line(tmp_path: Path) -> None:
    status, results, output, elapsed = run_suite(
        "http://127.0.0.1:9", tmp_path, "--profile", "quick"
    )
    assert status == 1
    assert elapsed < 30
    lines = [line for line in output.splitlines() if "unreachable" in line]
    assert len(lines) == 1, output
    assert "127.0.0.1:9" in lines[0]
    assert results["verdict"].startswith("NOT CONFORMANT")
    assert outcomes(results, "error") == {r["id"] for r in results["requirements"]}
