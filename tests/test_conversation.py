"""Conversation history: retries, fitting, and save/restore with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from shammah_kernel.conversation import Conversation
from shammah_kernel.errors import ConversationFileError
from shammah_kernel.events import Role, Turn


def two_turns() -> Conversation:
    conversation = Conversation()
    conversation.append(Turn("q1", "a1", "cell-1"))
    conversation.append(Turn("q2", "a2", "cell-2", interrupted=True, model="m"))
    return conversation


def test_messages_interleave_turns_after_the_system_prompt() -> None:
    messages = two_turns().messages("sys", "q3")
    expected = [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.USER, Role.ASSISTANT, Role.USER]
    assert [m.role for m in messages] == expected
    assert messages[-1].content == "q3"


def test_only_the_last_cell_rerun_replaces_its_turn() -> None:
    conversation = two_turns()
    conversation.begin("cell-1")
    assert len(conversation.turns) == 2
    conversation.begin("cell-2")
    assert [t.user for t in conversation.turns] == ["q1"]


def test_fit_drops_the_oldest_turns_first() -> None:
    messages, dropped = two_turns().fit("sys", "q3", len, budget=4)
    assert dropped == 1 and messages[1].content == "q2"


def test_save_and_restore_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "chat.json"
    two_turns().save(path, model="m")
    restored = Conversation()
    assert restored.restore(path) == 2
    assert restored.turns[1].interrupted and restored.turns[1].model == "m"
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not a readable conversation file"),
        ('{"format": "other"}', "not a Shammah conversation"),
        ('{"format": "shammah-conversation", "turns": [{"user": 1}]}', "malformed turn list"),
    ],
)
def test_restore_rejects_bad_files_and_keeps_the_history(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    conversation = two_turns()
    with pytest.raises(ConversationFileError, match=message):
        conversation.restore(path)
    assert len(conversation.turns) == 2


def test_save_to_an_unwritable_place_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConversationFileError, match="Could not save"):
        two_turns().save(blocker / "chat.json", model="m")
