"""The tool loop with a deterministic backend: scripted tool calls, real tools, real rules."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from shammah_kernel.consent import ConsentGate
from shammah_kernel.events import (
    Approval,
    ApprovalChoice,
    GenerationOptions,
    GenerationStats,
    Message,
    Role,
    TextDelta,
    ToolCallFinished,
    ToolCallProposed,
    TurnEvent,
    TurnFinished,
)
from shammah_kernel.mlx_backend import Generation
from shammah_kernel.permissions import Decision, PermissionPolicy, Rule
from shammah_kernel.rule_store import RuleStore
from shammah_kernel.session import REPEAT_LIMIT, ChatSession
from shammah_kernel.worker import ModelWorker


def bash(command: str) -> str:
    call = {"name": "Bash", "arguments": {"command": command}}
    return f"Let me run it.\n<tool_call>\n{json.dumps(call)}\n</tool_call>"


class ScriptedBackend:
    """Plays a script of replies, one per model step, and records what each step was shown."""

    name = "scripted"
    supports_tools = True

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[list[Message]] = []

    def count_tokens(self, messages: Sequence[Message], tools: object = ()) -> int:
        return sum(len(m.content.split()) + 4 for m in messages)

    def generate(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        *,
        tools: object = (),
        on_text: Callable[[str], None] = lambda _: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Generation:
        self.prompts.append(list(messages))
        text = self.replies.pop(0) if self.replies else "Done."
        for piece in text.split(" "):
            on_text(piece + " ")
        text = " ".join(text.split(" ")) + " "
        stats = GenerationStats(self.name, 1, 0, len(text.split()), 0.0, 0.0, "stop")
        return Generation(text, (), stats, False)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    return folder


def session_for(
    backend: ScriptedBackend, workspace: Path, store: RuleStore | None = None
) -> ChatSession:
    worker: ModelWorker[ScriptedBackend] = ModelWorker(lambda report: backend, "scripted")
    gate = ConsentGate(workspace, PermissionPolicy(store=store))
    return ChatSession(worker, GenerationOptions(), gate=gate)  # type: ignore[arg-type]


def run(
    session: ChatSession, text: str, answer: Callable[[ToolCallProposed], Approval]
) -> list[TurnEvent]:
    events = []
    for event in session.ask(text):
        if isinstance(event, ToolCallProposed):
            event.answer.set_result(answer(event))
        events.append(event)
    return events


def tool_messages(backend: ScriptedBackend) -> list[str]:
    return [m.content for m in backend.prompts[-1] if m.role is Role.TOOL]


def test_an_approved_call_runs_and_the_model_sees_its_output(workspace: Path) -> None:
    backend = ScriptedBackend([bash("echo hello > sentinel && cat sentinel"), "It printed hello."])
    session = session_for(backend, workspace)
    events = run(session, "make a file", lambda e: Approval(ApprovalChoice.ONCE))
    (proposed,) = [e for e in events if isinstance(e, ToolCallProposed)]
    assert "echo hello > sentinel" in proposed.description
    assert proposed.suggestion.startswith("Bash(")
    assert (workspace / "sentinel").read_text() == "hello\n"
    assert "hello" in tool_messages(backend)[0]
    finished = events[-1]
    assert isinstance(finished, TurnFinished) and finished.text.strip() == "It printed hello."
    shown = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert "<tool_call>" not in shown  # the markup never reaches the cell
    (turn,) = session.conversation.turns
    assert [m.role for m in turn.steps] == [Role.ASSISTANT, Role.TOOL]


def test_a_denied_call_never_runs_and_the_model_hears_why(workspace: Path) -> None:
    backend = ScriptedBackend([bash("touch sentinel"), "Understood."])
    session = session_for(backend, workspace)
    run(session, "go", lambda e: Approval(ApprovalChoice.DENY, reason="not now"))
    assert not (workspace / "sentinel").exists()
    assert tool_messages(backend) == ["The user denied this call. The user's reason: not now"]


def test_a_deny_rule_wins_without_asking(workspace: Path) -> None:
    backend = ScriptedBackend([bash("touch sentinel"), "ok"])
    session = session_for(backend, workspace)
    assert session.gate is not None
    session.gate.policy.add(Decision.ALLOW, Rule.parse("Bash"))  # type: ignore[attr-defined]
    session.gate.policy.add(Decision.DENY, Rule.parse("Bash(touch *)"))  # type: ignore[attr-defined]
    events = run(session, "go", lambda e: pytest.fail("a denied call must not ask"))
    assert not (workspace / "sentinel").exists()
    assert "Denied by the rule Bash(touch *)" in tool_messages(backend)[0]
    assert any(isinstance(e, ToolCallFinished) and e.result.is_error for e in events)


def test_a_session_pattern_allows_the_next_matching_call(workspace: Path) -> None:
    backend = ScriptedBackend([bash("echo one"), "first", bash("echo two"), "second"])
    session = session_for(backend, workspace)
    asked: list[str] = []

    def answer(event: ToolCallProposed) -> Approval:
        asked.append(event.description)
        return Approval(ApprovalChoice.SESSION_PATTERN, rule="Bash(echo *)")

    run(session, "one", answer)
    run(session, "two", answer)
    assert len(asked) == 1 and "two" in tool_messages(backend)[-1]


def test_always_pattern_is_remembered_in_permissions_json(workspace: Path, tmp_path: Path) -> None:
    store = RuleStore(tmp_path / "permissions.json")
    backend = ScriptedBackend([bash("echo one"), "ok"])
    run(
        session_for(backend, workspace, store),
        "go",
        lambda e: Approval(ApprovalChoice.ALWAYS_PATTERN, rule="Bash(echo *)"),
    )
    saved = json.loads((tmp_path / "permissions.json").read_text())
    assert saved["allow"] == ["Bash(echo *)"]
    again = ScriptedBackend([bash("echo two"), "ok"])
    run(session_for(again, workspace, store), "go", lambda e: pytest.fail("remembered: no ask"))
    assert "two" in tool_messages(again)[-1]


def test_stopping_while_a_call_waits_for_approval_denies_it(workspace: Path) -> None:
    backend = ScriptedBackend([bash("touch sentinel"), "stopped"])
    session = session_for(backend, workspace)
    handle = session.ask("go")
    events = []
    for event in handle:
        events.append(event)
        if isinstance(event, ToolCallProposed):
            handle.cancel()  # the stop button; nobody answers the widget
    assert not (workspace / "sentinel").exists()
    assert isinstance(events[-1], TurnFinished)
    (refused,) = [e for e in events if isinstance(e, ToolCallFinished)]
    assert refused.result.is_error and "stopped the turn" in refused.result.content


def test_the_same_call_repeated_is_stopped(workspace: Path) -> None:
    backend = ScriptedBackend([bash("echo again")] * (REPEAT_LIMIT + 1) + ["gave up"])
    session = session_for(backend, workspace)
    run(session, "loop", lambda e: Approval(ApprovalChoice.SESSION))
    assert "already made" in tool_messages(backend)[-1]


def test_malformed_calls_are_reported_to_the_model(workspace: Path) -> None:
    broken = "<tool_call>\n{not json}\n</tool_call>"
    backend = ScriptedBackend([broken, "fixed"])
    session = session_for(backend, workspace)
    events = run(session, "go", lambda e: pytest.fail("nothing to ask"))
    assert "was not run" in tool_messages(backend)[0]
    assert isinstance(events[-1], TurnFinished)


def test_reading_inside_the_workspace_needs_no_approval(workspace: Path) -> None:
    (workspace / "notes.txt").write_text("the answer is 42\n")
    read = {"name": "Read", "arguments": {"path": "notes.txt"}}
    backend = ScriptedBackend([f"<tool_call>{json.dumps(read)}</tool_call>", "42"])
    run(session_for(backend, workspace), "read it", lambda e: pytest.fail("reads are allowed"))
    assert "the answer is 42" in tool_messages(backend)[0]


def test_private_hosts_need_a_rule_naming_the_host(workspace: Path) -> None:
    gate = ConsentGate(workspace, PermissionPolicy(), env={"PATH": "/usr/bin"})
    assert not gate._may_fetch_private("localhost", 8888)
    for blanket in ("WebFetch", "WebFetch(domain:*)", "WebFetch(domain:*.localhost)"):
        gate.policy.add(Decision.ALLOW, Rule.parse(blanket))
    assert not gate._may_fetch_private("localhost", 8888)  # no blanket rule reaches loopback
    gate.policy.add(Decision.ALLOW, Rule.parse("WebFetch(domain:LocalHost.)"))
    assert gate._may_fetch_private("localhost", 8888)
    assert not gate._may_fetch_private("127.0.0.1", 8888)
    gate.policy.add(Decision.DENY, Rule.parse("WebFetch(domain:localhost)"))
    assert not gate._may_fetch_private("localhost", 8888)


def test_the_gate_runs_tools_with_its_environment(workspace: Path) -> None:
    gate = ConsentGate(workspace, PermissionPolicy(), env={"ONLY": "this"})
    gate.policy.add(Decision.ALLOW, Rule.parse("Bash(env)"))
    backend = ScriptedBackend([bash("env"), "ok"])
    session = ChatSession(
        ModelWorker(lambda report: backend, "scripted"),  # type: ignore[arg-type]
        GenerationOptions(),
        gate=gate,
    )
    run(session, "go", lambda e: pytest.fail("allowed by a rule"))
    seen = tool_messages(backend)
    assert "ONLY=this" in seen[0]
