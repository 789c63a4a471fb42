"""Slash command parsing, errors and completion (no kernel needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shammah_kernel.commands import COMMANDS, complete, is_command, run_command
from shammah_kernel.errors import CommandError


def test_is_command_needs_a_leading_slash() -> None:
    assert is_command("/help") and is_command("  /help")
    assert not is_command("explain /usr/bin")


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("/", "empty command"),
        ("/hlep", "Did you mean /help"),
        ("/frobnicate", "Unknown command /frobnicate. Type /help"),
        ("/help me", "takes no arguments"),
        ("/save", "Usage: /save PATH"),
        ('/save "unclosed', "Could not parse"),
        ("/model frob", "Unknown /model subcommand 'frob'"),
        ("/model select", "Usage: /model select SIZE"),
        ("/claude", "Usage: /claude PROMPT"),
        ("/patterns frob", "Available: list, add, remove, trust, clear"),
        ("/patterns trust a b", "takes no arguments"),
    ],
)
def test_misuse_raises_a_command_error(code: str, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run_command(None, code)  # type: ignore[arg-type]  # misuse fails before the assistant is used


def test_completes_names_subcommands_and_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert complete("/re", 3) == (["/reset", "/restore"], 0, 3)
    assert complete("/", 1)[0] == [f"/{name}" for name in sorted(COMMANDS)]
    assert complete("/model ", 7) == (["status", "select", "cache"], 7, 7)
    assert complete("/patterns tr", 12) == (["trust"], 10, 12)
    (tmp_path / "chats").mkdir()
    (tmp_path / "chat.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert complete("/restore ch", 11) == (["chat.json", "chats/"], 9, 11)
    assert complete("not a command", 5) == ([], 5, 5)
    assert complete("line one\n/he", 12) == ([], 12, 12)  # commands live on the first line
