"""Copy-pasteable curl commands that reproduce a request byte for byte, secrets left out.

Why not ``curlify`` or ``uncurl`` (or schemathesis's own curl output): they format a request,
they do not reproduce it. None of them keeps curl from adding ``Content-Type:
application/x-www-form-urlencoded`` to a body that had no content type, sends a non-UTF-8 or
NUL-bearing body intact, stops curl from globbing ``[]{}`` in a URL or collapsing ``/../``, or
replaces an API key with an environment variable that the shell expands. A failing conformance
check is only useful if its command fails the same way when a person runs it.

Quoting is POSIX ``sh`` (it works in bash, dash and zsh): single-quoted words, and secrets as
``"$MIMIC_API_KEY"`` in double quotes. Text bodies go in ``--data-binary '...'``; a body that is
not printable UTF-8 is written by ``printf`` with octal escapes and piped in with
``--data-binary @-``.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping

from conformance.exchange import RequestSpec

__all__ = ["SECRET_ENV_VAR", "printf_command", "to_curl"]

SECRET_ENV_VAR = "MIMIC_API_KEY"
"""The environment variable that stands for the first secret in a curl command."""

_GLOB_CHARS = frozenset("[]{}")
_DOT_SEGMENTS = ("/./", "/../")
_EXPECT_THRESHOLD = 1024  # curl sends "Expect: 100-continue" above this on older versions


def _secret_names(secrets: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    """Map each secret to its environment variable: MIMIC_API_KEY, MIMIC_API_KEY_2, ..."""
    if isinstance(secrets, Mapping):
        return {secret: name for secret, name in secrets.items() if secret}
    names: dict[str, str] = {}
    for secret in secrets:
        if secret and secret not in names:
            suffix = f"_{len(names) + 1}" if names else ""
            names[secret] = SECRET_ENV_VAR + suffix
    return names


def _shell_word(text: str, secrets: Mapping[str, str]) -> str:
    """Quote ``text`` as one shell word in which every secret is a variable expansion."""
    parts: list[str] = []
    rest = text
    while rest:
        hits = [(rest.find(secret), -len(secret), secret) for secret in secrets]
        hits = [hit for hit in hits if hit[0] >= 0]
        if not hits:
            parts.append(shlex.quote(rest))
            break
        position, _, secret = min(hits)  # leftmost, and the longest secret at that place
        if position:
            parts.append(shlex.quote(rest[:position]))
        parts.append(f'"${secrets[secret]}"')
        rest = rest[position + len(secret) :]
    return "".join(parts) or "''"


def _is_shell_text(body: bytes) -> bool:
    """Whether ``body`` can be pasted as a single-quoted word: printable UTF-8, tabs, newlines."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char in "\n\t" for char in text)


def _printf_format(body: bytes) -> str:
    """A ``printf`` format string that prints exactly ``body``."""
    pieces = []
    for index, byte in enumerate(body):
        if byte == 0x5C:
            pieces.append("\\\\")
        elif byte == 0x25:
            pieces.append("%%")
        elif 0x20 <= byte < 0x7F and not (index == 0 and byte == 0x2D):
            pieces.append(chr(byte))  # a leading "-" is escaped: printf would take an option
        else:
            pieces.append(f"\\{byte:03o}")
    return "".join(pieces)


def printf_command(data: bytes) -> str:
    """A ``printf`` command that writes exactly ``data`` (any bytes) to standard output."""
    return f"printf {shlex.quote(_printf_format(data))}"


def _header_word(name: str, value: str, secrets: Mapping[str, str]) -> str:
    # "Name:" alone would make curl *remove* the header; "Name;" sends it empty.
    return _shell_word(f"{name};" if value == "" else f"{name}: {value}", secrets)


def to_curl(
    request: RequestSpec,
    *,
    secrets: Iterable[str] | Mapping[str, str] = (),
    stream: bool | None = None,
    multiline: bool = True,
) -> str:
    """Return a POSIX shell command that makes curl send ``request`` as it was sent.

    ``request.url`` must be absolute (see :meth:`conformance.transport.Transport.prepare`).
    Each of ``secrets`` found in the URL, a header or a text body is replaced by
    ``"$MIMIC_API_KEY"`` (then ``"$MIMIC_API_KEY_2"``, ...; a mapping chooses the names), so
    the command reproduces the request once the variable is set, without showing the key.
    ``stream`` adds ``-N`` (no output buffering); by default it is on when the request asks
    for an event stream. curl still adds its own ``User-Agent`` and ``Accept: */*``.
    """
    if not request.url.startswith(("http://", "https://")):
        raise ValueError(f"to_curl needs an absolute URL, not {request.url!r}")
    names = _secret_names(secrets)
    words = ["curl", "-sS"]
    if request.expects_stream if stream is None else stream:
        words.append("-N")
    if request.method == "HEAD":
        words.append("--head")
    else:
        words += ["-X", shlex.quote(request.method)]
    if _GLOB_CHARS.intersection(request.url):
        words.append("--globoff")
    path = request.url.split("?", 1)[0]
    if any(segment in path + "/" for segment in _DOT_SEGMENTS):
        words.append("--path-as-is")
    words.append(_shell_word(request.url, names))
    options = [f"-H {_header_word(name, value, names)}" for name, value in request.headers]
    body = request.body
    prefix = ""
    if body is not None:
        if request.header("content-type") is None:
            options.append("-H 'Content-Type:'")  # else curl invents a form content type
        if len(body) > _EXPECT_THRESHOLD and request.header("expect") is None:
            options.append("-H 'Expect:'")
        # curl reads a --data-binary value starting with '@' as a file name: pipe such bodies.
        if request.body_source is not None:
            prefix = f"{request.body_source} | "
            options.append("--data-binary @-")
        elif _is_shell_text(body) and not body.startswith(b"@"):
            options.append(f"--data-binary {_shell_word(body.decode('utf-8'), names)}")
        else:
            prefix = f"{printf_command(body)} | "
            options.append("--data-binary @-")
    separator = " \\\n  " if multiline else " "
    return prefix + separator.join([" ".join(words), *options])
