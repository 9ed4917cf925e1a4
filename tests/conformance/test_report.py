from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

import spec
from conformance.exchange import Exchange, RequestSpec, StreamResult, TransportFailure
from conformance.outage import TargetDown
from conformance.report import (
    read_json,
    render_from_json,
    render_html,
    render_junit,
    render_markdown,
    write_reports,
)
from conformance.results import (
    CaseResult,
    Evidence,
    Level,
    Outcome,
    Requirement,
    RunRecord,
)
from conformance.sse import parse

SECRET = "sk-live-0123456789abcdef"
CHAT = "POST /v1/chat/completions"
CHAT_MODEL = "POST /{model}/v1/chat/completions"
COMPLETIONS = "POST /v1/completions"
MODELS = "GET /v1/models"
BASE = "http://127.0.0.1:8000"

REQUIREMENTS = [
    Requirement(
        "STREAM-DONE-LAST",
        Level.MUST,
        "The last event of a stream is `data: [DONE]`, and nothing follows it.",
        "spec:#/components/schemas/DoneSentinel; verdicts:#streams-are-read-event-by-event",
    ),
    Requirement(
        "STREAM-FRAMING",
        Level.MUST,
        "Each event is exactly `data: <one JSON object>` followed by a blank line.",
        "verdicts:#event-stream-parsing",
    ),
    Requirement(
        "ERROR-422-SHAPE",
        Level.MUST,
        'A request that does not match the spec is answered 422 with a FastAPI "detail" list.',
        "spec: components/schemas/HTTPValidationError; seed: 422 responses",
    ),
    Requirement(
        "USAGE-TOTAL",
        Level.MUST,
        "usage.total_tokens equals usage.prompt_tokens + usage.completion_tokens.",
        "spec: components/schemas/Usage",
    ),
    Requirement(
        "MODELS-LIST-SHAPE",
        Level.MUST,
        "GET /v1/models answers an OpenAI-style list of model objects.",
        "spec: components/schemas/ModelList",
    ),
    Requirement(
        "AUTH-BEARER",
        Level.MUST,
        "A request carrying a known key as `Authorization: Bearer <key>` is served.",
        "spec:#/components/securitySchemes; spec:#/info/description (Authentication)",
    ),
    Requirement(
        "STREAM-PING-COMMENTS",
        Level.SHOULD,
        "A stream that pauses for long sends `: ping` comments rather than nothing.",
        "spec:#/components/responses/ChatCompletion/content/text~1event-stream/x-mimic-decision "
        "(comment lines)",
    ),
    Requirement(
        "ERROR-405-ALLOW",
        Level.SHOULD,
        "A 405 answer carries an Allow header listing the path's methods.",
        "spec:#/components/responses/MethodNotAllowed; spec:#/components/responses/Gone",
    ),
]


def _stream_failure() -> Evidence:
    body = (
        b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","choices":[{"index":0,'
        b'"delta":{"role":"assistant"},"finish_reason":null}]}\n\n'
        b'data: {"id":"chatcmpl-9","object":"chat.completion.chunk","choices":[{"index":0,'
        b'"delta":{"content":"Hello"},"finish_reason":null}]}\n\n'
        b"event: done\ndata: <script>alert(1)</script>\n\n"
        b'data: {"id":"chatcmpl-9","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}\n'
    )
    events, deviations = parse(body)
    events = [
        type(event)(**{**event.to_dict(), "received_at": 0.05 * event.number}) for event in events
    ]
    request = RequestSpec.json(
        "POST",
        BASE + "/v1/chat/completions",
        {
            "model": "mythomax",
            "messages": [{"role": "user", "content": "Say hello"}],
            "max_tokens": 8,
            "stream": True,
        },
        headers={"Authorization": f"Bearer {SECRET}"},
    )
    exchange = Exchange(
        request=request,
        status=200,
        headers=[("content-type", "text/event-stream"), ("x-request-id", "7f3a")],
        body=body,
        elapsed=0.4213,
    )
    result = StreamResult(exchange, events, deviations, "eof", True)
    return Evidence.from_stream(
        CHAT,
        "The stream ended without `data: [DONE]`: the last of 3 events was "
        "event 3 `<script>alert(1)</script>`.",
        result,
        secrets=[SECRET],
        extra={"seed": 1234, "example": "hypothesis falsifying example #1"},
    )


