"""Routing in a real kernel: Claude (a Messages-API server on 127.0.0.1), crisis help, sampling."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from claude_server import Behavior, ClaudeServer
from conftest import write_config
from kernel_client import KernelSession

KEY = "sk-ant-test-secret-key-123"


@pytest.fixture
def claude(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClaudeServer]:
    with ClaudeServer(reply="Use `sorted(xs)` for a new sorted list.") as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield server


def start(home: Path, model: Path, extra: str = "") -> KernelSession:
    write_config(home, f'[model]\nid = "{model}"\nmax_tokens = 16\ntemperature = 0.0\n{extra}')
    return KernelSession.start()


def all_text(run: object) -> str:
    return json.dumps([m["content"] for m in run.messages])  # type: ignore[attr-defined]


def test_claude_route_answers_with_history_and_marks_the_output(
    shammah_home: Path, tiny_model: Path, claude: ClaudeServer
) -> None:
    kernel = start(shammah_home, tiny_model, 'route = "claude"\n')
    try:
        first = kernel.execute("How do I sort a list?")
        assert first.status == "ok" and "sorted(xs)" in first.markdown
        assert "Claude (" in first.displayed  # the footer says Claude answered
        kernel.execute("And in reverse?")
        body = claude.requests[-1].body
        assert [m["content"] for m in body["messages"]][:2] == [
            "How do I sort a list?",
            "Use `sorted(xs)` for a new sorted list.",
        ]
        assert "Shammah" in body["system"]
        assert KEY not in all_text(first) + kernel.execute("/status").displayed
    finally:
        kernel.stop()


def test_a_claude_cell_forces_claude_then_local_turns_continue(
    shammah_home: Path, tiny_model: Path, claude: ClaudeServer
) -> None:
    kernel = start(shammah_home, tiny_model)
    try:
        kernel.wait_until_ready()
        forced = kernel.execute("/claude How do I sort a list?")
        assert "sorted(xs)" in forced.markdown and len(claude.requests) == 1
        local = kernel.execute("thanks")
        assert "tiny-qwen2" in local.displayed and len(claude.requests) == 1
        history = kernel.execute("/history").displayed
        assert "How do I sort a list?" in history and "sorted(xs)" in history
    finally:
        kernel.stop()


@pytest.mark.parametrize("status", [401, 429, 529])
def test_claude_errors_fall_back_to_the_local_model(
    shammah_home: Path, tiny_model: Path, claude: ClaudeServer, status: int
) -> None:
    claude.behavior = Behavior(status=status)
    kernel = start(shammah_home, tiny_model, 'route = "claude"\n')
    try:
        run = kernel.execute("hello")
        assert run.status == "ok"
        assert "Waiting for the local model instead" in run.displayed
        assert "tiny-qwen2" in run.displayed  # the local model answered in the same cell
        assert KEY not in all_text(run)
    finally:
        kernel.stop()


def test_crisis_messages_show_help_without_a_key(shammah_home: Path, tiny_model: Path) -> None:
    kernel = start(shammah_home, tiny_model)
    try:
        run = kernel.execute("I want to kill myself")
        assert "988" in run.markdown and "tiny-qwen2 ·" not in run.displayed  # no model answered
    finally:
        kernel.stop()


def test_crisis_messages_go_to_claude_with_a_key(
    shammah_home: Path, tiny_model: Path, claude: ClaudeServer, tmp_path: Path
) -> None:
    keywords = tmp_path / "keywords.txt"
    keywords.write_text("# my list\nhopeless\n")
    kernel = start(shammah_home, tiny_model, "")
    write_config(
        shammah_home,
        f'crisis_keywords_path = "{keywords}"\n[model]\nid = "{tiny_model}"\nmax_tokens = 16\n',
    )
    kernel.stop()
    kernel = KernelSession.start()
    try:
        run = kernel.execute("I feel hopeless about this bug")
        assert "Claude (" in run.displayed and len(claude.requests) == 1
    finally:
        kernel.stop()


def test_sampled_turns_store_claudes_different_answer(
    shammah_home: Path, tiny_model: Path, claude: ClaudeServer
) -> None:
    kernel = start(shammah_home, tiny_model, "[sampling]\nclaude_share = 1.0\n")
    try:
        kernel.wait_until_ready()
        run = kernel.execute("How do I sort a list?")
        assert "tiny-qwen2 ·" in run.displayed  # the local model answered the user
        rows = stored_examples(shammah_home / "examples.db")  # sampled in the background
    finally:
        kernel.stop()
    assert len(rows) == 1
    source, answer, rejected, messages = rows[0]
    assert source == "claude-sample" and "sorted(xs)" in answer and rejected
    assert json.loads(messages)[-1] == {"role": "user", "content": "How do I sort a list?"}


def stored_examples(db: Path, timeout: float = 30) -> list[tuple[str, str, str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            query = (
                "SELECT source, answer, rejected, messages FROM examples"
                " WHERE source = 'claude-sample'"
            )
            rows = sqlite3.connect(db).execute(query).fetchall()
            if rows:
                return rows
        time.sleep(0.2)
    return []
