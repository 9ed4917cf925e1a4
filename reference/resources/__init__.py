"""Falcon resources, one per tag of the contract: chat, completions, models; and health.

Each is thin: the router has already authenticated the request and validated it against the
contract (`req.context.body`, `req.context.grant`); a resource picks the model and hands over to
`reference.planning` and `reference.generation`, or answers from the model pool.
"""

from reference.resources.chat import ChatResource
from reference.resources.completions import CompletionsResource
from reference.resources.health import HealthResource
from reference.resources.models import ModelsResource

__all__ = ["ChatResource", "CompletionsResource", "HealthResource", "ModelsResource"]
