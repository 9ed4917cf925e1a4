"""Server-sent events, as the spec's stream rules say: one JSON chunk per event, then `[DONE]`.

Chunks go out with `SSEvent(json=...)`, which writes compact JSON on one `data:` line (Falcon's
`text=` would not split embedded newlines). A failure after the 200 is one event carrying the 500
body, then `[DONE]`, never a cut connection.

When the client goes away, Falcon stops iterating the event stream but does not close it. The
stream is closed when it is garbage (asyncio finalizes abandoned async generators), and its
`finally` closes the chunk source and releases the model's turn. So the stream must not be part
of a reference cycle, or that would wait for the cycle collector: it holds no request or response.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from falcon.asgi import SSEvent

from reference.errors import internal_error_body

__all__ = ["DONE", "events"]

logger = logging.getLogger("mimic.reference")

DONE = b"[DONE]"
"""The data of the last event of every stream."""


async def events(
    chunks: AsyncIterator[Mapping[str, Any]],
    *,
    release: Callable[[], Awaitable[Any]],
) -> AsyncIterator[SSEvent]:
    """Turn chunk objects into events; end with `[DONE]`; `release` when done, however it ends."""
    try:
        try:
            async for chunk in chunks:
                yield SSEvent(json=chunk)
        except Exception:
            # Exception, not BaseException: a client gone (GeneratorExit) or a cancelled task
            # is not an error to report, and nobody would read the event.
            logger.exception("a stream failed after its 200")
            yield SSEvent(json=internal_error_body("the generation failed"))
        yield SSEvent(data=DONE)
    finally:
        try:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            await release()
