"""Tool calls: which tools a chat request offers, how the output is constrained, and how it is read.

A `ToolPlan` (read from the request by `reference.planning.read_tools`) says which functions the
model may call and how. `ToolPlan.json_schema` is the grammar that makes a forced or required call
always well-formed, even from a tiny model. `ToolPlan.shaper` builds, per choice, the object that
turns generated text into the message deltas an OpenAI client expects, as the text arrives (for
streams) and at the end (for both shapes).

Why not a library: llama-cpp-python's own function calling (`chatml-function-calling`) renders
its own prompt, generates in several passes and cannot stream arguments; OpenAI's SDK only
reads calls. The wire shapes here are OpenAI's; the text format the model is taught is the
widely used Hermes one (`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from reference.engine import TokenLogprob

__all__ = [
    "Emit",
    "Shaper",
    "TextShaper",
    "ToolPlan",
    "merge_deltas",
]

Mode = Literal["none", "auto", "required", "forced"]

_OPEN = "<tool_call>"
#: The start of a required call: `{"name": "<name>", "arguments": `, with the grammar's optional
#: single spaces. Function names are `[a-zA-Z0-9_-]`, so no escapes can occur in them.
_CALL_HEAD = re.compile(r'\{ ?"name" ?: ?"([a-zA-Z0-9_-]*)" ?, ?"arguments" ?: ?')
_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)


@dataclass(frozen=True)
class Emit:
    """One delta to send, with the logprobs of the tokens it carries."""

    delta: dict[str, Any]
    logprobs: tuple[TokenLogprob, ...] = ()


def _call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolPlan:
    """The tools a request offers and how the model may use them.

    ``legacy`` requests (`functions`) answer with `function_call` and finish reason
    `function_call`; the others with `tool_calls` and `tool_calls`.
    """

    mode: Mode = "none"
    functions: tuple[Mapping[str, Any], ...] = ()
    forced: str | None = None
    legacy: bool = False

    @property
    def offered(self) -> list[dict[str, Any]] | None:
        """The tools to show the model in the prompt (none when it may not call any)."""
        if self.mode == "none" or not self.functions:
            return None
        return [{"type": "function", "function": dict(function)} for function in self.functions]

    def _parameters(self, name: str) -> Mapping[str, Any]:
        for function in self.functions:
            if function["name"] == name:
                return function.get("parameters") or {"type": "object"}
        raise KeyError(name)

    @property
    def json_schema(self) -> Mapping[str, Any] | None:
        """The schema the output must match: a forced call's arguments, or one of the calls."""
        if self.mode == "forced" and self.forced is not None:
            return self._parameters(self.forced)
        if self.mode == "required":
            return {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {
                            "name": {"const": function["name"]},
                            "arguments": self._parameters(function["name"]),
                        },
                        "required": ["name", "arguments"],
                        "additionalProperties": False,
                    }
                    for function in self.functions
                ]
            }
        return None

    def shaper(self) -> Shaper:
        """A fresh shaper for one choice."""
        if self.mode == "forced" and self.forced is not None:
            return _ForcedShaper(self.forced, self.legacy)
        if self.mode == "required":
            return _RequiredShaper(self.legacy)
        if self.mode == "auto" and self.functions:
            return _AutoShaper(frozenset(f["name"] for f in self.functions), self.legacy)
        return TextShaper()


# ---------------------------------------------------------------- shaping the output


class Shaper:
    """Turns one choice's generated text into deltas, as it arrives and at the end."""

    def start(self) -> list[Emit]:
        """Deltas to send before any text (after the role chunk)."""
        return []

    def feed(self, text: str, logprobs: tuple[TokenLogprob, ...]) -> list[Emit]:
        """Deltas to send for this new text."""
        raise NotImplementedError

    def finish(self, reason: str) -> tuple[list[Emit], str]:
        """The last deltas and the choice's finish reason, given the engine's reason."""
        raise NotImplementedError


