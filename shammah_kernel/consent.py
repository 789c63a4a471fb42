"""The consent gate: a tool call runs only when a rule allows it or the user approves it.

Runs on the turn's thread. Asking means emitting a `ToolCallProposed` event and waiting for its
answer (the kernel renders the approval widget); a stop request counts as a denial.

Decide first: nothing a tool computes from the file system (a diff preview, whether a file
exists) is made before the decision, and a refused call gets a message that depends on the call's
arguments and rules only, never on what a file holds. Protected paths (protected_paths.py) always
ask, per call, whatever the allow rules say.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
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
from .protected_paths import Protection, protection, read_protection
from .shell_grammar import parse_line
from .steps import ToolSchemas
from .turn import TurnHandle

if TYPE_CHECKING:
    from .tools import Tool


_SEARCH_TOOLS = frozenset({"Grep", "Glob"})
_WRITE_TOOLS = frozenset({"Edit", "Write"})


class ConsentGate:
    def __init__(
        self,
        workspace: Path,
        policy: PermissionPolicy,
        *,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.workspace = workspace
        self.policy = policy
        self.env = env

    def schemas(self) -> ToolSchemas:
        from .tools import ALL_TOOLS  # the tools load on the first turn, not at kernel start

        return tuple((t.name, t.description, t.parameters) for t in ALL_TOOLS.values())

    def run(self, call: ToolCall, handle: TurnHandle) -> Message:
        result = self._decide_and_run(call, handle)
        return Message(Role.TOOL, result.content, tool_call_id=call.id, is_error=result.is_error)

    def _decide_and_run(self, call: ToolCall, handle: TurnHandle) -> ToolResult:
        from .tools import find_tool

        try:  # what the rules see: computed from the arguments (and symlinks) only
            tool = find_tool(call)
            specifiers = tool.specifiers(call.arguments, self.workspace)
            description = tool.describe(call.arguments, self.workspace)
            guarded = self._protection(call)
        except ToolError as e:  # a bad call is the model's to fix: tell it, ask no one
            return self._refused(call, call.name, str(e), handle)
        except (ValueError, OSError, RuntimeError) as e:  # a NUL byte, a symlink loop in a path
            why = f"invalid arguments for {call.name}: {type(e).__name__}: {e}"
            return self._refused(call, call.name, why, handle)
        decision, rule = self._decide(call.name, specifiers)
        if decision is Decision.DENY:
            return self._refused(call, description, f"Denied by the rule {rule}.", handle)
        if decision is Decision.ASK or guarded is not None:
            approval = self._ask(call, tool, description, specifiers[0], guarded, handle)
            if not approval.approved:
                why = f" The user's reason: {approval.reason}" if approval.reason else ""
                denied = f"The user denied this call.{why}"
                return self._refused(call, description, denied, handle)
            if guarded is None:  # a protected path is opened per call: nothing is remembered
                self._remember(approval, call.name, specifiers[0])
        return self._execute(call, tool, description, handle)

    def _decide(self, tool: str, specifiers: tuple[str, ...]) -> tuple[Decision, Rule | None]:
        """Every specifier is checked (WebFetch has a domain and a URL): deny wins, then allow.
        Edit reads the file it changes, so a rule denying a Read of it denies the Edit too."""
        decisions = [self._policy_decision(tool, s) for s in specifiers]
        if tool == "Edit":
            decisions += [d for d in map(self._read_decision, specifiers) if d[0] is Decision.DENY]
        for wanted in (Decision.DENY, Decision.ALLOW):
            for decision, rule in decisions:
                if decision is wanted:
                    return decision, rule
        return Decision.ASK, None

    def _policy_decision(self, tool: str, specifier: str) -> tuple[Decision, Rule | None]:
        return self.policy.decide(tool, specifier, inside_workspace=not os.path.isabs(specifier))

    def _read_decision(self, specifier: str) -> tuple[Decision, Rule | None]:
        return self._policy_decision("Read", specifier)

    # --- protected paths

    def _protection(self, call: ToolCall) -> Protection | None:
        """The protection of what the call touches: reading a secret place, writing any
        protected path, or a Bash line naming one; None when nothing protected is touched."""
        from .tools.arguments import str_arg
        from .tools.base import resolve_path
        from .tools.glob import search_root

        arguments = call.arguments
        if call.name in ("Read", "Edit", "Write", "Grep"):
            raw = str_arg(arguments, "path", ".")
            resolve_path(raw, self.workspace)  # raises ToolError for a path no tool can use
            written = Path(os.path.expanduser(raw))
            if call.name in _WRITE_TOOLS:
                return protection(written, self.workspace)
            return read_protection(written, self.workspace)
        if call.name == "Glob":
            lexical, _ = search_root(arguments, self.workspace)
            return read_protection(lexical, self.workspace)
        if call.name == "Bash":
            return self._bash_protection(str_arg(arguments, "command"))
        return None

    def _bash_protection(self, command: str) -> Protection | None:
        """A Bash line that names a protected path in any word or redirect target asks per call:
        each word (and the value after `=`, and after a short option) is taken as a path."""
        for word in _bash_words(command):
            for candidate in _path_candidates(word):
                try:
                    path = Path(os.path.expanduser(candidate))
                except (RuntimeError, ValueError):
                    path = Path(candidate)
                found = protection(path, self.workspace)
                if found is not None:
                    return found
        return None

    # --- asking

    def _ask(
        self,
        call: ToolCall,
        tool: Tool,
        description: str,
        specifier: str,
        guarded: Protection | None,
        handle: TurnHandle,
    ) -> Approval:
        preview = self._preview(tool, call)
        if guarded is not None:
            description = f"{description} ({guarded.reason}: approve each time)"
            suggestion = ""
        else:
            suggestion = str(suggest_rule(call.name, specifier))
        answer: Future[Approval] = Future()
        handle.emit(
            ToolCallProposed(
                call, description, preview, suggestion, answer, per_call_only=guarded is not None
            )
        )
        while True:  # wait in slices: the stop button cancels a pending approval as a denial
            if handle.cancelled:
                answer.cancel()
                return Approval(ApprovalChoice.DENY, reason="the user stopped the turn")
            try:
                approval = answer.result(timeout=0.1)
            except FutureTimeout:
                continue
            if guarded is not None and approval.approved:
                return Approval(ApprovalChoice.ONCE)  # whatever a forged answer says
            return approval

    def _preview(self, tool: Tool, call: ToolCall) -> str:
        """The diff shown with the question; made only now, for the user's eyes. A call that
        will fail says so here, not to the model: only the user's answer reaches the model."""
        try:
            return tool.preview(call.arguments, self.workspace)
        except ToolError as error:
            return f"(this call will fail if approved: {error})"

    def _remember(self, approval: Approval, tool: str, specifier: str) -> None:
        exact = Rule.exact(tool, specifier)
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

    # --- running

    def _execute(
        self, call: ToolCall, tool: Tool, description: str, handle: TurnHandle
    ) -> ToolResult:
        from .tools import ToolContext, run_tool

        handle.emit(ToolCallStarted(call, description))
        context = ToolContext(
            self.workspace,
            on_output=lambda text: handle.emit(ToolOutput(call.id, text)),
            should_stop=lambda: handle.cancelled,
            may_read=self._reader(call),
            may_fetch_private=self._may_fetch_private,
            env=self.env,
        )
        result = run_tool(call, context)
        handle.emit(ToolCallFinished(call, description, result))
        return result

    def _reader(self, call: ToolCall) -> Callable[[Path], bool]:
        """`may_read` for a search: a file is listed or opened only when a Read of it would be
        allowed (no deny or ask rule; allowed by a rule or the default) or it lies in the folder
        this call was allowed to search; a secret place only when that folder is one."""
        if call.name not in _SEARCH_TOOLS:
            return lambda path: False  # only search tools open files they were not named
        root = self._search_root(call)
        root_secret = root is not None and read_protection(root, self.workspace) is not None
        names = ("Read", call.name)
        policy = self._snapshot()  # one read of the rule files for the whole search

        def may_read(path: Path) -> bool:
            try:
                real = path.resolve()
            except (OSError, RuntimeError, ValueError):
                return False
            within = root is not None and (real == root or real.is_relative_to(root))
            if read_protection(path, self.workspace) is not None and not (within and root_secret):
                return False
            from .tools.base import display_path

            specifier = display_path(real, self.workspace)
            allowed = within
            for name in names:
                inside = not os.path.isabs(specifier)
                decision, rule = policy.decide(name, specifier, inside_workspace=inside)
                if decision is Decision.DENY or (decision is Decision.ASK and rule is not None):
                    return False
                allowed = allowed or decision is Decision.ALLOW
            return allowed

        return may_read

    def _snapshot(self) -> PermissionPolicy:
        """The rules in force now, session and stored, with no file to re-read per decision."""
        stored = self.policy.store.list() if self.policy.store is not None else []
        rules = {
            kind: [*getattr(self.policy, kind.value), *(s.rule for s in stored if s.kind is kind)]
            for kind in Decision
        }
        return PermissionPolicy(rules[Decision.ALLOW], rules[Decision.ASK], rules[Decision.DENY])

    def _search_root(self, call: ToolCall) -> Path | None:
        from .tools.arguments import str_arg
        from .tools.base import resolve_path
        from .tools.glob import search_root

        try:
            if call.name == "Glob":
                return search_root(call.arguments, self.workspace)[1]
            return resolve_path(str_arg(call.arguments, "path", "."), self.workspace)
        except (ToolError, OSError, RuntimeError, ValueError):
            return None

    def _may_fetch_private(self, host: str, port: int) -> bool:
        """A loopback or private address only for a host an allow rule names exactly:
        ``WebFetch(domain:HOST)``, never the blanket ``WebFetch`` or a wildcard."""
        wanted = host.strip().lower().rstrip(".")
        if not wanted or "*" in wanted:
            return False
        if self._policy_decision("WebFetch", f"domain:{wanted}")[0] is Decision.DENY:
            return False
        return any(_names_host(rule, wanted) for rule in self._allow_rules())

    def _allow_rules(self) -> list[Rule]:
        stored = self.policy.store.list() if self.policy.store is not None else []
        return [*self.policy.allow, *(s.rule for s in stored if s.kind is Decision.ALLOW)]

    def _refused(
        self, call: ToolCall, description: str, message: str, handle: TurnHandle
    ) -> ToolResult:
        result = ToolResult(call.id, message, is_error=True)
        handle.emit(ToolCallFinished(call, description, result, refused=True))
        return result


def _names_host(rule: Rule, host: str) -> bool:
    if rule.tool != "WebFetch" or rule.specifier is None:
        return False
    if not rule.specifier.startswith("domain:"):
        return False
    return rule.specifier.removeprefix("domain:").strip().lower().rstrip(".") == host


def _bash_words(command: str) -> list[str]:
    """Every word and redirect target of every simple command of a Bash line; the raw
    blank-separated words as well, so a line the grammar reads differently still counts."""
    words = command.split()
    for simple in parse_line(command).commands:
        words += simple.words
        words += [redirect.target for redirect in simple.redirects]
    return words


def _path_candidates(word: str) -> list[str]:
    """`word` as a path, and the paths an option or assignment may carry: `--out=F`, `-oF`."""
    candidates = [word.strip("'\"")]
    if "=" in word:
        candidates.append(word.split("=", 1)[1])
    if word.startswith("-") and not word.startswith("--") and len(word) > 2:
        candidates.append(word[2:])
    for operator in (">>", ">|", "&>", ">", "<"):  # `echo x >~/.bashrc` split on blanks
        if operator in word:
            candidates.append(word.split(operator)[-1])
    return [c for c in candidates if c]