def _json_failure(status: int, body: bytes, message: str, operation: str) -> Evidence:
    request = RequestSpec.json(
        "POST", BASE + "/v1/completions", {"model": "mythomax", "prompt": "x", "top_p": 7}
    )
    exchange = Exchange(
        request=request,
        status=status,
        headers=[("Content-Type", "text/html; charset=utf-8")],
        body=body,
        elapsed=0.0123,
    )
    return Evidence.from_exchange(operation, message, exchange, secrets=[SECRET])


def sample_record() -> RunRecord:
    """A run with every outcome, a streaming failure, hostile bodies, and secret options."""
    record = RunRecord(
        target=BASE,
        spec_title="Mimic API",
        spec_version="1.0.0",
        spec_sha256="9f2c" + "0" * 60,
        kit_version="0.1.0",
        seed=1234,
        started_at="2026-11-25T18:00:00.000Z",
        finished_at="2026-11-25T18:00:42.512Z",
        options={
            "api_key": SECRET,
            "max_tokens": 16,
            "timeout": 10.0,
            "gate_should": False,
            "headers": {"X-Api-Key": SECRET, "Accept": "application/json"},
            "proxy": "http://user:hunter2@proxy.local:3128",
        },
        requirements=list(REQUIREMENTS),
    )
    stream_evidence = _stream_failure()
    record.add_case(CaseResult("STREAM-DONE-LAST", CHAT, Outcome.FAIL, stream_evidence, None, 0.42))
    record.add_case(CaseResult("STREAM-DONE-LAST", CHAT_MODEL, Outcome.PASS, duration=0.31))
    record.add_case(CaseResult("STREAM-FRAMING", CHAT, Outcome.FAIL, stream_evidence, None, 0.42))
    record.add_case(CaseResult("STREAM-FRAMING", CHAT_MODEL, Outcome.PASS, duration=0.3))
    html_page = b"<html><body><h1>Internal Server Error</h1><script>alert(1)</script>\x00\x1b[0m"
    record.add_case(
        CaseResult(
            "ERROR-422-SHAPE",
            COMPLETIONS,
            Outcome.FAIL,
            _json_failure(
                500, html_page, "top_p=7 was answered 500 with an HTML page.", COMPLETIONS
            ),
            duration=0.02,
        )
    )
    record.add_case(CaseResult("ERROR-422-SHAPE", CHAT, Outcome.PASS, duration=0.02))
    record.add_case(CaseResult("USAGE-TOTAL", CHAT, Outcome.PASS, duration=0.5))
    record.add_case(CaseResult("USAGE-TOTAL", COMPLETIONS, Outcome.PASS, duration=0.5))
    timeout_exchange = Exchange(
        request=RequestSpec("GET", BASE + "/v1/models"),
        failure=TransportFailure("timeout", "no complete response within 10 s"),
        elapsed=10.0,
    )
    record.add_case(
        CaseResult(
            "MODELS-LIST-SHAPE",
            MODELS,
            Outcome.ERROR,
            Evidence.from_exchange(MODELS, "GET /v1/models got no answer.", timeout_exchange),
            "the target did not answer within 10 s",
            10.0,
        )
    )
    record.add_case(CaseResult("AUTH-BEARER", CHAT, Outcome.SKIP, reason="no --api-key was given"))
    record.add_case(
        CaseResult(
            "ERROR-405-ALLOW",
            MODELS,
            Outcome.FAIL,
            _json_failure(405, b'{"error": "no"}', "The 405 answer has no Allow header.", MODELS),
            duration=0.01,
        )
    )
    return record


