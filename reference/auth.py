"""Optional API keys: three header schemes, constant-time comparison, per-key model lists.

The published service declares three schemes, so a key may come as `Authorization: Bearer <key>`,
`CH-API-KEY: <key>` or `samwise: <key>`. Keys are compared as SHA-256 digests with
`hmac.compare_digest`, against every configured key without stopping at a match, so that neither
the position of a key nor its length shows in the response time. Keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from reference.config import APIKey
from reference.errors import forbidden, unauthorized

__all__ = ["Grant", "KeyRing"]

_KEY_HEADERS = ("ch-api-key", "samwise")


@dataclass(frozen=True)
class Grant:
    """What an authenticated request may use: `None` models means every model."""

    models: frozenset[str] | None

    def allows(self, model: str) -> bool:
        """Whether the request may use `model`."""
        return self.models is None or model in self.models

    def check(self, model: str) -> None:
        """Raise 403 unless the request may use `model`."""
        if not self.allows(model):
            raise forbidden(model)


_EVERYTHING = Grant(models=None)


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def _presented(headers: Mapping[str, str]) -> Iterator[bytes]:
    """The keys a request presents in any of the three schemes, as the bytes that were sent.

    ASGI servers decode header values as Latin-1; encoding them back gives the raw bytes, so that
    a non-ASCII key configured in UTF-8 matches the same key sent in UTF-8.
    """
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        yield credentials.strip().encode("latin-1", "replace")
    for name in _KEY_HEADERS:
        value = headers.get(name, "").strip()
        if value:
            yield value.encode("latin-1", "replace")


class KeyRing:
    """The configured keys. With none, every request is allowed everything."""

    def __init__(self, keys: Sequence[APIKey]) -> None:
        self._keys = [
            (_digest(key.key.encode("utf-8")), None if "*" in key.models else frozenset(key.models))
            for key in keys
        ]

    @property
    def enabled(self) -> bool:
        """Whether requests must present a key."""
        return bool(self._keys)

    def authenticate(self, headers: Mapping[str, str]) -> Grant:
        """The grant of the key the request presents; 401 if it presents none the ring knows.

        `headers` maps lower-cased header names to values, as Falcon's ASGI `req.headers` does.
        """
        if not self._keys:
            return _EVERYTHING
        grant = self._match(_presented(headers))
        if grant is None:
            raise unauthorized()
        return grant

    def _match(self, candidates: Iterable[bytes]) -> Grant | None:
        allowed: set[str] = set()
        everything = matched = False
        for candidate in candidates:
            digest = _digest(candidate)
            # No early exit: every configured key is compared for every presented one.
            for key_digest, models in self._keys:
                if hmac.compare_digest(digest, key_digest):
                    matched = True
                    if models is None:
                        everything = True
                    else:
                        allowed |= models
        if not matched:
            return None
        return _EVERYTHING if everything else Grant(models=frozenset(allowed))
