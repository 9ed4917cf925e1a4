"""`POST /v1/completions`, `/{model}/v1/completions`, `/chub/{model}/v1/completions`."""

from __future__ import annotations

from reference.planning import plan_completion
from reference.resources._generating import GeneratingResource

__all__ = ["CompletionsResource"]


class CompletionsResource(GeneratingResource):
    """Text completions: the prompt as given, no chat template."""

    planner = staticmethod(plan_completion)
