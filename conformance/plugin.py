"""The pytest plugin that runs the conformance suite: ``pytest -p conformance.plugin``.

It adds the suite's options, finds (or starts) the target, probes it once before any test,
parametrizes the suite's tests by the operations each requirement applies to, keeps only the
requirements selected with ``--requirement`` / ``--skip-requirement``, records one result per
requirement and operation, merges the results of pytest-xdist workers (and what they saw of a
target that stopped answering), writes the reports and sets the exit status from the run record
(0 if and only if no MUST requirement failed or errored).

This module holds the hooks and fixtures and wires them to the module that does each job:

- :mod:`conformance._options`: the options, their environment variables, the settings;
- :mod:`conformance._reference_process`: the reference server, when there is no ``--target``;
- :mod:`conformance._xdist`: what the controller hands its workers and they hand back;
- :mod:`conformance._recording`: a case for each requirement a test broke or skipped without
  judging, and the collection errors;
- :mod:`conformance._final_report`: the run record, and the verdict in the terminal.

The run's state (:class:`RunState`) lives on the pytest config, in ``config.stash``.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import spec
from conformance._final_report import build_record, write_run_baseline, write_terminal_summary
from conformance._options import OPTIONS, add_options, read_settings
from conformance._recording import (
    NO_OPERATION,
    CollectionErrors,
    keep_report,
    operation_label,
    record_unjudged,
)
from conformance._reference_process import NO_REFERENCE_MESSAGE, ReferenceServer
from conformance._xdist import WorkerResults, hand_back, hand_over, handed_over, is_worker
from conformance.report import write_reports
from conformance.requirements import is_hostile
from conformance.results import Outcome, RunRecord, utc_now
from conformance.suite._judgement import Judgement
from conformance.suite._operations import SELECTORS
from conformance.suite._run import FINALIZE, REQUIREMENTS, Run
from conformance.suite._schemathesis import SCHEMATHESIS_MARK, parametrize
from conformance.transport import probe

__all__ = ["NO_REFERENCE_MESSAGE", "OPTIONS", "ReferenceServer", "RunState", "run_state"]

_RECORD_DECIDES = (
    pytest.ExitCode.OK,
    pytest.ExitCode.TESTS_FAILED,
    pytest.ExitCode.NO_TESTS_COLLECTED,
)
_COLLECTION_ERRORS_PLUGIN = "mimic-conformance-collection-errors"
_REQUIREMENT_MARK = "requirement"


@dataclass
class RunState:
    """What this pytest process knows of the run, kept on its config (see :func:`run_state`)."""

    run: Run
    started_at: str
    server: ReferenceServer | None = None
    """The reference server this run started, if it started one."""
    problems: list[str] = field(default_factory=list)
    """Why tests could not run: the reference server did not start, collection errors."""
    workers: WorkerResults = field(default_factory=WorkerResults)
    """What the pytest-xdist workers handed back (on the controller)."""
    report: tuple[RunRecord, Path] | None = None
    """The run record and where its reports are, once written."""


_STATE = pytest.StashKey[RunState]()


def run_state(config: pytest.Config) -> RunState:
    """The state of the run that ``config`` belongs to."""
    return config.stash[_STATE]


# ------------------------------------------------------------------------------ options


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the suite's options (environment variables are read when configuring)."""
    add_options(parser)


# ------------------------------------------------------------------------------ configure


