"""The suite against deliberately broken servers: each must fail exactly what it breaks.

A check that cannot fail is worthless. Each broken server is the real reference server (started
once for the module, with the real model and an API key) behind a fault-injecting proxy that
breaks one requirement. The suite runs as a subprocess, as a user runs it (`mimic-conformance`),
narrowed to the fault's family, with a fixed seed; its results.json must show exactly the
expected failures, no errors, and the exit status that the requirement's level calls for.

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
from collections.abc import Iterator
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


@pytest.mark.parametrize("broken", BROKEN_SERVERS, ids=[b.name for b in BROKEN_SERVERS])
def test_broken_server_fails_exactly_its_requirement(
    broken: BrokenServer, reference: str, tmp_path: Path
) -> None:
    if broken.needs_reference:
        _, honest, output, _ = run_suite(
            reference,
            tmp_path / "reference",
            "--profile",
            "quick",
            "--api-key",
            API_KEY,
            "--requirement",
            broken.needs_reference,
        )
        if broken.needs_reference not in outcomes(honest, "pass"):
            pytest.skip(
                f"the reference does not pass {broken.needs_reference} yet, so breaking it "
                f"shows nothing: {output[-300:]}"
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
            assert "curl -sS" in evidence["curl"], evidence
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


def test_reference_passes_every_must(reference: str, tmp_path: Path) -> None:
    status, results, output, _ = run_suite(
        reference, tmp_path, "--profile", "quick", "--api-key", API_KEY, "-n", "2"
    )
    assert status == 0, output[-4000:]
    assert outcomes(results, "fail") == set(), output[-4000:]
    assert outcomes(results, "error") == set(), output[-4000:]
    assert not outcomes(results, "skip") & {"STREAM-DONE-LAST", "AUTH-MISSING-KEY", "SEM-N-CHOICES"}
    assert results["seed"] == int(SEED)
    assert results["options"]["api_key"] == "***redacted***"
    html = (tmp_path / "report.html").read_text()
    assert "CONFORMANT" in html and API_KEY not in html
    assert (tmp_path / "junit.xml").exists() and (tmp_path / "summary.md").exists()


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
