"""The chat prompt: OpenAI's messages and tools, rendered through the model's own chat template.

Chat templates know fewer roles than OpenAI's API. SmolLM2's (ChatML) writes any role verbatim
and ignores `tools`, `tool_calls` and `name`; a model trained on `system`/`user`/`assistant` only
has never seen `<|im_start|>tool`. So, before the template runs:

- `developer` becomes `system` (OpenAI's newer name for the same thing), for every template;
- when the template ignores `tools` (found by rendering it once with and once without a tool),
  the tools are described in the system message in the Hermes format, assistant `tool_calls`
  and `function_call` become `<tool_call>` blocks in the assistant's text, and `tool` and
  `function` results become `user` turns wrapped in `<tool_response>`; a template that renders
  tools itself gets those messages unchanged;
- an assistant message with only a `refusal` says the refusal; `name` is passed on (ChatML
  ignores it).
"""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from reference.engine import Engine, InvalidRequest
from reference.errors import bad_request

__all__ = ["render_chat_prompt"]

_OFF_LOOP_CHARS = 64 * 1024
"""Conversations longer than this are rendered in a thread, so the event loop keeps serving."""

_PROBE_MESSAGES = [{"role": "user", "content": "x"}]
_PROBE_TOOLS = [{"type": "function", "function": {"name": "probe", "parameters": {}}}]

_TOOLS_PROMPT = """\
You may call one of the functions below. Their signatures are given within <tools></tools>:
<tools>
{tools}
</tools>
To call a function, answer with only a JSON object within <tool_call></tool_call> tags:
<tool_call>
{{"name": <function-name>, "arguments": <arguments-object>}}
</tool_call>"""

_renders_tools: weakref.WeakKeyDictionary[Engine, bool] = weakref.WeakKeyDictionary()


def _template_renders_tools(engine: Engine) -> bool:
    """Whether the engine's chat template writes `tools` into the prompt (computed once)."""
    known = _renders_tools.get(engine)
    if known is None:
        plain = engine.render_chat(_PROBE_MESSAGES)
        known = engine.render_chat(_PROBE_MESSAGES, tools=_PROBE_TOOLS) != plain
        _renders_tools[engine] = known
    return known


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return str(content)


def _call_block(name: str, arguments: str) -> str:
    try:
        parsed: Any = json.loads(arguments)
    except ValueError:
        parsed = arguments
    call = json.dumps({"name": name, "arguments": parsed}, ensure_ascii=False)
    return f"<tool_call>\n{call}\n</tool_call>"


def _plain_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """One message in the three roles a plain template knows."""
    role = message["role"]
    if role in ("tool", "function"):
        result = _text(message.get("content"))
        return {"role": "user", "content": f"<tool_response>\n{result}\n</tool_response>"}
    if role != "assistant":
        return dict(message)
    parts = [_text(message.get("content")) or _text(message.get("refusal"))]
    for call in message.get("tool_calls") or ():
        parts.append(_call_block(call["function"]["name"], call["function"]["arguments"]))
    if message.get("function_call"):
        call = message["function_call"]
        parts.append(_call_block(call["name"], call["arguments"]))
    plain = {
        key: value
        for key, value in message.items()
        if key not in ("tool_calls", "function_call", "refusal")
    }
    plain["content"] = "\n".join(part for part in parts if part)
    return plain


def _with_tools_prompt(
    messages: list[dict[str, Any]], tools: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    described = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    prompt = _TOOLS_PROMPT.format(tools=described)
    if messages and messages[0]["role"] == "system":
        first = messages[0]
        return [{**first, "content": f"{_text(first['content'])}\n\n{prompt}"}, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


def _prepare(
    engine: Engine,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
) -> str:
    mapped = [
        {**message, "role": "system"} if message["role"] == "developer" else dict(message)
        for message in messages
    ]
    if not _template_renders_tools(engine):
        mapped = [_plain_message(message) for message in mapped]
        if tools:
            mapped = _with_tools_prompt(mapped, tools)
        tools = None
    return engine.render_chat(mapped, tools=tools)


async def render_chat_prompt(
    engine: Engine,
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
) -> str:
    """The prompt text for `messages` and the offered `tools`; a 400 if the template refuses.

    Large conversations are rendered in a thread, so the event loop keeps serving.
    """
    size = sum(len(str(message.get("content") or "")) for message in messages)
    try:
        if size > _OFF_LOOP_CHARS or len(messages) > 256:
            return await asyncio.to_thread(_prepare, engine, messages, tools)
        return _prepare(engine, messages, tools)
    except InvalidRequest as error:
        raise bad_request(f"'messages': {error}") from None
