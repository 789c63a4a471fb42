"""Tool calls in a real kernel, driven by Claude's native tool use from a local Messages server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_server import ClaudeServer, ScriptedReply, ToolUse
from conftest import write_config
from kernel_client import KernelSession


def bash_then_answer(command: str) -> Any:
    """Claude asks for one Bash call, then answers once it has seen the result."""

    def reply(body: dict[str, Any]) -> ScriptedReply:
        last = body["messages"][-1]["content"]
        if isinstance(last, list) and last and last[0].get("type") == "tool_result":
            return ScriptedReply(text=f"The tool said: {last[0]['content'][:60]}")
        return ScriptedReply(text="Running it.", tool_uses=(ToolUse("Bash", {"command": command}),))

    return reply


@pytest.fixture
def kernel(
    shammah_home: Path, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[KernelSession, ClaudeServer, Path]]:
    sentinel = tmp_path / "sentinel"
    with ClaudeServer(reply=bash_then_answer(f"touch {sentinel}")) as claude:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        write_config(shammah_home, f'[model]\nid = "{tiny_model}"\nroute = "claude"\n')
        session = KernelSession.start()
        try:
            yield session, claude, sentinel
        finally:
            session.stop()


def approval_comm(message: dict[str, Any]) -> str | None:
    content = message["content"]
    if message["msg_type"] == "comm_open" and "suggestion" in content["data"].get("state", {}):
        return str(content["comm_id"])
    return None


def click(decision: dict[str, str]) -> Any:
    def react(session: KernelSession, message: dict[str, Any]) -> None:
        comm_id = approval_comm(message)
        if comm_id:
            session.send_widget_state(comm_id, {"decision": decision})

    return react


def test_headless_runs_deny_unapproved_calls_naming_a_rule(
    kernel: tuple[KernelSession, ClaudeServer, Path],
) -> None:
    session, claude, sentinel = kernel
    run = session.execute("make the file", cell_id=None, allow_stdin=False)
    assert run.status == "ok"
    assert not sentinel.exists(), "a call nobody approved must never run"
    result = claude.requests[-1].body["messages"][-1]["content"][0]
    assert (
        result["is_error"] and "/patterns add" in result["content"] and "Bash(" in result["content"]
    )


def test_approving_in_the_widget_runs_the_call(
    kernel: tuple[KernelSession, ClaudeServer, Path],
) -> None:
    session, claude, sentinel = kernel
    run = session.execute(
        "make the file", react=click({"choice": "once", "rule": "", "reason": ""})
    )
    assert run.status == "ok" and sentinel.exists()
    assert "The tool said:" in run.markdown
    assert "Bash" in run.displayed  # the call and its result are shown in the cell


def test_denying_in_the_widget_tells_the_model_the_reason(
    kernel: tuple[KernelSession, ClaudeServer, Path],
) -> None:
    session, claude, sentinel = kernel
    deny = {"choice": "deny", "rule": "", "reason": "not on my machine"}
    run = session.execute("make the file", react=click(deny))
    assert run.status == "ok" and not sentinel.exists()
    result = claude.requests[-1].body["messages"][-1]["content"][0]
    assert "not on my machine" in result["content"]


def test_an_always_pattern_lets_the_next_matching_call_run_unasked(
    kernel: tuple[KernelSession, ClaudeServer, Path], shammah_home: Path
) -> None:
    session, claude, sentinel = kernel
    pattern = {"choice": "always_pattern", "rule": "Bash(touch *)", "reason": ""}
    session.execute("first", react=click(pattern))
    assert "Bash(touch *)" in (shammah_home / "permissions.json").read_text()
    sentinel.unlink()
    second = session.execute("again", timeout=60)  # no react: a widget would wait forever
    assert sentinel.exists() and not [m for m in second.messages if approval_comm(m)]
    assert "Bash(touch *)" in session.execute("/patterns list").displayed


def test_the_terminal_asks_on_stdin(kernel: tuple[KernelSession, ClaudeServer, Path]) -> None:
    session, claude, sentinel = kernel
    run = session.execute("make the file", cell_id=None, stdin_answers=["o"])
    assert sentinel.exists() and "Shammah wants to run Bash" in run.stdout


def test_interrupting_a_pending_approval_denies_it(
    kernel: tuple[KernelSession, ClaudeServer, Path],
) -> None:
    session, claude, sentinel = kernel
    run = session.execute(
        "make the file", interrupt_when=lambda r: any(approval_comm(m) for m in r.messages)
    )
    assert not sentinel.exists()
    closed = [m for m in run.messages if m["msg_type"] == "comm_msg"]
    assert any(m["content"]["data"]["state"].get("state") == "cancelled" for m in closed)
    assert session.execute("/status").status == "ok"
