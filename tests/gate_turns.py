"""Turns for consent-gate tests: questions answered at once, or as a headless run answers them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shammah_kernel.approvals import Approver, Frontend
from shammah_kernel.consent import ConsentGate
from shammah_kernel.events import Approval, ToolCallProposed, TurnEvent
from shammah_kernel.permissions import Decision, PermissionPolicy, Rule
from shammah_kernel.rule_store import RuleStore
from shammah_kernel.turn import TurnHandle

Answer = Callable[[ToolCallProposed], Approval] | None


class Answering(TurnHandle):
    """A turn whose questions `answer` answers at once; None answers as a headless run does
    (nbclient, papermill: nobody to ask, so every question is denied)."""

    def __init__(self, answer: Answer = None) -> None:
        super().__init__()
        self.answer = answer
        self.proposed: list[ToolCallProposed] = []

    def emit(self, event: TurnEvent) -> None:
        if isinstance(event, ToolCallProposed):
            self.proposed.append(event)
            if self.answer is None:
                Approver(None, Frontend.HEADLESS, input).ask(event)  # type: ignore[arg-type]
            else:
                event.answer.set_result(self.answer(event))
        super().emit(event)


def rules_gate(
    workspace: Path, *rules: tuple[Decision, str], store: RuleStore | None = None
) -> ConsentGate:
    """A gate over `workspace` with these session rules (and a stored rule file, if any)."""
    policy = PermissionPolicy(store=store)
    for kind, text in rules:
        policy.add(kind, Rule.parse(text))
    return ConsentGate(workspace, policy)
