"""How a tool call looks in the cell: one compact, expandable block that fills as output streams."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from .events import ToolCall, ToolResult
from .markup import code_block

if TYPE_CHECKING:  # renderer imports this module: the protocol is needed for types only
    from .renderer import OutputSink

SHOWN_OUTPUT = 4000  # characters of a tool's output kept in the cell (the model sees its own cap)
UPDATE_INTERVAL = 0.1


class ToolCallView:
    def __init__(self, sink: OutputSink, call: ToolCall, description: str, *, plain: bool) -> None:
        self.sink, self.call, self.description, self.plain = sink, call, description, plain
        self.output = ""
        self._id = f"shammah-tool-{uuid.uuid4().hex}"
        self._updated = 0.0
        if plain:
            sink.stream(f"[{call.name}: {description}]\n")
        else:
            sink.display(self._bundle("running…", open_=True), self._id)

    def add_output(self, text: str) -> None:
        # Only the tail is ever shown: keep a little more than that, never a flood's whole output.
        self.output = (self.output + text)[-2 * SHOWN_OUTPUT :]
        if self.plain:
            self.sink.stream(text)
        elif time.monotonic() - self._updated >= UPDATE_INTERVAL:
            self.sink.update(self._bundle("running…", open_=True), self._id)
            self._updated = time.monotonic()

    def finish(self, result: ToolResult, *, refused: bool = False) -> None:
        state = "not run" if refused else "failed" if result.is_error else "done"
        if not self.output:
            self.output = result.content
        if self.plain:
            self.sink.stream(f"[{self.call.name} {state}]\n")
        else:
            self.sink.update(self._bundle(state, open_=result.is_error), self._id)

    def _bundle(self, state: str, *, open_: bool) -> dict[str, str]:
        shown = self.output[-SHOWN_OUTPUT:]
        cut = "…\n" if len(self.output) > SHOWN_OUTPUT else ""
        body = f"\n\n{code_block(cut + shown.rstrip())}\n" if shown.strip() else "\n"
        # The summary line opens an HTML block (no Markdown there): HTML escaping is what counts.
        name, description = _escape(self.call.name), _escape(self.description)
        summary = f"<b>{name}</b> <code>{description}</code> · {state}"
        tag = "<details open>" if open_ else "<details>"
        markdown = f"{tag}<summary>{summary}</summary>{body}</details>"
        plain = f"[{self.call.name}: {self.description} · {state}]\n{cut}{shown}"
        return {"text/markdown": markdown, "text/plain": plain}


def _escape(text: str) -> str:
    """HTML text: also no newline, which would end the HTML block and start Markdown."""
    flat = " ".join(text.splitlines())
    return flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
