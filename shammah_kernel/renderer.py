"""Turns a turn's events into cell outputs: live-updated Markdown, or plain text for terminals."""

from __future__ import annotations

import time
import uuid
from typing import Protocol

from .events import (
    GenerationStats,
    Notice,
    TextDelta,
    ToolCallFinished,
    ToolCallProposed,
    ToolCallStarted,
    ToolOutput,
    TurnEvent,
    TurnFailed,
    TurnFinished,
)
from .markup import escape_text, safe_markdown
from .tool_view import ToolCallView

# Re-render a streaming Markdown output at most this often; a re-render per token would flood
# the frontend with updates and slow generation down.
UPDATE_INTERVAL = 0.05


class OutputSink(Protocol):
    """Where outputs go: the kernel's iopub channel, or IPython's display in the magics."""

    def display(self, data: dict[str, str], display_id: str | None = None) -> None: ...

    def update(self, data: dict[str, str], display_id: str) -> None: ...

    def stream(self, text: str) -> None: ...


def markdown_bundle(markdown: str, plain: str | None = None) -> dict[str, str]:
    """An output of Markdown that Shammah wrote; text from the model or a file must have gone
    through `markup` first (JupyterLab runs raw HTML in a live session's outputs)."""
    return {"text/markdown": markdown, "text/plain": markdown if plain is None else plain}


def footer(stats: GenerationStats, *, interrupted: bool) -> tuple[str, str]:
    """A one-line note of which model answered, how much and how fast (Markdown, plain)."""
    parts = [
        stats.model,
        f"{stats.generated_tokens} tokens",
        f"{stats.tokens_per_second:.1f} tok/s",
    ]
    if stats.adapter:
        parts.insert(1, f"adapter {stats.adapter}")
    if stats.finish_reason == "length":
        parts.append("stopped at max_tokens")
    if interrupted:
        parts.append("interrupted")
    line = " · ".join(parts)
    return f"<sub>{escape_text(line)}</sub>", f"[{line}]"


class ReplyRenderer:
    """Renders one turn. `plain=True` streams text (terminal frontends that ignore updates);
    `streaming=False` shows each piece of the answer whole once it is done (the setting)."""

    def __init__(self, sink: OutputSink, *, plain: bool, streaming: bool = True) -> None:
        self.sink = sink
        self.plain = plain
        self.streaming = streaming
        self.text = ""
        self._transient: list[str] = []  # display ids of notices to clear once the answer starts
        self._display_id = f"shammah-{uuid.uuid4().hex}"
        self._shown = False
        self._rendered_at = 0.0
        self._dirty = False
        self._tools: dict[str, ToolCallView] = {}

    def handle(self, event: TurnEvent) -> None:
        if not isinstance(event, Notice):
            self._clear_transient()
        if isinstance(event, TextDelta):
            self._add_text(event.text)
        elif isinstance(event, Notice):
            self._show_notice(event.text, transient=event.transient)
        elif isinstance(event, TurnFinished):
            self._flush()
            self._finish(event)
        elif isinstance(event, TurnFailed):
            self._flush()
        elif isinstance(event, ToolCallStarted):
            self._break_text()
            self._tools[event.call.id] = ToolCallView(
                self.sink, event.call, event.description, plain=self.plain
            )
        elif isinstance(event, ToolOutput) and event.call_id in self._tools:
            self._tools[event.call_id].add_output(event.text)
        elif isinstance(event, ToolCallFinished):
            view = self._tools.get(event.call.id)
            if view is None:  # denied or refused before it ran: show the outcome all the same
                self._break_text()
                view = ToolCallView(self.sink, event.call, event.description, plain=self.plain)
            view.finish(event.result, refused=event.refused)
        elif isinstance(event, ToolCallProposed):
            self._break_text()  # the text so far stays visible above the approval card

    def _break_text(self) -> None:
        """Text after a tool call or a notice starts a new output below it."""
        self._flush()
        if self._shown:
            self._display_id = f"shammah-{uuid.uuid4().hex}"
            self._shown = False
            self.text = ""

    def _show_notice(self, text: str, *, transient: bool = False) -> None:
        self._break_text()
        if self.plain:
            self.sink.stream(f"[{text}]\n")
            return
        display_id = f"shammah-notice-{uuid.uuid4().hex}" if transient else None
        self.sink.display(markdown_bundle(f"*{escape_text(text)}*", f"[{text}]"), display_id)
        if display_id:
            self._transient.append(display_id)

    def _clear_transient(self) -> None:
        """A waiting line is over once anything else happens: it leaves an empty output."""
        for display_id in self._transient:
            self.sink.update({"text/markdown": "", "text/plain": ""}, display_id)
        self._transient.clear()

    def _add_text(self, delta: str) -> None:
        self.text += delta
        if self.plain:
            self.sink.stream(delta)
            return
        self._dirty = True
        if self.streaming and time.monotonic() - self._rendered_at >= UPDATE_INTERVAL:
            self._flush()

    def _flush(self) -> None:
        if self.plain or not self._dirty:
            return
        bundle = markdown_bundle(safe_markdown(self.text), self.text)
        if self._shown:
            self.sink.update(bundle, self._display_id)
        else:
            self.sink.display(bundle, self._display_id)
            self._shown = True
        self._rendered_at = time.monotonic()
        self._dirty = False

    def _finish(self, event: TurnFinished) -> None:
        if event.stats is None:
            return
        markdown, plain = footer(event.stats, interrupted=event.interrupted)
        if self.plain:
            self.sink.stream(("" if self.text.endswith("\n") else "\n") + plain + "\n")
        else:
            self.sink.display({"text/markdown": markdown, "text/plain": plain})
