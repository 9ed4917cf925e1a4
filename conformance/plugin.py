"""The pytest plugin that runs the conformance suite: ``pytest -p conformance.plugin``.

It adds the suite's options, finds (or starts) the target, probes it once before any test,
parametrizes the suite's tests by the operations each requirement applies to, keeps only the
requirements selected with ``--requirement`` / ``--skip-requirement``, records one result per
requirement and operation, merges the results of pytest-xdist workers (and what they saw of a
target that stopped answering), writes the reports and sets the exit status from the run record
(0 if and only if no MUST requirement failed or errored).

Every option has an environment variable with the same meaning (``--api-key`` →
``MIMIC_API_KEY``); the command line wins.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

import spec
from conformance import __version__
from conformance.outage import TargetDown
from conformance.profile import PROFILES, Settings
from conformance.report import write_reports
from conformance.requirements import select, unknown_patterns
from conformance.results import REDACTED, CaseResult, Outcome, RunRecord, utc_now
from conformance.suite._judgement import Judgement
from conformance.suite._operations import SELECTORS
from conformance.suite._run import FINALIZE, REQUIREMENTS, Run, set_active
from conformance.transport import probe

__all__ = ["NO_REFERENCE_MESSAGE", "OPTIONS", "ReferenceServer"]

NO_REFERENCE_MESSAGE = (
    "no --target given and the reference server is not installed: "
    "pip install 'mimic-conformance[reference]'"
)
DEFAULT_TIMEOUT = 60.0
LOG_TAIL_LINES = 20
"""Lines of the reference server's log a report shows when the server stopped answering."""
STARTUP_TIMEOUT = 180.0

# (option, environment variable, help)
OPTIONS: tuple[tuple[str, str, str], ...] = (
    (
        "--target",
        "MIMIC_TARGET",
        "base URL of the server to judge (default: start the reference server)",
    ),
    ("--api-key", "MIMIC_API_KEY", "a valid key for the target; enables the AUTH checks"),
    ("--seed", "MIMIC_SEED", "seed for every generated request (default: random, and recorded)"),
    ("--max-examples", "MIMIC_MAX_EXAMPLES", "schemathesis fuzzing cases per operation and mode"),
    (
        "--timeout",
        "MIMIC_TIMEOUT",
        f"seconds allowed for one request, body included (default {DEFAULT_TIMEOUT:g})",
    ),
    ("--report-dir", "MIMIC_REPORT_DIR", "where to write the reports (default reports/)"),
    ("--requirement", "MIMIC_REQUIREMENT", "judge only this requirement ID or glob (repeatable)"),
    (
        "--skip-requirement",
        "MIMIC_SKIP_REQUIREMENT",
        "do not judge this requirement ID or glob (repeatable)",
    ),
    ("--gate-should", "MIMIC_GATE_SHOULD", "fail the run on SHOULD requirements too"),
    ("--profile", "MIMIC_PROFILE", "quick (local, < 30 s), full (CI; the default) or thorough"),
    ("--spec", "MIMIC_SPEC", "the OpenAPI document to judge against (default: the kit's own)"),
)

_RUN = pytest.StashKey[Run]()
_STARTED = pytest.StashKey[str]()
_SERVER = pytest.StashKey["ReferenceServer"]()
_WORKER_CASES = pytest.StashKey[list[CaseResult]]()
_WORKER_LIVENESS = pytest.StashKey[list[dict[str, Any]]]()
_COLLECTION_ERRORS = pytest.StashKey[list[str]]()
_REPORT = pytest.StashKey[tuple[RunRecord, Path]]()
_ITEM_REPORTS = pytest.StashKey[list[pytest.TestReport]]()
_RECORD_DECIDES = (
    pytest.ExitCode.OK,
    pytest.ExitCode.TESTS_FAILED,
    pytest.ExitCode.NO_TESTS_COLLECTED,
)
_WORKERINPUT_KEY = "mimic_conformance"
_WORKEROUTPUT_KEY = "mimic_conformance_cases"
_WORKEROUTPUT_LIVENESS_KEY = "mimic_conformance_liveness"