class _StrictHTMLChecker(HTMLParser):
    """Checks that every non-void element is closed in order; collects text and tags."""

    VOID = frozenset({"meta", "br", "link", "img", "hr", "input", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _check_html(page: str) -> _StrictHTMLChecker:
    checker = _StrictHTMLChecker()
    checker.feed(page)
    checker.close()
    assert checker.errors == []
    assert checker.stack == []
    return checker


def test_html_is_well_formed_self_contained_and_has_no_script() -> None:
    page = render_html(sample_record())
    checker = _check_html(page)
    assert "script" not in checker.tags
    assert "<script" not in page.lower()
    assert "src=" not in page and "<link" not in page
    assert "http-equiv" not in page


def test_html_escapes_what_the_target_sent() -> None:
    page = render_html(sample_record())
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Control characters (an ESC would reach a terminal browser's terminal) are shown escaped.
    assert not re.search("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", page)
    assert "\\x00\\x1b[0m" in page
    text = "".join(_check_html(page).text)
    assert "<script>alert(1)</script>" in text  # shown to the reader, as text


def test_html_shows_verdict_counts_metadata_and_matrix() -> None:
    record = sample_record()
    page = render_html(record)
    text = " ".join("".join(_check_html(page).text).split())
    assert "NOT CONFORMANT" in text
    assert "20.0 %" in text  # MUST: 1 passed, 3 failed, 1 errored (the skip is left out)
    assert record.spec_sha256 in text
    assert "1234" in text
    for requirement in REQUIREMENTS:
        assert requirement.id in text
        assert requirement.statement in text
    assert 'id="matrix"' in page
    assert page.count('<th class="op">') == len(record.operations())


def test_html_links_each_source_to_its_place_in_the_sources_appendix() -> None:
    record = sample_record()
    page = render_html(record)
    _check_html(page)
    ids = set(re.findall(r'id="([^"]+)"', page))
    links = re.findall(r'<a href="#(source-[0-9]+)">([^<]*)</a>', page)
    assert links and {anchor for anchor, _ in links} <= ids
    texts = {html.unescape(text) for _, text in links}
    assert {"verdicts:#event-stream-parsing", "spec:#/info/description (Authentication)"} <= texts
    appendix = page[page.index('<h2 id="sources">') :]
    assert appendix.count('<section id="source-') == 8  # one per place cited, whatever its note
    assert "bearerAuth:" in appendix  # a spec node, as YAML
    assert "WHATWG HTML" in appendix  # a section of VERDICTS.md
    assert "Not found in the kit" in appendix and "/components/responses/Gone" in appendix
    # Free text (a record from an older kit) is shown, not linked.
    assert "seed: 422 responses" in page and "spec: components/schemas/Usage" in page
    assert "may differ" in appendix  # the run's spec is not the kit's
    record.spec_sha256 = spec.sha256()
    assert "may differ" not in render_html(record)


def test_html_expands_each_failure_with_curl_and_numbered_events() -> None:
    record = sample_record()
    page = render_html(record)
    for case in record.cases:
        if case.outcome in (Outcome.FAIL, Outcome.ERROR):
            assert case.evidence is not None and case.evidence.curl
            assert _escaped(case.evidence.curl) in page
    assert page.count('<details class="case fail"') == 4
    assert page.count(" open>") == 4  # failures open, errors folded
    assert "Events received (3)" in page
    for number in (1, 2, 3):
        assert f'<td class="n mono">{number}</td>' in page
    assert "0.150 s" in page  # event 3's arrival time
    assert "unterminated-event" in page and "event-field" in page


def test_html_never_shows_the_secret() -> None:
    record = sample_record()
    assert SECRET not in render_html(record)
    assert SECRET not in record.to_json()
    assert "$MIMIC_API_KEY" in render_html(record)


def test_html_notes_truncated_evidence() -> None:
    record = sample_record()
    huge = Exchange(
        request=RequestSpec("GET", BASE + "/v1/models"),
        status=200,
        headers=[("content-type", "application/json")],
        body=b"x" * 100_000,
        truncated=True,
        elapsed=1.0,
        failure=TransportFailure("too-large", "the body passed the 100000 byte cap"),
    )
    record.add_case(
        CaseResult(
            "MODELS-LIST-SHAPE",
            MODELS,
            Outcome.FAIL,
            Evidence.from_exchange(MODELS, "Way too large.", huge),
        )
    )
    page = render_html(record)
    assert "truncated: the first 4096 bytes of 97.7 KiB shown" in page
    assert "stopped reading this body at its size cap" in page


def _escaped(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace("'", "&#39;")
        .replace('"', "&#34;")
    )


def test_junit_parses_and_counts_each_case() -> None:
    record = sample_record()
    root = ET.fromstring(render_junit(record))
    suites = root.findall("testsuite")
    assert len(suites) == 1
    suite = suites[0]
    cases = suite.findall("testcase")
    # One per case, plus one for STREAM-PING-COMMENTS, which has none.
    assert len(cases) == len(record.cases) + 1 == 12
    assert suite.get("tests") == "12"
    assert suite.get("failures") == "4"
    assert suite.get("errors") == "1"
    assert suite.get("skipped") == "2"
    assert len(suite.findall("testcase/failure")) == 4
    assert len(suite.findall("testcase/error")) == 1
    assert len(suite.findall("testcase/skipped")) == 2
    names = {(case.get("classname"), case.get("name")) for case in cases}
    assert ("STREAM-DONE-LAST", f"[MUST] {CHAT}") in names
    assert ("ERROR-405-ALLOW", f"[SHOULD] {MODELS}") in names


def test_junit_failure_carries_message_curl_and_level() -> None:
    root = ET.fromstring(render_junit(sample_record()))
    case = next(
        case for case in root.iter("testcase") if case.get("classname") == "ERROR-405-ALLOW"
    )
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith("[SHOULD] The 405 answer has no Allow header.")
    assert "curl -sS -X POST" in (failure.text or "")
    levels = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert levels["level"] == "SHOULD"


def test_junit_survives_control_characters_in_bodies() -> None:
    record = sample_record()
    record.add_case(
        CaseResult(
            "USAGE-TOTAL",
            MODELS,
            Outcome.ERROR,
            reason="the server sent \x00\x07\x1b[31m and \ufffe",
        )
    )
    root = ET.fromstring(render_junit(record))
    error = next(
        case.find("error")
        for case in root.iter("testcase")
        if case.get("classname") == "USAGE-TOTAL" and case.find("error") is not None
    )
    assert error is not None
    assert "\\x00\\x07\\x1b[31m" in error.get("message", "")


def test_junit_lists_a_requirement_without_cases_as_skipped() -> None:
    record = sample_record()
    record.add_requirement(Requirement("NEVER-RUN", Level.MUST, "Nothing runs this.", "test"))
    root = ET.fromstring(render_junit(record))
    case = next(case for case in root.iter("testcase") if case.get("classname") == "NEVER-RUN")
    assert case.find("skipped") is not None


def test_markdown_summary() -> None:
    text = render_markdown(sample_record(), html_path="reports/report.html")
    assert text.startswith("## ❌ Mimic conformance: NOT CONFORMANT")
    assert "| MUST | 1 | 3 | 1 | 1 | 0 | 20.0 % |" in text
    assert "| SHOULD | 0 | 1 | 0 | 1 | 0 | 0.0 % |" in text
    assert "**STREAM-DONE-LAST** (MUST, fail) The last event" in text
    assert "**MODELS-LIST-SHAPE** (MUST, error)" in text
    assert "\\<script\\>" in text
    assert "Full report: `reports/report.html`" in text
    assert "<script>" not in text and SECRET not in text


def _went_down(record: RunRecord) -> RunRecord:
    record.target_down = TargetDown(
        since="2026-11-25T18:00:30.000Z",
        cause="3 requests in a row could not connect",
        first_failure="could not connect: [Errno 111] Connection refused",
        last_answered=f"curl -sS {BASE}/v1/models -H 'X: ```<b>'",
        last_answered_at="2026-11-25T18:00:29.900Z",
        first_failed=f"curl -sS -X POST {BASE}/v1/completions",
        requests_answered=49,
        checks_not_run=42,
        server_exit="was killed by SIGILL (illegal instruction)",
        server_log_tail=("loading model", "<script>alert(1)</script>", "\x1b[31mIllegal"),
    )
    return record


def test_every_report_says_once_that_the_target_went_down() -> None:
    record = _went_down(sample_record())
    markdown = render_markdown(record)
    html = render_html(record)
    for text in (markdown, html, render_junit(record), record.to_json()):
        assert text.count("The target stopped answering at 2026-11-25T18:00:30.000Z") == 1
        assert "42 checks could not run" in text and "killed by SIGILL" in text
    # The details: the last request answered, the first that was not, the server's log.
    assert "\n````sh\ncurl -sS http://127.0.0.1:8000/v1/models -H 'X: ```<b>'\n````\n" in markdown
    assert "curl -sS -X POST http://127.0.0.1:8000/v1/completions" in markdown
    assert "\\x1b[31mIllegal" in markdown and "\x1b" not in markdown
    assert '<div class="down" id="target-down">' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert "\x1b" not in html
    assert "curl -sS -X POST http://127.0.0.1:8000/v1/completions" in html
    assert "stopped answering" not in render_markdown(sample_record())
    assert 'id="target-down"' not in render_html(sample_record())


def test_write_reports_writes_all_four_and_json_is_canonical(tmp_path: Path) -> None:
    record = sample_record()
    paths = write_reports(record, tmp_path / "reports")
    for path in (paths.json, paths.html, paths.junit, paths.markdown):
        assert path.is_file() and path.stat().st_size > 0
    document = json.loads(paths.json.read_text(encoding="utf-8"))
    assert document["format"] == "mimic-conformance-results"
    assert document["exit_status"] == 1
    assert read_json(paths.json).to_dict() == record.to_dict()
    assert paths.html.read_text(encoding="utf-8") == render_html(record)


def test_render_from_json_reproduces_the_reports(tmp_path: Path) -> None:
    first = write_reports(sample_record(), tmp_path / "first")
    second = render_from_json(first.json, tmp_path / "second")
    assert second.json == first.json
    assert first.junit.read_bytes() == second.junit.read_bytes()
    markdown = second.markdown.read_text(encoding="utf-8")
    assert f"`{second.html.as_posix()}`" in markdown
    assert markdown.replace("/second/", "/first/") == first.markdown.read_text(encoding="utf-8")
    assert "NOT CONFORMANT" in second.html.read_text(encoding="utf-8")
    assert f'href="{first.json.as_posix()}"' in second.html.read_text(encoding="utf-8")


def test_render_from_json_rejects_other_documents(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text('{"format": "something-else"}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a mimic-conformance-results document"):
        render_from_json(path)


def _timed_record() -> RunRecord:
    record = sample_record()
    record.add_case(
        CaseResult(
            "STREAM-FRAMING",
            COMPLETIONS,
            Outcome.PASS,
            duration=0.4,
            measurements={
                "ttft_s": 0.0421,
                "itl_median_s": 0.0102,
                "itl_p90_s": 0.0153,
                "tokens_per_s": 97.61,
                "content_events": 32,
            },
        )
    )
    return record


def test_stream_timings_are_shown_beside_the_verdicts() -> None:
    page = render_html(_timed_record())
    assert 'id="timings"' in page and "Stream timings" in page
    for shown in ("time to first token", "42 ms", "10 ms", "15 ms", "97.6", ">32<"):
        assert shown in page, shown
    summary = render_markdown(_timed_record())
    assert "### Stream timings" in summary
    assert "| POST /v1/completions | 42 ms | 10 ms | 15 ms | 97.6 | 32 |" in summary


def test_no_timings_section_without_measurements() -> None:
    assert 'id="timings"' not in render_html(sample_record())
    assert "Stream timings" not in render_markdown(sample_record())