def pytest_configure(config: pytest.Config) -> None:
    """Resolve the settings, find or start the target, and create the run."""
    config.addinivalue_line(
        "markers",
        "requirement(*ids, applies_to='all'): the requirement(s) a conformance test judges, and "
        "which operations of the spec it is parametrized over",
    )
    config.addinivalue_line(
        "markers",
        f"{SCHEMATHESIS_MARK}(mode): a test of schemathesis's cases in mode 'positive' or "
        "'negative', parametrized over every operation with the run's schema",
    )
    handover = handed_over(config)
    settings = read_settings(config, seed=None if handover is None else handover.seed)
    started_at = utc_now()
    problems: list[str] = []
    server: ReferenceServer | None = None
    if handover is not None:
        target = handover.target
    elif settings.target:
        target = settings.target
    else:
        if not ReferenceServer.installed():
            raise pytest.UsageError(NO_REFERENCE_MESSAGE)
        served = next(
            (name for name, path in spec.CONTRACTS.items() if path == settings.spec_path), None
        )
        server = ReferenceServer(
            settings.report_dir / "reference-server.log", settings.api_key, contract=served
        )
        try:
            target = server.start()
        except RuntimeError as error:
            target = server.base_url
            problems.append(f"could not start the reference server: {error}")
    try:
        run = Run(settings, target)
    except BaseException:
        if server is not None:
            server.stop()
        raise
    state = RunState(run, started_at, server, problems)
    config.stash[_STATE] = state
    config.pluginmanager.register(CollectionErrors(problems), _COLLECTION_ERRORS_PLUGIN)
    if handover is None:
        _probe_or_exit(state)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop what the run started."""
    state = config.stash.get(_STATE, None)
    if state is None:
        return
    state.run.close()
    if state.server is not None:
        state.server.stop()
    plugin = config.pluginmanager.get_plugin(_COLLECTION_ERRORS_PLUGIN)
    if plugin is not None:
        config.pluginmanager.unregister(plugin)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """(xdist) Hand the workers the target and the seed, so that all judge the same thing."""
    hand_over(node, run_state(node.config).run)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """(xdist) Collect a finished worker's recorded cases and what it saw of the target."""
    run_state(node.config).workers.take(node)


def _probe_or_exit(state: RunState) -> None:
    """Probe the target once; an unreachable or non-HTTP target ends the run at once.

    Done while configuring, before pytest starts its session, so that the run ends with one
    line ("Exit: ...") rather than a session's worth of output, and still writes its reports.
    """
    run = state.run
    problems = list(state.problems)
    if not problems:
        timeout = min(run.settings.timeout, 10.0)
        result = probe(run.target, timeout=timeout, headers=run.transport.headers)
        if not result.answers_http:
            problems.append(result.message)
    if problems:
        message = f"the target cannot be judged: {problems[0]}"
        record = _write_reports(state, error=message)
        if state.server is not None:
            state.server.stop()
        status = record.exit_status(run.settings.gate_should)
        pytest.exit(f"mimic-conformance: {message}", returncode=status)


# ------------------------------------------------------------------------------ collection


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize a conformance test by the operations its requirement applies to."""
    marker = metafunc.definition.get_closest_marker(_REQUIREMENT_MARK)
    if marker is None or "operation" not in metafunc.fixturenames:
        return
    run = run_state(metafunc.config).run
    selector = marker.kwargs.get("applies_to", "all")
    operations = SELECTORS[selector](run.contract)
    if operations:
        metafunc.parametrize("operation", operations, ids=[op.label for op in operations])
    else:
        metafunc.parametrize("operation", [None], ids=[NO_OPERATION])


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> Any:
    """Parametrize a test of schemathesis's cases with the run's schema for its mode.

    A test none of whose requirements is selected yields no items: building its schema costs
    seconds. The parametrized test is then collected by schemathesis's own plugin.
    """
    modes = [mark.args[0] for mark in _marks(obj, SCHEMATHESIS_MARK)]
    if not modes or not callable(obj):
        return None
    run = run_state(collector.config).run
    judges = {rid for mark in _marks(obj, _REQUIREMENT_MARK) for rid in mark.args}
    if not judges & run.selected_ids:
        return []
    test = parametrize(run, obj, str(modes[0]))
    return collector.ihook.pytest_pycollect_makeitem(collector=collector, name=name, obj=test)


def _case_selected(cases: tuple[tuple[str, str], ...], requirement_id: str, item: Any) -> bool:
    """Whether ``--case`` keeps this requirement of this item (no ``--case``: every one).

    A case whose operation is not an operation of the spec (``(suite)``: the test broke before
    it judged one) keeps every item of its requirement.
    """
    if not cases:
        return True
    label = operation_label(item)
    return any(
        rid == requirement_id and (operation == label or operation.startswith("("))
        for rid, operation in cases
    )


def _marks(obj: object, name: str) -> list[pytest.Mark]:
    """The marks called ``name`` that decorate ``obj`` itself."""
    marks = getattr(obj, "pytestmark", [])
    if not isinstance(marks, list):
        marks = [marks]
    return [mark for mark in marks if isinstance(mark, pytest.Mark) and mark.name == name]


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Keep the tests of the selected requirements, hostile ones last.

    Also remember which requirements each test judges.
    """
    run = run_state(config).run
    selected = run.selected_ids
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker(_REQUIREMENT_MARK)
        if marker is None:
            kept.append(item)
            continue
        mine = tuple(
            rid
            for rid in marker.args
            if rid in selected and _case_selected(run.settings.cases, rid, item)
        )
        if mine:
            item.stash[REQUIREMENTS] = mine
            kept.append(item)
        else:
            dropped.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    # Hostile traffic goes last: a target it takes down has been judged on everything else.
    kept.sort(key=lambda item: any(is_hostile(rid) for rid in item.stash.get(REQUIREMENTS, ())))
    items[:] = kept


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def conformance(pytestconfig: pytest.Config) -> Run:
    """The current run: settings, contract, transport to the target, and recording."""
    return run_state(pytestconfig).run


