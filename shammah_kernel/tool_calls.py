"""Tool calls in the local models' replies: Qwen2.5's ``<tool_call>`` blocks.

Qwen2.5's chat template asks for each call as
``<tool_call>\\n{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call>``.
A block runs to its closing tag, or to the end of the reply when the model stopped before it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from shammah_kernel.events import ToolCall

OPEN_TAG = "<tool_call>"
CLOSE_TAG = "</tool_call>"
_FORMAT = f'{OPEN_TAG}\n{{"name": "Tool", "arguments": {{...}}}}\n{CLOSE_TAG}'


@dataclass(frozen=True, slots=True)
class ParsedReply:
    """A reply split into the prose shown to the user, the calls, and what was wrong with the
    blocks that could not be read (messages for the model, which can write them again)."""

    text_without_calls: str
    calls: list[ToolCall]
    problems: list[str]


def parse_tool_calls(text: str, *, first_id: int = 0) -> ParsedReply:
    """The calls of ``text``, numbered ``call_<first_id>``, ``call_<first_id + 1>``...; never
    raises: a block that can't be read becomes a problem instead of a call."""
    prose, bodies = _split_blocks(text)
    calls: list[ToolCall] = []
    problems: list[str] = []
    for number, body in enumerate(bodies, start=1):
        call = _read_call(body)
        if isinstance(call, str):
            problems.append(f"Tool call {number} was not run: {call}. Write each call as {_FORMAT}")
        else:
            name, arguments = call
            calls.append(ToolCall(f"call_{first_id + len(calls)}", name, arguments))
    return ParsedReply("".join(prose), calls, problems)


def _split_blocks(text: str) -> tuple[list[str], list[str]]:
    """The text outside ``<tool_call>`` blocks, and the blocks' bodies, in order."""
    prose: list[str] = []
    bodies: list[str] = []
    position = 0
    while (start := text.find(OPEN_TAG, position)) >= 0:
        prose.append(text[position:start])
        end = text.find(CLOSE_TAG, start + len(OPEN_TAG))
        end = len(text) if end < 0 else end
        bodies.append(text[start + len(OPEN_TAG) : end])
        position = min(len(text), end + len(CLOSE_TAG))
    prose.append(text[position:])
    return prose, bodies


def _read_call(body: str) -> tuple[str, dict[str, object]] | str:
    """The name and arguments of one block, or what is wrong with it."""
    source = body.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    if not source:
        return "the block is empty"
    try:
        value, end = json.JSONDecoder().raw_decode(source)
    except ValueError as error:
        return f"its JSON is malformed ({error})"
    except RecursionError:
        return "its JSON is nested too deeply"
    # Models sometimes add a stray brace after the object; anything else (a second call) would
    # be dropped unseen, so the whole block is refused instead.
    rest = source[end:].strip().lstrip("}").strip()
    if rest:
        what = "a second JSON value" if rest[0] in '{["' else "text"
        return f"{what} follows the call's JSON object ({rest[:40]!r}...); write one call per block"
    if isinstance(value, dict) and "name" not in value and isinstance(value.get("function"), dict):
        value = value["function"]  # the OpenAI shape {"type": "function", "function": {...}}
    if not isinstance(value, dict):
        return f"expected a JSON object, got {_json_type(value)}"
    name = value.get("name")
    if not isinstance(name, str) or not name.strip():
        return 'it has no "name" string'
    keys = ("arguments", "parameters", "args")
    arguments: object = next((value[key] for key in keys if key in value), None)
    if isinstance(arguments, str):  # arguments given as a JSON string, as in OpenAI's API
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError):
            return '"arguments" is a string that is not a JSON object'
    if arguments is None:  # a call without arguments
        arguments = {}
    if not isinstance(arguments, dict):
        return f'"arguments" must be a JSON object, got {_json_type(arguments)}'
    return name.strip(), arguments


def _json_type(value: object) -> str:
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
    }
    return names.get(type(value), "null")


class ToolCallStreamFilter:
    """Streams a reply's prose without its tool-call blocks: ``feed`` each delta and show what
    it returns, then show ``finish()``. Text that may begin a tag waits until it is decided; the
    pieces add up to ``parse_tool_calls(reply).text_without_calls``."""

    def __init__(self) -> None:
        self._pending = ""
        self._inside = False

    def feed(self, delta: str) -> str:
        self._pending += delta
        shown: list[str] = []
        while True:
            tag = CLOSE_TAG if self._inside else OPEN_TAG
            found = self._pending.find(tag)
            if found < 0:
                keep = _partial_tag_length(self._pending, tag)
                if not self._inside:
                    shown.append(self._pending[: len(self._pending) - keep])
                self._pending = self._pending[len(self._pending) - keep :]
                return "".join(shown)
            if not self._inside:
                shown.append(self._pending[:found])
            self._pending = self._pending[found + len(tag) :]
            self._inside = not self._inside

    def finish(self) -> str:
        """The text held back at the end of the reply; the filter is then ready for another."""
        rest = "" if self._inside else self._pending
        self._pending, self._inside = "", False
        return rest


def _partial_tag_length(text: str, tag: str) -> int:
    """Length of the longest end of ``text`` that is a proper beginning of ``tag``."""
    for length in range(min(len(text), len(tag) - 1), 0, -1):
        if text.endswith(tag[:length]):
            return length
    return 0
