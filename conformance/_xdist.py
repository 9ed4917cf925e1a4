"""Running the suite on pytest-xdist workers: what the controller hands them, what they hand back.

The controller resolves the target (starting the reference server if need be) and the seed,
and hands both to every worker (:func:`hand_over`), so that all judge the same thing. Each
worker runs its share and hands back its recorded cases and what it saw of the target
(:func:`hand_back`); the controller collects them as each worker ends (:func:`WorkerResults.take`)
and merges them into the run record.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from conformance.results import CaseResult
from conformance.suite._run import Run

__all__ = [
    "Handover",
    "WorkerResults",
    "hand_back",
    "hand_over",
    "handed_over",
    "is_worker",
    "liveness_report",
]

_WORKERINPUT_KEY = "mimic_conformance"
_WORKEROUTPUT_CASES_KEY = "mimic_conformance_cases"
_WORKEROUTPUT_LIVENESS_KEY = "mimic_conformance_liveness"


@dataclass(frozen=True)
class Handover:
    """What a worker takes from its controller: the target and the seed."""

    target: str
    seed: int


@dataclass
class WorkerResults:
    """What the controller has collected from the workers that ended."""

    cases: list[CaseResult] = field(default_factory=list)
    liveness: list[dict[str, Any]] = field(default_factory=list)
    """One :func:`liveness_report` per worker."""

    def take(self, node: Any) -> None:
        """Collect what an ended worker (an xdist node) handed back."""
        output = getattr(node, "workeroutput", {})
        cases = output.get(_WORKEROUTPUT_CASES_KEY)
        if cases:
            self.cases.extend(CaseResult.from_dict(item) for item in json.loads(cases))
        liveness = output.get(_WORKEROUTPUT_LIVENESS_KEY)
        if liveness:
            self.liveness.append(json.loads(liveness))


def is_worker(config: pytest.Config) -> bool:
    """Whether this process is a pytest-xdist worker."""
    return hasattr(config, "workerinput")


def hand_over(node: Any, run: Run) -> None:
    """Give a worker (an xdist node being configured) the run's target and seed."""
    node.workerinput[_WORKERINPUT_KEY] = json.dumps(
        {"target": run.target, "seed": run.settings.seed}
    )


def handed_over(config: pytest.Config) -> Handover | None:
    """What this worker's controller handed over; ``None`` outside a worker."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return None
    data = json.loads(workerinput[_WORKERINPUT_KEY])
    return Handover(target=data["target"], seed=data["seed"])


def liveness_report(run: Run) -> dict[str, Any]:
    """What one process's run saw of the target: handed from xdist workers to the controller."""
    down = run.target_down()
    return {
        "answered": run.liveness.answered,
        "target_down": None if down is None else down.to_dict(),
        "not_run": sorted(run.cases_not_run()),
    }


def hand_back(config: pytest.Config, run: Run) -> None:
    """On a worker: leave its recorded cases and its liveness report for the controller."""
    output = config.workeroutput  # type: ignore[attr-defined]
    output[_WORKEROUTPUT_CASES_KEY] = json.dumps([case.to_dict() for case in run.cases])
    output[_WORKEROUTPUT_LIVENESS_KEY] = json.dumps(liveness_report(run))