class TextShaper(Shaper):
    """Plain text: every piece is content."""

    def feed(self, text: str, logprobs: tuple[TokenLogprob, ...]) -> list[Emit]:
        """The text as content (a piece with only logprobs still carries them)."""
        if text or logprobs:
            return [Emit({"content": text}, logprobs)]
        return []

    def finish(self, reason: str) -> tuple[list[Emit], str]:
        """Nothing more to send; the engine's reason stands."""
        return [], reason


class _CallShaper(Shaper):
    """Shared by the shapers that answer with one call: header delta, argument fragments."""

    def __init__(self, legacy: bool) -> None:
        self.legacy = legacy
        self.index = 0

    def header(self, name: str) -> Emit:
        if self.legacy:
            return Emit({"function_call": {"name": name, "arguments": ""}})
        call = {
            "index": self.index,
            "id": _call_id(),
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        return Emit({"tool_calls": [call]})

    def arguments(self, fragment: str) -> Emit:
        if self.legacy:
            return Emit({"function_call": {"arguments": fragment}})
        return Emit({"tool_calls": [{"index": self.index, "function": {"arguments": fragment}}]})

    def reason(self, engine_reason: str) -> str:
        if engine_reason != "stop":
            # A call cut off at max_tokens is sent as far as it got, with `length`, as OpenAI does.
            return engine_reason
        return "function_call" if self.legacy else "tool_calls"


class _ForcedShaper(_CallShaper):
    """A named function: the whole output is its arguments, streamed as generated."""

    def __init__(self, name: str, legacy: bool) -> None:
        super().__init__(legacy)
        self.name = name
        self.text = ""
        self.sent = 0

    def start(self) -> list[Emit]:
        return [self.header(self.name)]

    def feed(self, text: str, logprobs: tuple[TokenLogprob, ...]) -> list[Emit]:
        self.text += text
        # The grammar may end with one space, which is not part of the arguments.
        ready = len(self.text.rstrip())
        if ready > self.sent:
            fragment, self.sent = self.text[self.sent : ready], ready
            return [self.arguments(fragment)]
        return []

    def finish(self, reason: str) -> tuple[list[Emit], str]:
        final = self.text.rstrip() if reason == "stop" else self.text
        rest = final[self.sent :]
        return ([self.arguments(rest)] if rest else []), self.reason(reason)


class _RequiredShaper(_CallShaper):
    """`{"name": ..., "arguments": ...}` for one of the tools: name first, then the arguments."""

    def __init__(self, legacy: bool) -> None:
        super().__init__(legacy)
        self.text = ""
        self.head: re.Match[str] | None = None
        self.sent = 0

    def _args(self) -> str:
        assert self.head is not None
        # The grammar's optional space after the colon may arrive after the head matched.
        return self.text[self.head.end() :].lstrip()

    def feed(self, text: str, logprobs: tuple[TokenLogprob, ...]) -> list[Emit]:
        self.text += text
        emits = []
        if self.head is None:
            self.head = _CALL_HEAD.match(self.text)
            if self.head is None:
                return []
            emits.append(self.header(self.head.group(1)))
        args = self._args()
        ready = _before_call_end(args)
        if ready > self.sent:
            emits.append(self.arguments(args[self.sent : ready]))
            self.sent = ready
        return emits

    def finish(self, reason: str) -> tuple[list[Emit], str]:
        if self.head is None:
            # Cut off before the function's name was complete: no call to report.
            return ([Emit({"content": self.text})] if self.text else []), reason
        args = self._args()
        if reason == "stop":
            args = args.rstrip().removesuffix("}").rstrip()
        # The tail held back while streaming was the call's closing brace, or is now sent.
        rest = args[self.sent :]
        return ([self.arguments(rest)] if rest else []), self.reason(reason)


def _before_call_end(args: str) -> int:
    """Where the text that may still be the call object's end (`  }  `) begins in `args`.

    Only the last few characters are looked at: the grammar allows one space on either side of
    the brace, so a regex over the whole (growing) arguments would be wasted work per token.
    """
    tail = args[-8:]
    end = len(tail.rstrip())
    if end and tail[end - 1] == "}":
        end = len(tail[: end - 1].rstrip())
    return len(args) - len(tail) + end


def _parse_calls(text: str, names: frozenset[str]) -> list[tuple[str, str]] | None:
    """The calls `text` consists of, as (name, arguments JSON); None if it is not only calls."""
    stripped = text.strip()
    if stripped.startswith(_OPEN):
        blocks = _BLOCK.findall(stripped)
        if _BLOCK.sub("", stripped).strip():
            return None
    elif stripped.startswith("{"):
        blocks = [stripped]
    else:
        return None
    calls = []
    for block in blocks:
        try:
            call = json.loads(block)
        except ValueError:
            return None
        if not isinstance(call, dict) or call.get("name") not in names:
            return None
        arguments = call.get("arguments", call.get("parameters", {}))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        if not isinstance(arguments, dict):
            return None
        calls.append((call["name"], json.dumps(arguments, ensure_ascii=False)))
    return calls or None


class _AutoShaper(_CallShaper):
    """The model chooses: text streams as content unless it may still become a call.

    Output that begins like a call (`<tool_call>` or `{`) is held back until the end, then
    sent as calls if the whole of it parses as calls to declared functions, else as content.
    """

    def __init__(self, names: frozenset[str], legacy: bool) -> None:
        super().__init__(legacy)
        self.names = names
        self.held = ""
        self.held_logprobs: list[TokenLogprob] = []
        self.text_mode = False

    def _may_be_call(self) -> bool:
        start = self.held.lstrip()
        return not start or start.startswith(("{", _OPEN)) or _OPEN.startswith(start)

    def _flush(self) -> list[Emit]:
        emit = Emit({"content": self.held}, tuple(self.held_logprobs))
        self.held, self.held_logprobs = "", []
        return [emit] if emit.delta["content"] or emit.logprobs else []

    def feed(self, text: str, logprobs: tuple[TokenLogprob, ...]) -> list[Emit]:
        if self.text_mode:
            return [Emit({"content": text}, logprobs)] if text or logprobs else []
        self.held += text
        self.held_logprobs.extend(logprobs)
        if self._may_be_call():
            return []
        self.text_mode = True
        return self._flush()

    def finish(self, reason: str) -> tuple[list[Emit], str]:
        calls = None if self.text_mode else _parse_calls(self.held, self.names)
        if calls is None or (self.legacy and len(calls) > 1):
            return self._flush(), reason
        emits = []
        for self.index, (name, arguments) in enumerate(calls):
            emits += [self.header(name), self.arguments(arguments)]
        return emits, self.reason(reason)


# ---------------------------------------------------------------- whole messages


def merge_deltas(emits: Sequence[Emit]) -> dict[str, Any]:
    """The message the deltas of one choice add up to (what a non-streamed answer carries)."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    function_call: dict[str, Any] | None = None
    for emit in emits:
        delta = emit.delta
        if "content" in delta:
            content.append(delta["content"])
        if "function_call" in delta:
            function_call = function_call or {"name": "", "arguments": ""}
            function_call["name"] += delta["function_call"].get("name", "")
            function_call["arguments"] += delta["function_call"]["arguments"]
        for part in delta.get("tool_calls", ()):
            call = calls.setdefault(
                part["index"], {"id": "", "type": "function", "function": _empty_function()}
            )
            call["id"] = part.get("id", call["id"])
            call["function"]["name"] += part["function"].get("name", "")
            call["function"]["arguments"] += part["function"].get("arguments", "")
    message: dict[str, Any] = {"role": "assistant"}
    if calls or function_call:
        message["content"] = "".join(content) or None
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        if function_call:
            message["function_call"] = function_call
    else:
        message["content"] = "".join(content)
    return message


def _empty_function() -> dict[str, str]:
    return {"name": "", "arguments": ""}
