"""A small Mimic-shaped server that dies after its N-th request, for whole-run tests.

Run it as a script::

    python dying_server.py --port 0 --after 50 [--signal ILL]

It answers plausibly shaped JSON and streams (not conformant in every detail, nor meant to be)
and logs one line per request to stdout. After answering its ``--after``-th request it exits, or
kills itself with ``--signal``, so that every later connection is refused. With ``--port 0`` it
picks a free port and prints it first, alone on a line. It accepts ``--host``, as the reference
server's command line does, so that the suite can start it in the reference server's place.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = ("mythomax", "asha", "soji", "mixtral", "mistral", "mobile")
_USAGE = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


def _completion(chat: bool, stream: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
    if chat:
        key = "delta" if stream else "message"
        choice[key] = {"role": "assistant", "content": "Hello"}
    else:
        choice["text"] = "Hello"
    kind = "chat.completion" if chat else "text_completion"
    return {
        "id": "cmpl-1",
        "object": kind + (".chunk" if stream and chat else ""),
        "created": 0,
        "model": MODELS[0],
        "choices": [choice],
        "usage": None if stream else _USAGE,
    }


class _Handler(BaseHTTPRequestHandler):
    server: _DyingServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.endswith("/models"):
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "x"} for m in MODELS]
            self._json(200, {"object": "list", "data": data})
        elif self.path == "/health":
            self._json(200, {"status": "ok"})
        else:
            self._json(404, {"error": {"message": "not found", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            body = None
        chat = "chat" in self.path
        if not isinstance(body, dict):
            self._json(422, {"detail": [{"loc": ["body"], "msg": "not an object", "type": "x"}]})
        elif body.get("stream") is True:
            self._stream(_completion(chat, stream=True))
        else:
            self._json(200, _completion(chat, stream=False))

    def do_PUT(self) -> None:
        self._json(405, {"error": {"message": "method not allowed", "type": "x"}})

    do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_PUT

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self._log(status)

    def _stream(self, chunk: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n")
        self._log(200)

    def _log(self, status: int) -> None:
        number = self.server.count()
        self.server.log(f"request {number}: {self.command} {self.path} -> {status}")
        self.close_connection = True
        self.wfile.flush()
        if number >= self.server.after:
            self.server.die()


class _DyingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, after: int, death: signal.Signals | None) -> None:
        super().__init__((host, port), _Handler)
        self.after = after
        self.death = death
        self._count = 0
        self._lock = threading.Lock()

    def count(self) -> int:
        with self._lock:
            self._count += 1
            return self._count

    def log(self, line: str) -> None:
        """Write one whole line (threads' lines never interleave)."""
        with self._lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def die(self) -> None:
        self.log(f"dying after request {self.after}")
        if self.death is not None:
            signal.raise_signal(self.death)  # to this very thread: it never gets past this line
        os._exit(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--after", type=int, default=50, help="requests answered before dying")
    parser.add_argument("--signal", default=None, help="die by this signal (ILL, SEGV, ...)")
    # Started in the reference server's place, it is given the reference's options too.
    parser.add_argument("--contract", default=None, help="ignored (the reference's option)")
    args = parser.parse_args(argv)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a signal death must not dump core
    death = signal.Signals["SIG" + args.signal.upper()] if args.signal else None
    server = _DyingServer(args.host, args.port, args.after, death)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
