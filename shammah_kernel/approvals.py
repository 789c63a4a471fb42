"""Asking the user about a tool call, in whatever way the frontend allows.

Notebooks get an approval widget in the cell (the running cell waits for the click); terminals
get a prompt on stdin; runs with no one to ask (nbclient, papermill) deny, naming the rule that
would allow the call.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from .events import Approval, ApprovalChoice, ToolCallProposed
from .renderer import OutputSink

_KEYS = {
    "o": ApprovalChoice.ONCE,
    "s": ApprovalChoice.SESSION,
    "p": ApprovalChoice.SESSION_PATTERN,
    "a": ApprovalChoice.ALWAYS,
    "A": ApprovalChoice.ALWAYS_PATTERN,
    "d": ApprovalChoice.DENY,
}
_PROMPT = "[o]nce, this [s]ession, [p]attern for the session, [a]lways, [A]lways pattern, [d]eny: "
# A protected path: a rule never opens it, so only these two are offered.
_PER_CALL_KEYS = {"o": ApprovalChoice.ONCE, "d": ApprovalChoice.DENY}
_PER_CALL_PROMPT = "protected path, asked every time: [o]nce, [d]eny: "


def _headless_reason(event: ToolCallProposed) -> str:
    """Why a run with no one to ask refused: it depends on the call's rules, never on a file."""
    if event.per_call_only:
        return (
            "No one could be asked (this run has no frontend), and the call touches a protected "
            "path, which only a per-call approval opens; no rule can allow it."
        )
    rule = event.suggestion or event.call.name
    return (
        f"No one could be asked (this run has no frontend). To allow it, add a rule such "
        f"as `{rule}` with /patterns add, or to permissions.json."
    )


class Frontend(enum.Enum):
    WIDGETS = "widgets"  # notebooks: they send a cell id
    TERMINAL = "terminal"  # jupyter console: no cell id, but stdin
    HEADLESS = "headless"  # nbclient, papermill: no stdin


def frontend_for(cell_id: str | None, allow_stdin: bool) -> Frontend:
    if cell_id is not None:
        return Frontend.WIDGETS
    return Frontend.TERMINAL if allow_stdin else Frontend.HEADLESS


class Approver:
    def __init__(
        self, sink: OutputSink, frontend: Frontend, read_line: Callable[[str], str]
    ) -> None:
        self.sink = sink
        self.frontend = frontend
        self.read_line = read_line
        self._pending: list[object] = []

    def ask(self, event: ToolCallProposed) -> None:
        """Resolve `event.answer` now (terminal, headless) or on the widget's click."""
        if self.frontend is Frontend.WIDGETS:
            self._widget(event)
        elif self.frontend is Frontend.TERMINAL:
            event.answer.set_result(self._terminal(event))
        else:
            event.answer.set_result(Approval(ApprovalChoice.DENY, reason=_headless_reason(event)))

    def _widget(self, event: ToolCallProposed) -> None:
        from .widgets.approval import ApprovalWidget

        widget = ApprovalWidget(
            event.call.name,
            event.description,
            event.preview,
            event.suggestion,
            per_call_only=event.per_call_only,
        )

        def decided(approval: Approval) -> None:
            if not event.answer.done():
                event.answer.set_result(approval)

        widget.on_decision(decided)
        self._pending.append(widget)
        bundle = widget._repr_mimebundle_()
        if bundle is not None:
            self.sink.display(bundle[0])

    def _terminal(self, event: ToolCallProposed) -> Approval:
        details = f"\n{event.preview}" if event.preview else ""
        self.sink.stream(f"Shammah wants to run {event.call.name}: {event.description}{details}\n")
        keys, prompt = (
            (_PER_CALL_KEYS, _PER_CALL_PROMPT) if event.per_call_only else (_KEYS, _PROMPT)
        )
        while True:
            key = self.read_line(prompt).strip()[:1]
            if key in keys:
                break
        choice = keys[key]
        if choice in (ApprovalChoice.SESSION_PATTERN, ApprovalChoice.ALWAYS_PATTERN):
            edited = self.read_line(f"Rule [{event.suggestion}]: ").strip()
            return Approval(choice, rule=edited or event.suggestion)
        if choice is ApprovalChoice.DENY:
            return Approval(choice, reason=self.read_line("Reason (optional): ").strip())
        return Approval(choice)

    def close(self, note: str) -> None:
        """Mark widgets still waiting (the turn was stopped) as cancelled."""
        for widget in self._pending:
            widget.cancel(note)  # type: ignore[attr-defined]
        self._pending.clear()
