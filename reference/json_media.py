r"""JSON bodies that always encode: every response and stream event is written with `dumps`.

Bodies quote client text: a 422 names the key it refuses, a 400 the value, `echo` returns the
prompt. JSON may carry a lone surrogate (`"\ud800"` parses to a Python string holding U+D800),
which UTF-8 cannot encode, and Falcon's default handler (`json.dumps(...).encode()`) then fails
after the status is chosen: the client got a 500 with an empty body while the log said 422.

`dumps` writes UTF-8 as Falcon's handler does, and writes each lone surrogate as U+FFFD, the
replacement character, as the engine does when it tokenizes such text. Escaping it as `\ud800`
instead would be valid JSON text, but RFC 8259 leaves such a string's meaning open, and strict
parsers (serde_json, for one) refuse it: the whole body would be lost to those clients.
"""

from __future__ import annotations

import json
import re
from typing import Any

import falcon
import falcon.asgi
import falcon.media

__all__ = ["dumps", "install"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def dumps(media: Any) -> bytes:
    """`media` as UTF-8 JSON, as Falcon writes it, but with each lone surrogate as U+FFFD."""
    text = json.dumps(media, ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def install(app: falcon.asgi.App) -> None:
    """Make `dumps` write the app's JSON: `resp.media`, error bodies and `SSEvent(json=...)`."""
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=dumps)
