"""`POST` chat completions: `/v1/…`, `/{model}/v1/…` and `/chub/{model}/v1/…`."""

from __future__ import annotations

from reference.planning import plan_chat
from reference.resources._generating import GeneratingResource

__all__ = ["ChatResource"]


class ChatResource(GeneratingResource):
    """Chat completions with the model's own chat template."""

    planner = staticmethod(plan_chat)
