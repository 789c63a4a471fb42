"""The approval card: one tool call the model asked for, and the user's answer to it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..events import Approval, ApprovalChoice

# The button labels, in the order the card shows them; approval.js has the same table.
CHOICE_LABELS: dict[ApprovalChoice, str] = {
    ApprovalChoice.ONCE: "Approve once",
    ApprovalChoice.SESSION: "This session",
    ApprovalChoice.SESSION_PATTERN: "Pattern for this session",
    ApprovalChoice.ALWAYS: "Always (this exact call)",
    ApprovalChoice.ALWAYS_PATTERN: "Always (pattern)",
    ApprovalChoice.DENY: "Deny",
}
PATTERN_CHOICES = frozenset({ApprovalChoice.SESSION_PATTERN, ApprovalChoice.ALWAYS_PATTERN})
# A protected path: only these are offered, and any other answer is refused (a forged payload).
PER_CALL_CHOICES = frozenset({ApprovalChoice.ONCE, ApprovalChoice.DENY})
# Tools whose preview is a unified diff; any other preview is shown as code (a command).
DIFF_TOOLS = frozenset({"Edit", "Write"})

PENDING, DECIDED, CANCELLED = "pending", "decided", "cancelled"


def outcome_text(approval: Approval) -> str:
    """What the card says once answered: `Approved once`, `Always allowed: Bash(pytest *)`."""
    match approval.choice:
        case ApprovalChoice.ONCE:
            return "Approved once"
        case ApprovalChoice.SESSION:
            return "Approved for this session"
        case ApprovalChoice.SESSION_PATTERN:
            return f"Allowed for this session: {approval.rule}"
        case ApprovalChoice.ALWAYS:
            return "Always allowed (this exact call)"
        case ApprovalChoice.ALWAYS_PATTERN:
            return f"Always allowed: {approval.rule}"
        case ApprovalChoice.DENY:
            return f"Denied: {approval.reason}" if approval.reason else "Denied"


def cancelled_text(note: str) -> str:
    return f"Cancelled: {note}" if note else "Cancelled"


def parse_decision(payload: object, *, per_call_only: bool = False) -> Approval | None:
    """The Approval a front end's `decision` payload stands for, or None if it is not a valid one.

    A pattern choice needs a non-blank rule; the rule is kept only for pattern choices and the
    reason only for a denial, both stripped. With `per_call_only` only once or deny are valid.
    """
    if not isinstance(payload, dict):
        return None
    value, rule, reason = payload.get("choice"), payload.get("rule", ""), payload.get("reason", "")
    if not isinstance(value, str) or not isinstance(rule, str) or not isinstance(reason, str):
        return None
    try:
        choice = ApprovalChoice(value)
    except ValueError:
        return None
    if per_call_only and choice not in PER_CALL_CHOICES:
        return None
    rule = rule.strip() if choice in PATTERN_CHOICES else ""
    if choice in PATTERN_CHOICES and not rule:
        return None
    return Approval(
        choice, rule=rule, reason=reason.strip() if choice is ApprovalChoice.DENY else ""
    )


def _payload(approval: Approval) -> dict[str, str]:
    return {"choice": approval.choice.value, "rule": approval.rule, "reason": approval.reason}


class ApprovalWidget(anywidget.AnyWidget):
    """Asks the user to approve one tool call; `on_decision` hears the answer, once.

    The front end sets `decision` when a button is clicked; the first valid one wins and later or
    invalid values are put back. `cancel()` closes the card without an answer.
    """

    _esm = Path(__file__).with_name("approval.js")
    _css = Path(__file__).with_name("approval.css")

    tool = traitlets.Unicode("", help="The tool's name: Read, Glob, Grep, Bash, ...").tag(sync=True)
    description = traitlets.Unicode(
        "", help="One line saying exactly what will happen: the command, the path, the URL."
    ).tag(sync=True)
    preview = traitlets.Unicode("", help="A diff (Edit, Write) or the command; may be empty.").tag(
        sync=True
    )
    preview_kind = traitlets.Unicode(
        "code", help="How the front end shows the preview: 'diff' or 'code'."
    ).tag(sync=True)
    suggestion = traitlets.Unicode(
        "", help="The generalized rule offered for the pattern choices, e.g. Bash(pytest *)."
    ).tag(sync=True)
    rule = traitlets.Unicode(
        "", help="The rule text as the user edited it; starts as suggestion."
    ).tag(sync=True)
    reason = traitlets.Unicode("", help="Why the user denies, as typed so far.").tag(sync=True)
    per_call_only = traitlets.Bool(
        False, help="A protected path: only 'Approve once' and 'Deny' are offered."
    ).tag(sync=True)
    decision = traitlets.Dict(
        help="Set by the front end on a click: {choice, rule, reason}; {} while none."
    ).tag(sync=True)
    state = traitlets.Unicode(PENDING, help="'pending', 'decided' or 'cancelled'.").tag(sync=True)
    note = traitlets.Unicode("", help="Why the card was cancelled (see cancel()).").tag(sync=True)

    def __init__(
        self,
        tool: str,
        description: str,
        preview: str = "",
        suggestion: str = "",
        *,
        per_call_only: bool = False,
    ) -> None:
        kind = "diff" if tool in DIFF_TOOLS else "code"
        super().__init__(
            tool=tool,
            description=description,
            preview=preview,
            preview_kind=kind,
            suggestion=suggestion,
            rule=suggestion,
            per_call_only=per_call_only,
        )
        # A decision comes from the kernel's comm handler, a cancel perhaps from another thread.
        self._lock = threading.RLock()  # setting `decision` re-enters the observer
        self._approval: Approval | None = None
        self._callbacks: list[Callable[[Approval], None]] = []
        self.observe(self._on_decision_change, names="decision")

    @property
    def approval(self) -> Approval | None:
        """The user's answer; None while pending or after cancel()."""
        return self._approval

    def on_decision(self, callback: Callable[[Approval], None]) -> None:
        """Call `callback(approval)` once, when the answer arrives (at once if it already has)."""
        with self._lock:
            approval = self._approval
            if approval is None:
                self._callbacks.append(callback)
        if approval is not None:
            callback(approval)

    def cancel(self, note: str = "") -> bool:
        """Close the card without an answer (the turn was stopped); False if already closed."""
        with self._lock:
            if self.state != PENDING:
                return False
            self._callbacks.clear()
            with self.hold_sync():
                self.state = CANCELLED
                self.note = note
                self.decision = {}
        return True

    def _on_decision_change(self, change: dict[str, Any]) -> None:
        approval = parse_decision(change["new"], per_call_only=self.per_call_only)
        with self._lock:
            if approval is None or self.state != PENDING:
                # Put back what stands, so every view shows the same card.
                kept = {} if self._approval is None else _payload(self._approval)
                if change["new"] != kept:
                    self.decision = kept
                return
            self._approval = approval
            callbacks, self._callbacks = self._callbacks, []
            with self.hold_sync():
                self.state = DECIDED
                self.decision = _payload(approval)  # the stripped form, for every view
        for callback in callbacks:
            callback(approval)

    def _plain_text(self) -> str:
        lines = [f"{self.tool}: {self.description}"]
        if self.preview:
            lines.append(self.preview.rstrip("\n"))
        if self.state == CANCELLED:
            lines.append(cancelled_text(self.note))
        elif self._approval is not None:
            lines.append(outcome_text(self._approval))
        else:
            offered = [c for c in CHOICE_LABELS if not self.per_call_only or c in PER_CALL_CHOICES]
            if self.suggestion and not self.per_call_only:
                lines.append(f"Rule for the pattern choices: {self.suggestion}")
            lines.append("Choices: " + " · ".join(CHOICE_LABELS[c] for c in offered))
        return "\n".join(lines)

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            bundle[0]["text/plain"] = self._plain_text()
        return bundle
