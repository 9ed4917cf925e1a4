"""Routing from the contract: one Falcon sink serves every operation `spec/openapi.yaml` lists.

Registering Falcon routes would restate the contract's paths and give Falcon's own answers to
methods the contract does not list (a 200 for `OPTIONS`, say). The sink asks the contract
instead: `Contract.match()` finds the operation, `Contract.methods_for()` fills `Allow` for a 405,
and anything else is a 404. Before a responder runs, the sink authenticates the request and
validates its path parameters and body, so that responders see only valid input:
`req.context.operation`, `req.context.grant` and `req.context.body` (None for operations
without a body).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import falcon.asgi

from reference.auth import KeyRing
from reference.errors import method_not_allowed, route_not_found
from reference.validation import OperationValidator
from spec import Contract

__all__ = ["ContractRouter", "Responder"]

Responder = Callable[..., Awaitable[None]]
"""`async def on_<method>(req, resp, **path_params)`."""


class ContractRouter:
    """A Falcon sink dispatching to resources by the contract's tags.

    Each operation goes to `resources[tag].on_<method>` for its first tag, so that an operation
    added to the contract under a known tag is served without touching this module; start-up
    fails if one has no responder.
    """

    def __init__(
        self,
        contract: Contract,
        resources: Mapping[str, object],
        *,
        keyring: KeyRing,
        max_body_bytes: int,
    ) -> None:
        self._contract = contract
        self._keyring = keyring
        self._responders: dict[str, Responder] = {}
        self._validators: dict[str, OperationValidator] = {}
        for operation in contract.operations:
            tags = operation.raw.get("tags") or []
            resource = resources.get(tags[0]) if tags else None
            responder = getattr(resource, f"on_{operation.method}", None)
            if responder is None:
                raise ValueError(f"no responder for {operation.label} (tags {tags})")
            self._responders[operation.operation_id] = responder
            # Compiled here, once, not per request.
            self._validators[operation.operation_id] = OperationValidator(
                contract, operation, max_body_bytes=max_body_bytes
            )

    async def __call__(
        self, req: falcon.asgi.Request, resp: falcon.asgi.Response, **_: Any
    ) -> None:
        """Route, authenticate, validate, then call the operation's responder."""
        found = self._contract.match(req.method, req.path)
        if found is None:
            allowed = self._contract.methods_for(req.path)
            if allowed:
                raise method_not_allowed(req.method, req.path, allowed)
            raise route_not_found(req.method, req.path)
        operation, params = found
        req.context.operation = operation
        req.context.grant = self._keyring.authenticate(req.headers)
        validator = self._validators[operation.operation_id]
        validator.check_path(params)
        req.context.body = await validator.read_body(req) if validator.takes_body else None
        await self._responders[operation.operation_id](req, resp, **params)
