"""Tool approvals in JupyterLab + Chromium on the Shammah kernel; Claude is scripted to ask
for Bash calls."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from claude_server import ClaudeServer, ScriptedReply, ToolUse
from conftest import write_config
from lab_harness import (
    SHAMMAH,
    browser_test,
    expect,
    lab_page,
    run_cell,
    shot,
    wait_done,
    wait_for_kernel,
    write_notebook,
)

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

REASON = "not in my work folder, please"
ANSWER = "The command finished:"


def run_the_quoted_command(body: dict[str, Any]) -> ScriptedReply:
    """Claude asks to run the cell's `command` with Bash, then answers with the tool's result."""
    last = body["messages"][-1]["content"]
    if isinstance(last, list) and last and last[0].get("type") == "tool_result":
        return ScriptedReply(text=f"{ANSWER} {last[0]['content']}")
    command = re.findall(r"`([^`]+)`", str(last))[-1]
    return ScriptedReply(text="I'll run it.", tool_uses=(ToolUse("Bash", {"command": command}),))


@pytest.fixture
def claude(
    shammah_home: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ClaudeServer]:
    with ClaudeServer(reply=run_the_quoted_command) as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        write_config(shammah_home, f'[model]\nid = "{tiny_model}"\nroute = "claude"\n')
        yield server


def ask(page: Page, index: int, command: str) -> tuple[Locator, Locator]:
    """Runs cell `index`; returns it and the approval card it waits on."""
    target = run_cell(page, index)
    card = target.locator(".shammah-approval")
    expect(card).to_have_attribute("data-state", "pending")
    expect(card.locator(".shammah-approval-description")).to_contain_text(command)
    expect(target.locator(".jp-InputPrompt")).to_have_text("[*]:")
    return target, card


def expect_tool_block_and_answer(target: Locator, command: str, state: str, output: str) -> None:
    """The call's `<details>` (opened here to show its output), then Claude's answer quoting it."""
    wait_done(target)
    block = target.locator(".jp-RenderedMarkdown details")
    expect(block).to_have_count(1)
    summary = rf"Bash Run: {re.escape(command)} · {state}"
    expect(block.locator("summary")).to_have_text(re.compile(summary))
    if block.get_attribute("open") is None:
        block.locator("summary").click()
    expect(block.locator("pre")).to_contain_text(output)
    expect(target.locator(".jp-RenderedMarkdown p", has_text=ANSWER)).to_contain_text(output)


@browser_test()
def test_approve_deny_and_an_always_pattern(
    claude: ClaudeServer, shammah_home: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    once, denied, first, second = (work / name for name in ("once", "denied", "first", "second"))
    commands = [f"touch {path}" for path in (once, denied, first, second)]
    prompts = [f"Please run `{command}`." for command in commands]
    with lab_page(tmp_path, write_notebook(tmp_path, "tools.ipynb", prompts, SHAMMAH)) as page:
        wait_for_kernel(page, "Shammah")

        # (a) Approve once: the command runs; the cell shows the call, its output, the answer.
        target, card = ask(page, 0, commands[0])
        card.get_by_role("button", name="Approve once").click()
        expect(card.locator(".shammah-approval-outcome")).to_have_text("Approved once")
        expect_tool_block_and_answer(target, commands[0], "done", "[exit code 0]")
        assert once.exists()
        shot(page, "tools-approve-once", target)

        # (b) Deny with a typed reason: nothing runs, and the model reads the reason.
        target, card = ask(page, 1, commands[1])
        card.locator(".shammah-approval-reason").press_sequentially(REASON)
        card.get_by_role("button", name="Deny").click()
        expect(card.locator(".shammah-approval-outcome")).to_have_text(f"Denied: {REASON}")
        expect_tool_block_and_answer(target, commands[1], "not run", REASON)
        assert not denied.exists()
        result = claude.requests[-1].body["messages"][-1]["content"][0]
        assert result["type"] == "tool_result" and REASON in result["content"], result
        shot(page, "tools-deny-reason", target)

        # (c) Always (pattern), its rule narrowed to the work folder: saved, and used next time.
        rule = f"Bash(touch {work}/*)"
        target, card = ask(page, 2, commands[2])
        rule_input = card.locator(".shammah-approval-rule")
        expect(rule_input).to_have_value("Bash(touch *)")
        rule_input.fill("")
        rule_input.press_sequentially(rule)
        shot(page, "tools-pattern-pending", target)
        card.get_by_role("button", name="Always (pattern)").click()
        expect(card.locator(".shammah-approval-outcome")).to_have_text(f"Always allowed: {rule}")
        expect_tool_block_and_answer(target, commands[2], "done", "[exit code 0]")
        assert first.exists()
        assert rule in (shammah_home / "permissions.json").read_text()
        shot(page, "tools-always-pattern", target)

        # The next matching call runs unasked: the cell ends with no card (one would wait).
        target = run_cell(page, 3)
        done = target.locator(".jp-InputPrompt", has_text=re.compile(r"\[\d+\]:"))
        expect(target.locator(".shammah-approval").or_(done).first).to_be_visible()
        expect(target.locator(".shammah-approval")).to_have_count(0)
        expect_tool_block_and_answer(target, commands[3], "done", "[exit code 0]")
        assert second.exists()
        shot(page, "tools-second-call-unasked", target)