# ------------------------------------------------------------------------------ options


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the suite's options (environment variables are read in `_settings`)."""
    group = parser.getgroup("mimic-conformance", "Mimic conformance suite")
    for option, env, help_text in OPTIONS:
        dest = "mimic_" + option.lstrip("-").replace("-", "_")
        kwargs: dict[str, Any] = {"dest": dest, "help": f"{help_text} [${env}]"}
        if option == "--gate-should":
            kwargs.update(action="store_true", default=None)
        elif option in ("--requirement", "--skip-requirement"):
            kwargs.update(action="append", default=None, metavar="ID")
        else:
            kwargs.update(default=None)
        names = [option]
        if option == "--timeout":
            names.append("--request-timeout")  # the same, for runs that load pytest-timeout
        try:
            group.addoption(*names, **kwargs)
        except ValueError:  # another plugin owns the name: keep only the alias
            group.addoption(*names[1:], **kwargs)


def _raw(config: pytest.Config, option: str, env: str) -> Any:
    value = config.getoption("mimic_" + option.lstrip("-").replace("-", "_"))
    if value is None or value == []:
        from_env = os.environ.get(env)
        if from_env not in (None, ""):
            return from_env
        return None
    return value


def _patterns(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(p.strip() for item in items for p in str(item).split(",") if p.strip())


def _number(value: Any, name: str, kind: type) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{name} must be a {kind.__name__}, not {value!r}") from None
    if kind is not int and number <= 0:
        raise pytest.UsageError(f"{name} must be positive, not {value!r}")
    return number


def _settings(config: pytest.Config) -> Settings:
    raw = {option: _raw(config, option, env) for option, env, _ in OPTIONS}
    profile_name = str(raw["--profile"] or "full")
    if profile_name not in PROFILES:
        raise pytest.UsageError(
            f"--profile must be one of {', '.join(PROFILES)}, not {profile_name!r}"
        )
    include, exclude = _patterns(raw["--requirement"]), _patterns(raw["--skip-requirement"])
    unknown = unknown_patterns(include + exclude)
    if unknown:
        raise pytest.UsageError(f"no requirement matches {', '.join(unknown)}")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        seed = json.loads(workerinput[_WORKERINPUT_KEY])["seed"]
    elif raw["--seed"] is not None:
        seed = _number(raw["--seed"], "--seed", int)
    else:
        seed = random.SystemRandom().randrange(2**32)
    max_examples = (
        None
        if raw["--max-examples"] is None
        else _number(raw["--max-examples"], "--max-examples", int)
    )
    if max_examples is not None and max_examples < 1:
        raise pytest.UsageError("--max-examples must be at least 1")
    gate = raw["--gate-should"]
    spec_path = Path(raw["--spec"]) if raw["--spec"] else spec.SPEC_PATH
    if not spec_path.is_file():
        raise pytest.UsageError(f"--spec {spec_path}: no such file")
    return Settings(
        target=str(raw["--target"]).rstrip("/") if raw["--target"] else None,
        api_key=str(raw["--api-key"]) if raw["--api-key"] else None,
        seed=seed,
        max_examples=max_examples,
        timeout=_number(raw["--timeout"], "--timeout", float)
        if raw["--timeout"]
        else DEFAULT_TIMEOUT,
        report_dir=Path(raw["--report-dir"] or "reports"),
        requirements=include,
        skip_requirements=exclude,
        gate_should=gate is True or str(gate).lower() in ("1", "true", "yes", "on"),
        profile=PROFILES[profile_name],
        spec_path=spec_path,
    )


# ------------------------------------------------------------------------------ the target


class ReferenceServer:
    """The kit's reference server, started on a free port when no target is given.

    ``command`` is how it is started (``--host`` and ``--port`` are added).
    """

    command: ClassVar[tuple[str, ...]] = (sys.executable, "-m", "reference.cli")

    def __init__(self, log_path: Path, api_key: str | None) -> None:
        self.log_path = log_path
        self.api_key = api_key
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    @staticmethod
    def installed() -> bool:
        """Whether the reference server and its inference engine can be imported."""
        try:
            return all(
                importlib.util.find_spec(name) is not None
                for name in ("reference.cli", "llama_cpp")
            )
        except (ImportError, ValueError):
            return False

    def start(self, timeout: float = STARTUP_TIMEOUT) -> str:
        """Start it and wait until it answers; return its base URL or raise RuntimeError."""
        port = _free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        env = dict(os.environ)
        env.pop("MIMIC_PORT", None)
        if self.api_key:
            env["MIMIC_API_KEYS"] = self.api_key
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*self.command, "--host", "127.0.0.1", "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the reference server exited with status {self.process.returncode}: "
                    f"{self._tail()}"
                )
            if self._ready():
                return self.base_url
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"the reference server did not answer within {timeout:g} s: {self._tail()}"
        )

    def _ready(self) -> bool:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        for path in ("/health", "/v1/models"):
            try:
                if httpx.get(self.base_url + path, timeout=1.0, headers=headers).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
        return False

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text("utf-8", "replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-3:]) or "(empty log)"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> tuple[str, ...]:
        """The last ``lines`` lines of its log (none if there is no log)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 64 * 1024))
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return ()
        return tuple(text.rstrip().splitlines()[-lines:])

    def exit_description(self, wait: float = 0.0) -> str | None:
        """How the process ended ("was killed by SIGILL (illegal instruction)"), or ``None``.

        ``None`` if it was never started; "is still running" if it has not ended within
        ``wait`` seconds.
        """
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout=wait) if wait else self.process.poll()
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            return "is still running"
        if code < 0:
            try:
                number = signal.Signals(-code)
            except ValueError:
                return f"was killed by signal {-code}"
            description = signal.strsignal(number) or "no description"
            return f"was killed by {number.name} ({description.lower()})"
        return f"exited with status {code}"

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 15 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------ configure


def pytest_configure(config: pytest.Config) -> None:
    """Resolve the settings, find or start the target, and create the run."""
    config.addinivalue_line(
        "markers",
        "requirement(*ids, applies_to='all'): the requirement(s) a conformance test judges, and "
        "which operations of the spec it is parametrized over",
    )
    settings = _settings(config)
    config.stash[_STARTED] = utc_now()
    config.stash[_WORKER_CASES] = []
    config.stash[_WORKER_LIVENESS] = []
    config.stash[_COLLECTION_ERRORS] = []
    _pending_collection_errors.clear()
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        target = json.loads(workerinput[_WORKERINPUT_KEY])["target"]
    elif settings.target:
        target = settings.target
    else:
        if not ReferenceServer.installed():
            raise pytest.UsageError(NO_REFERENCE_MESSAGE)
        server = ReferenceServer(settings.report_dir / "reference-server.log", settings.api_key)
        config.stash[_SERVER] = server
        try:
            target = server.start()
        except RuntimeError as error:
            target = server.base_url
            config.stash[_COLLECTION_ERRORS].append(
                f"could not start the reference server: {error}"
            )
    run = Run(settings, target)
    config.stash[_RUN] = run
    set_active(run)
    if workerinput is None:
        _probe_or_exit(config, run)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop what the run started."""
    run = config.stash.get(_RUN, None)
    if run is not None:
        run.close()
        set_active(None)
    server = config.stash.get(_SERVER, None)
    if server is not None:
        server.stop()


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(xdist) Hand the workers the target and the seed, so that all judge the same thing."""
    run = node.config.stash[_RUN]
    node.workerinput[_WORKERINPUT_KEY] = json.dumps(
        {"target": run.target, "seed": run.settings.seed}
    )


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """(xdist) Collect a finished worker's recorded cases and what it saw of the target."""
    workeroutput = getattr(node, "workeroutput", {})
    output = workeroutput.get(_WORKEROUTPUT_KEY)
    if output:
        cases = [CaseResult.from_dict(item) for item in json.loads(output)]
        node.config.stash[_WORKER_CASES].extend(cases)
    liveness = workeroutput.get(_WORKEROUTPUT_LIVENESS_KEY)
    if liveness:
        node.config.stash[_WORKER_LIVENESS].append(json.loads(liveness))


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _probe_or_exit(config: pytest.Config, run: Run) -> None:
    """Probe the target once; an unreachable or non-HTTP target ends the run at once.

    Done while configuring, before pytest starts its session, so that the run ends with one
    line ("Exit: ...") rather than a session's worth of output, and still writes its reports.
    """
    problems = list(config.stash[_COLLECTION_ERRORS])
    if not problems:
        timeout = min(run.settings.timeout, 10.0)
        result = probe(run.target, timeout=timeout, headers=run.transport.headers)
        if not result.answers_http:
            problems.append(result.message)
    if problems:
        message = f"the target cannot be judged: {problems[0]}"
        record = _record(config, extra_cases=[], error=message)
        write_reports(record, run.settings.report_dir)
        config.stash[_REPORT] = (record, run.settings.report_dir)
        server = config.stash.get(_SERVER, None)
        if server is not None:
            server.stop()
        status = record.exit_status(run.settings.gate_should)
        pytest.exit(f"mimic-conformance: {message}", returncode=status)


# ------------------------------------------------------------------------------ collection


def _selected_ids(run: Run) -> tuple[str, ...]:
    return tuple(r.id for r in select(run.settings.requirements, run.settings.skip_requirements))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize a conformance test by the operations its requirement applies to."""
    marker = metafunc.definition.get_closest_marker("requirement")
    if marker is None or "operation" not in metafunc.fixturenames:
        return
    run = metafunc.config.stash[_RUN]
    selector = marker.kwargs.get("applies_to", "all")
    operations = SELECTORS[selector](run.contract)
    if operations:
        metafunc.parametrize("operation", operations, ids=[op.label for op in operations])
    else:
        metafunc.parametrize("operation", [None], ids=["(no operation)"])


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Keep the tests of the selected requirements; remember which requirements each judges."""
    run = config.stash[_RUN]
    selected = set(_selected_ids(run))
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("requirement")
        if marker is None:
            kept.append(item)
            continue
        mine = tuple(rid for rid in marker.args if rid in selected)
        if mine:
            item.stash[REQUIREMENTS] = mine
            kept.append(item)
        else:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_collectreport(report: pytest.CollectReport) -> None:
    """Remember collection errors: the requirements they hide are errors, not skips."""
    if report.failed:
        text = str(report.longrepr).strip().splitlines()
        line = text[-1] if text else "collection failed"
        _pending_collection_errors.append(f"{report.nodeid}: {line}")


_pending_collection_errors: list[str] = []


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def conformance(pytestconfig: pytest.Config) -> Run:
    """The current run: settings, contract, transport to the target, and recording."""
    return pytestconfig.stash[_RUN]


@pytest.fixture
def judgement(request: pytest.FixtureRequest, conformance: Run) -> Judgement:
    """The verdict-in-progress of this test's one requirement on its operation."""
    requirements = request.node.stash.get(REQUIREMENTS, ())
    if len(requirements) != 1:
        raise RuntimeError(
            f"{request.node.nodeid} must judge exactly one requirement, not {requirements}"
        )
    return Judgement(conformance, requirements[0], _operation_label(request.node))


def _operation_label(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "operation" in callspec.params:
        operation = callspec.params["operation"]
        return operation.label if operation is not None else "(no operation)"
    name = item.name
    return name[name.index("[") + 1 : -1] if "[" in name else name


# ------------------------------------------------------------------------------ recording


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Conclude an item's tally (the schemathesis tests) when its call ends."""
    try:
        yield
    except BaseException as error:
        finalize = item.stash.get(FINALIZE, None)
        if finalize is not None and not isinstance(error, pytest.skip.Exception):
            finalize()  # record what the cases showed before the error surfaces
        raise
    finalize = item.stash.get(FINALIZE, None)
    if finalize is not None:
        lines = finalize()
        if lines:
            pytest.fail("\n".join(lines), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report, to record an error for a test that broke without recording."""
    report = yield
    item.stash.setdefault(_ITEM_REPORTS, []).append(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """After an item: any requirement it should have judged but did not is an error (or skip)."""
    run = item.config.stash[_RUN]
    before = len(run.cases)
    try:
        return (yield)
    finally:
        requirements = item.stash.get(REQUIREMENTS, ())
        recorded = {case.requirement_id for case in run.cases[before:]}
        missing = [rid for rid in requirements if rid not in recorded]
        if missing:
            outcome, reason = _fallback(item.stash.get(_ITEM_REPORTS, []))
            for rid in missing:
                run.record(rid, _operation_label(item), outcome, reason=reason)


def _fallback(reports: list[pytest.TestReport]) -> tuple[Outcome, str]:
    for report in reports:
        if report.failed:
            text = str(report.longrepr).strip().splitlines()
            detail = text[-1] if text else "unknown error"
            return Outcome.ERROR, f"the test broke during {report.when}: {detail[:500]}"
    for report in reports:
        if report.skipped:
            longrepr = report.longrepr
            reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
            return Outcome.SKIP, str(reason)
    return Outcome.ERROR, "the test ended without recording a result"


# ------------------------------------------------------------------------------ finishing


def _record(
    config: pytest.Config, extra_cases: list[CaseResult], error: str | None = None
) -> RunRecord:
    run = config.stash[_RUN]
    settings = run.settings
    requirements = list(select(settings.requirements, settings.skip_requirements))
    cases = [*run.cases, *extra_cases]
    judged = {case.requirement_id for case in cases}
    collection_errors = config.stash[_COLLECTION_ERRORS] + _pending_collection_errors
    for requirement in requirements:
        if requirement.id in judged:
            continue
        if error is not None:
            cases.append(CaseResult(requirement.id, "(target)", Outcome.ERROR, reason=error))
        elif collection_errors:
            reason = f"its tests could not be collected: {collection_errors[0]}"
            cases.append(CaseResult(requirement.id, "(suite)", Outcome.ERROR, reason=reason))
        else:
            cases.append(
                CaseResult(
                    requirement.id, "(suite)", Outcome.SKIP, reason="no test of the run judged it"
                )
            )
    options = settings.to_options()
    options["profile_settings"] = settings.profile.to_dict()
    merged = _merge(cases)
    return RunRecord(
        target=run.target,
        spec_title=run.contract.title,
        spec_version=run.contract.version,
        spec_sha256=spec.sha256(settings.spec_path),
        kit_version=__version__,
        seed=settings.seed,
        started_at=config.stash[_STARTED],
        finished_at=utc_now(),
        options=options,
        requirements=requirements,
        cases=merged,
        target_down=_target_down(config, merged),
    )


def _liveness_report(run: Run) -> dict[str, Any]:
    """What one process's run saw of the target: handed from xdist workers to the controller."""
    down = run.target_down()
    return {
        "answered": run.liveness.answered,
        "target_down": None if down is None else down.to_dict(),
        "not_run": sorted(run.cases_not_run()),
    }


def _target_down(config: pytest.Config, cases: list[CaseResult]) -> TargetDown | None:
    """The run's outage: the first one any process saw, counted over the merged cases.

    The checks that could not run are the merged cases still in error whose
    (requirement, operation) some process recorded in error once the target was down.
    """
    reports = [_liveness_report(config.stash[_RUN]), *config.stash[_WORKER_LIVENESS]]
    downs = [TargetDown.from_dict(r["target_down"]) for r in reports if r["target_down"]]
    if not downs:
        return None
    first = min(downs, key=lambda down: down.since)
    not_run = {tuple(key) for report in reports for key in report["not_run"]}
    checks = sum(
        1
        for case in cases
        if case.outcome is Outcome.ERROR and (case.requirement_id, case.operation) in not_run
    )
    down = dataclasses.replace(
        first,
        requests_answered=sum(int(report["answered"]) for report in reports),
        checks_not_run=checks,
    )
    server = config.stash.get(_SERVER, None)
    if server is not None:
        secret = config.stash[_RUN].settings.api_key
        down = dataclasses.replace(
            down,
            server_exit=server.exit_description(wait=1.0),
            server_log_tail=tuple(
                line.replace(secret, REDACTED) if secret else line for line in server.log_tail()
            ),
        )
    return down


def _merge(cases: list[CaseResult]) -> list[CaseResult]:
    """One case per (requirement, operation): a test run on two workers, or two modes, merged."""
    merged: dict[tuple[str, str], CaseResult] = {}
    order = (Outcome.FAIL, Outcome.ERROR, Outcome.PASS, Outcome.SKIP)
    for case in cases:
        key = (case.requirement_id, case.operation)
        current = merged.get(key)
        if current is None:
            merged[key] = case
            continue
        worst = min(current, case, key=lambda c: order.index(c.outcome))
        merged[key] = CaseResult(
            worst.requirement_id,
            worst.operation,
            worst.outcome,
            worst.evidence,
            worst.reason,
            current.duration + case.duration,
        )
    return list(merged.values())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Workers hand their cases over; the controller writes the reports and sets the exit status."""
    config = session.config
    run = config.stash.get(_RUN, None)
    if run is None or _REPORT in config.stash:
        return
    if _is_worker(config):
        cases = json.dumps([case.to_dict() for case in run.cases])
        config.workeroutput[_WORKEROUTPUT_KEY] = cases  # type: ignore[attr-defined]
        liveness = json.dumps(_liveness_report(run))
        config.workeroutput[_WORKEROUTPUT_LIVENESS_KEY] = liveness  # type: ignore[attr-defined]
        return
    record = _record(config, config.stash[_WORKER_CASES])
    write_reports(record, run.settings.report_dir)
    config.stash[_REPORT] = (record, run.settings.report_dir)
    # pytest's own verdict (items failed, none collected) gives way to the record's; an
    # interrupted run, an internal or a usage error keeps pytest's non-zero status.
    if int(session.exitstatus) in _RECORD_DECIDES:
        session.exitstatus = record.exit_status(run.settings.gate_should)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the verdict, the counts and where the reports are."""
    report = config.stash.get(_REPORT, None)
    if report is None:
        return
    record, directory = report
    summary = record.summary()
    counts = ", ".join(f"{summary.requirements.get(o, 0)} {o}" for o in Outcome)

    def percent(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1f}%"

    writer = terminalreporter
    writer.section("Mimic conformance", sep="=", bold=True)
    writer.line(
        str(record.verdict(record.gate_should)),
        red=not record.verdict().conformant,
        green=record.verdict().conformant,
    )
    writer.line(
        f"requirements: {counts}; MUST {percent(summary.must.percent)}, "
        f"SHOULD {percent(summary.should.percent)}"
    )
    down = record.target_down
    if down is not None:
        if down.last_answered:
            writer.line(f"last request it answered ({down.last_answered_at}): {down.last_answered}")
        if down.first_failed:
            writer.line(f"first request it did not answer: {down.first_failed}")
        if down.server_log_tail:
            writer.line("the reference server's log ended with:")
            for line in down.server_log_tail:
                writer.line(f"  {line}")
    writer.line(f"target {record.target}, seed {record.seed}")
    writer.line(f"report: {directory / 'report.html'} (and results.json, junit.xml, summary.md)")
