"""Search tools see only what a Read may see, stay in the workspace, and match in linear time.

Before the fix: `deny Read(secrets.txt)` then `Grep(TOKEN, .)` printed the file; Grep followed a
symlink out of the workspace; `Glob("../x/*")` was "inside the workspace" and allowed; the regex
`(a+)+$` and a glob with many `*` froze the kernel (Python's backtracking `re` holds the GIL).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from gate_turns import Answering, rules_gate

from shammah_kernel.consent import ConsentGate
from shammah_kernel.events import Message, ToolCall, ToolResult
from shammah_kernel.permissions import Decision
from shammah_kernel.tools import ToolContext, run_tool

gate = rules_gate
TOKEN = "TOKEN=s3cr3t-value"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "code.py").write_text(f"print('{TOKEN[:5]}')  # harmless\n")
    (folder / "secrets.txt").write_text(TOKEN + "\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "keys.txt").write_text(TOKEN + "\n")
    (folder / ".env").write_text(TOKEN + "\n")
    outside = tmp_path / "x"
    outside.mkdir()
    (outside / "private.txt").write_text(TOKEN + "\n")
    return folder


def ask(gate: ConsentGate, name: str, **args: object) -> tuple[Message, Answering]:
    handle = Answering()
    return gate.run(ToolCall("c1", name, args), handle), handle


DENIES = [(Decision.DENY, "Read(secrets.txt)"), (Decision.DENY, "Read(sub/**)")]


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("Grep", {"pattern": "TOKEN"}),
        ("Grep", {"pattern": "s3cr3t", "path": "."}),
        ("Grep", {"pattern": "TOKEN", "path": ".", "glob": "*"}),
        ("Grep", {"pattern": "TOKEN", "path": "sub/.."}),
        ("Glob", {"pattern": "**/*"}),
        ("Glob", {"pattern": "*.txt"}),
        ("Glob", {"pattern": "**/keys.txt"}),
        ("Glob", {"pattern": "**/.env"}),
    ],
)
def test_a_search_skips_what_a_read_may_not_see(
    workspace: Path, tool: str, args: dict[str, object]
) -> None:
    message, handle = ask(gate(workspace, *DENIES), tool, **args)
    assert not handle.proposed  # a search of the workspace asks no one, file by file or at all
    assert "s3cr3t" not in message.content
    listed = message.content.splitlines()
    assert not any(line.startswith(("secrets.txt", "sub/keys.txt", ".env")) for line in listed)
    assert "skipped" in listed[-1]  # how many, never which


def test_ask_rules_also_keep_a_file_out_of_a_search(workspace: Path) -> None:
    message, handle = ask(
        gate(workspace, (Decision.ASK, "Read(secrets.txt)")), "Grep", pattern="s3"
    )
    assert not handle.proposed and "secrets.txt" not in message.content
    assert "sub/keys.txt:1:" in message.content  # what no rule keeps out is still found


def test_symlinks_out_of_the_workspace_are_not_followed(workspace: Path, tmp_path: Path) -> None:
    (workspace / "link.txt").symlink_to(tmp_path / "x" / "private.txt")
    (workspace / "linked_dir").symlink_to(tmp_path / "x", target_is_directory=True)
    gated = gate(workspace)
    for tool, args in [
        ("Grep", {"pattern": "s3cr3t"}),
        ("Grep", {"pattern": "s3cr3t", "glob": "*.txt"}),
        ("Glob", {"pattern": "**/*.txt"}),
        ("Glob", {"pattern": "*"}),
    ]:
        message, handle = ask(gated, tool, **args)
        assert "link.txt" not in message.content and "private" not in message.content
        assert "linked_dir" not in message.content
    # A rule allowing the outside target lets the link through: the target is what is judged.
    allowed = gate(workspace, (Decision.ALLOW, f"Read({tmp_path / 'x'}/**)"))
    message, _ = ask(allowed, "Grep", pattern="s3cr3t", glob="link.txt")
    assert "link.txt:1:" in message.content


@pytest.mark.parametrize(
    "pattern", ["../x/*", "../x/**/*.txt", "./../x/*", "sub/../../x/*", "../x/private.txt"]
)
def test_a_glob_pattern_leaving_the_workspace_is_resolved_like_a_path(
    workspace: Path, tmp_path: Path, pattern: str
) -> None:
    message, handle = ask(gate(workspace), "Glob", pattern=pattern)
    (proposed,) = handle.proposed  # outside the workspace: asked (and, headless, refused)
    assert str(tmp_path / "x") in proposed.call.name + proposed.description
    assert message.is_error and "private.txt" not in message.content.split("`")[0]


@pytest.mark.parametrize("pattern", ["*/../../x/*", "**/../../x/*", "s*/../../x/*"])
def test_a_dotdot_after_a_wildcard_is_refused(workspace: Path, pattern: str) -> None:
    message, handle = ask(gate(workspace), "Glob", pattern=pattern)
    assert not handle.proposed and message.is_error and "`..`" in message.content


def finishes(work: Callable[[], ToolResult], seconds: float) -> ToolResult:
    """`work`'s result, failing the test if it takes longer than `seconds` (it is left behind)."""
    results: list[ToolResult] = []
    thread = threading.Thread(target=lambda: results.append(work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert results, f"still running after {seconds}s"
    return results[0]


@pytest.mark.parametrize(
    "pattern", ["(a+)+$", "(a|a)+$", "(a*)*b", "(.*a){12}x", "^(a|aa)+$", "(\\w+\\s?)+$"]
)
def test_a_catastrophic_regex_returns_promptly(workspace: Path, pattern: str) -> None:
    (workspace / "long.txt").write_text("a" * 50_000 + "!\n")
    ctx = ToolContext(workspace)
    started = time.monotonic()
    call = ToolCall("c1", "Grep", {"pattern": pattern, "path": "long.txt"})
    result = finishes(lambda: run_tool(call, ctx), 10.0)
    assert time.monotonic() - started < 10.0 and not result.is_error


def test_a_glob_with_many_stars_matches_in_linear_time(workspace: Path) -> None:
    (workspace / ("a" * 200)).write_text("")
    ctx = ToolContext(workspace)
    call = ToolCall("c1", "Glob", {"pattern": "*a" * 20 + "*b"})
    result = finishes(lambda: run_tool(call, ctx), 10.0)
    assert result.content.startswith("No files match")


def test_the_stop_button_ends_a_long_search(workspace: Path) -> None:
    for i in range(200):
        (workspace / f"f{i}.txt").write_text("line\n" * 2000)
    ctx = ToolContext(workspace, should_stop=lambda: True)
    for name, args in [("Grep", {"pattern": "zzz"}), ("Glob", {"pattern": "**/*"})]:
        result = run_tool(ToolCall("c1", name, args), ctx)
        assert result.is_error and "stopped" in result.content
