"""The OpenAI-compatible contract, proven on the real reference server in both of its modes.

In its OpenAI mode (``--contract openai``) the reference must conform to the OpenAI contract;
in its Mimic mode it must fail it exactly where the contracts differ (a 422 is not OpenAI's
400, a Mimic error body not OpenAI's envelope). A proxy that drops ``error.param`` from the
OpenAI mode's 400s must fail the rules that ask the answer to name the field at fault, and
only those: each contract-read expectation can fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.broken.faults import API_KEY
from tests.conformance.broken.proxy import Fault, ProxyRequest, ProxyResponse, fault_proxy
from tests.conformance.broken.reference import reference_server
from tests.conformance.test_broken_servers import outcomes, run_suite

pytestmark = pytest.mark.model

NOT_APPLICABLE = {"ERR-PATH-MODEL", "SEM-PATH-MODEL", "SEM-MODELS-SCOPED", "SEM-COMPLETION-TEXT"}
NAMES_THE_FIELD = {"ERR-MISSING-FIELD", "ERR-WRONG-TYPE", "ERR-OUT-OF-RANGE"}


@pytest.fixture(scope="module")
def openai_reference() -> Iterator[str]:
    """The reference server in its OpenAI mode, requiring API_KEY."""
    with reference_server(api_key=API_KEY, contract="openai") as base_url:
        yield base_url


def test_the_reference_in_openai_mode_conforms(openai_reference: str, tmp_path: Path) -> None:
    status, results, output, _ = run_suite(
        openai_reference, tmp_path, "--contract", "openai", "--profile", "quick",
        "--api-key", API_KEY,
    )  # fmt: skip
    assert status == 0, output[-4000:]
    assert outcomes(results, "fail") == set(), output[-4000:]
    assert outcomes(results, "error") == set(), output[-4000:]
    assert outcomes(results, "not-applicable") == NOT_APPLICABLE
    assert not outcomes(results, "skip") & {"AUTH-MISSING-KEY", "STREAM-DONE-LAST"}
    assert results["spec"]["contract"] == "openai"
    assert "OpenAI-compatible conformance report" in (tmp_path / "report.html").read_text()


def test_a_mimic_server_fails_the_openai_contract_where_they_differ(tmp_path: Path) -> None:
    differ = ("ERR-MALFORMED-JSON", "ERR-MISSING-FIELD", "ERR-BODY-SHAPE")
    with reference_server(api_key=API_KEY) as mimic:
        status, results, output, _ = run_suite(
            mimic, tmp_path, "--contract", "openai", "--profile", "quick", "--api-key", API_KEY,
            *(arg for rid in differ for arg in ("--requirement", rid)),
        )  # fmt: skip
    assert status == 1, output[-3000:]
    assert outcomes(results, "fail") == set(differ), output[-3000:]


def _no_param(request: ProxyRequest, response: ProxyResponse) -> ProxyResponse:
    body = response.json()
    if response.status == 400 and isinstance(body, dict) and isinstance(body.get("error"), dict):
        return response.with_json({"error": {**body["error"], "param": None}})
    return response


def test_a_400_that_does_not_name_the_field_fails(openai_reference: str, tmp_path: Path) -> None:
    with fault_proxy(openai_reference, Fault(on_response=_no_param)) as target:
        status, results, output, _ = run_suite(
            target, tmp_path, "--contract", "openai", "--profile", "quick", "--api-key", API_KEY,
            "--requirement", "ERR-*",
        )  # fmt: skip
    assert status == 1, output[-3000:]
    assert outcomes(results, "fail") == NAMES_THE_FIELD, output[-3000:]
    assert "ERR-MALFORMED-JSON" in outcomes(results, "pass")
