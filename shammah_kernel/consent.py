"""The consent gate: a tool call runs only when a rule allows it or the user approves it.

Runs on the turn's thread. Asking means emitting a `ToolCallProposed` event and waiting for its
answer (the kernel renders the approval widget); a stop request counts as a denial.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, RuleError, ToolError
from .events import (
    Approval,
    ApprovalChoice,
    Message,
    Role,
    ToolCall,
    ToolCallFinished,
    ToolCallProposed,
    ToolCallStarted,
    ToolOutput,
    ToolResult,
)
from .permissions import Decision, PermissionPolicy, Rule, suggest_rule
from .steps import ToolSchemas
from .turn import TurnHandle

if TYPE_CHECKING:
    from .tools import Tool


class ConsentGate:
    def __init__(self, workspace: Path, policy: PermissionPolicy) -> None:
        self.workspace = workspace
        self.policy = policy

    def schemas(self) -> ToolSchemas:
        from .tools import ALL_TOOLS  # the tools load on the first turn, not at kernel start

        return tuple((t.name, t.description, t.parameters) for t in ALL_TOOLS.values())

    def run(self, call: ToolCall, handle: TurnHandle) -> Message:
        result = self._decide_and_run(call, handle)
        return Message(Role.TOOL, result.content, tool_call_id=call.id, is_error=result.is_error)

    def _decide_and_run(self, call: ToolCall, handle: TurnHandle) -> ToolResult:
        from .tools import find_tool

        try:
            tool = find_tool(call)
            description = tool.describe(call.arguments, self.workspace)
            preview = tool.preview(call.arguments, self.workspace)
        except ToolError as e:  # a bad call is the model's to fix: tell it, ask no one
            return self._refused(call, call.name, str(e), handle)
        specifiers = tool.specifiers(call.arguments, self.workspace)
        decision, rule = self._decide(call.name, specifiers)
        if decision is Decision.DENY:
            return self._refused(call, description, f"Denied by the rule {rule}.", handle)
        if decision is Decision.ASK:
            suggestion = str(suggest_rule(call.name, specifiers[0]))
            approval = self._ask(call, description, preview, suggestion, handle)
            if not approval.approved:
                why = f" The user's reason: {approval.reason}" if approval.reason else ""
                denied = f"The user denied this call.{why}"
                return self._refused(call, description, denied, handle)
            self._remember(approval, call.name, specifiers[0])
        return self._execute(call, tool, description, handle)

    def _decide(self, tool: str, specifiers: tuple[str, ...]) -> tuple[Decision, Rule | None]:
        """Every specifier is checked (WebFetch has a domain and a URL): deny wins, then allow."""
        decisions = [
            self.policy.decide(tool, s, inside_workspace=not os.path.isabs(s)) for s in specifiers
        ]
        for wanted in (Decision.DENY, Decision.ALLOW):
            for decision, rule in decisions:
                if decision is wanted:
                    return decision, rule
        return Decision.ASK, None

    def _ask(
        self, call: ToolCall, description: str, preview: str, suggestion: str, handle: TurnHandle
    ) -> Approval:
        answer: Future[Approval] = Future()
        handle.emit(ToolCallProposed(call, description, preview, suggestion, answer))
        while True:  # wait in slices: the stop button cancels a pending approval as a denial
            if handle.cancelled:
                answer.cancel()
                return Approval(ApprovalChoice.DENY, reason="the user stopped the turn")
            try:
                return answer.result(timeout=0.1)
            except FutureTimeout:
                continue

    def _remember(self, approval: Approval, tool: str, specifier: str) -> None:
        exact = Rule(tool, specifier)
        try:
            pattern = Rule.parse(approval.rule) if approval.rule else exact
        except RuleError:
            pattern = exact  # an unreadable edited rule: remember only this exact call
        choice = approval.choice
        if choice is ApprovalChoice.SESSION:
            self.policy.add(Decision.ALLOW, exact)
        elif choice is ApprovalChoice.SESSION_PATTERN:
            self.policy.add(Decision.ALLOW, pattern)
        elif choice in (ApprovalChoice.ALWAYS, ApprovalChoice.ALWAYS_PATTERN):
            rule = exact if choice is ApprovalChoice.ALWAYS else pattern
            try:
                if self.policy.store is None:
                    raise ConfigError("no rule file")
                self.policy.store.add(Decision.ALLOW, rule)
            except ConfigError:  # an unwritable permissions.json: keep the rule for the session
                self.policy.add(Decision.ALLOW, rule)

    def _execute(
        self, call: ToolCall, tool: Tool, description: str, handle: TurnHandle
    ) -> ToolResult:
        from .tools import ToolContext, run_tool

        handle.emit(ToolCallStarted(call, description))
        context = ToolContext(
            self.workspace,
            on_output=lambda text: handle.emit(ToolOutput(call.id, text)),
            should_stop=lambda: handle.cancelled,
        )
        result = run_tool(call, context)
        handle.emit(ToolCallFinished(call, description, result))
        return result

    def _refused(
        self, call: ToolCall, description: str, message: str, handle: TurnHandle
    ) -> ToolResult:
        result = ToolResult(call.id, message, is_error=True)
        handle.emit(ToolCallFinished(call, description, result, refused=True))
        return result