@pytest.fixture
def judgement(request: pytest.FixtureRequest, conformance: Run) -> Judgement:
    """The verdict-in-progress of this test's one requirement on its operation."""
    requirements = request.node.stash.get(REQUIREMENTS, ())
    if len(requirements) != 1:
        raise RuntimeError(
            f"{request.node.nodeid} must judge exactly one requirement, not {requirements}"
        )
    requirement_id, label = requirements[0], operation_label(request.node)
    reason = _not_applicable(conformance, requirement_id, request.node)
    if reason is not None:
        conformance.record(requirement_id, label, Outcome.NOT_APPLICABLE, reason=reason)
        pytest.skip(f"{requirement_id} [not applicable] on {label}: {reason}")
    return Judgement(conformance, requirement_id, label)


def _not_applicable(run: Run, requirement_id: str, item: pytest.Item) -> str | None:
    """Why ``requirement_id`` has no meaning under the run's contract for ``item``, if it has none.

    Either the contract says so (``x-conformance.not-applicable``) or it documents no operation
    the requirement applies to (the item is parametrized with no operation).
    """
    contract = run.contract
    declared = contract.not_applicable.get(requirement_id)
    if declared is not None:
        return f"not part of the {contract.name} contract: {declared}"
    callspec = getattr(item, "callspec", None)
    if (
        callspec is not None
        and "operation" in callspec.params
        and callspec.params["operation"] is None
    ):
        return f"the {contract.name} contract has no operation this requirement applies to"
    return None


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
    keep_report(item, report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """After an item: any requirement it should have judged but did not is an error (or skip)."""
    run = run_state(item.config).run
    before = len(run.cases)
    try:
        return (yield)
    finally:
        record_unjudged(item, run, before)


# ------------------------------------------------------------------------------ finishing


def _write_reports(state: RunState, error: str | None = None) -> RunRecord:
    """Build the run record, write the reports and remember both."""
    record = build_record(
        state.run,
        started_at=state.started_at,
        workers=state.workers,
        problems=state.problems,
        server=state.server,
        error=error,
    )
    settings = state.run.settings
    write_reports(record, settings.report_dir)
    if settings.write_baseline is not None:
        write_run_baseline(record, settings.write_baseline)
    state.report = (record, settings.report_dir)
    return record


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Workers hand their cases over; the controller writes the reports and sets the exit status."""
    config = session.config
    state = config.stash.get(_STATE, None)
    if state is None or state.report is not None:
        return
    if is_worker(config):
        hand_back(config, state.run)
        return
    record = _write_reports(state)
    # pytest's own verdict (items failed, none collected) gives way to the record's; an
    # interrupted run, an internal or a usage error keeps pytest's non-zero status.
    if int(session.exitstatus) in _RECORD_DECIDES:
        session.exitstatus = record.exit_status(state.run.settings.gate_should)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the verdict, the counts and where the reports are."""
    state = config.stash.get(_STATE, None)
    if state is not None and state.report is not None:
        write_terminal_summary(terminalreporter, *state.report)
