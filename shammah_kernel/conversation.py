"""The conversation of one session: its turns, how they become chat messages, and save/restore."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ConversationFileError
from .events import Message, Role, ToolCall, Turn
from .secrets import scrub

FORMAT = "shammah-conversation"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 64 * 1024 * 1024  # a /restore file larger than this is refused, not read


class Conversation:
    """An ordered list of finished turns.

    Re-running the cell that produced the last turn replaces that turn (a retry); any other cell
    appends, so a re-run earlier cell asks again with the history as it stands.
    """

    def __init__(self) -> None:
        self.turns: list[Turn] = []

    def begin(self, cell_id: str | None) -> None:
        """Drop the last turn when the same cell runs again, before a new turn is asked."""
        if cell_id and self.turns and self.turns[-1].cell_id == cell_id:
            self.turns.pop()

    def append(self, turn: Turn) -> None:
        self.turns.append(turn)

    def reset(self) -> None:
        self.turns.clear()

    def messages(self, system_prompt: str, pending_user: str, *, skip: int = 0) -> list[Message]:
        """The chat messages for the next reply, leaving out the `skip` oldest turns."""
        out = [Message(Role.SYSTEM, system_prompt)]
        for turn in self.turns[skip:]:
            out.append(Message(Role.USER, turn.user))
            out.extend(turn.steps)
            out.append(Message(Role.ASSISTANT, turn.assistant))
        out.append(Message(Role.USER, pending_user))
        return out

    def fit(
        self,
        system_prompt: str,
        pending_user: str,
        count_tokens: Callable[[list[Message]], int],
        budget: int,
    ) -> tuple[list[Message], int]:
        """The messages that fit in `budget` tokens, and how many oldest turns were dropped."""
        for skip in range(len(self.turns) + 1):
            messages = self.messages(system_prompt, pending_user, skip=skip)
            if count_tokens(messages) <= budget:
                return messages, skip
        return messages, len(self.turns)

    def save(self, path: Path, *, model: str) -> None:
        """Write the conversation as JSON, atomically, so a crash never leaves half a file;
        known secret values are scrubbed from it (a tool may have printed one)."""
        path = _expanded(path)
        document = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model": model,
            "turns": [
                {
                    "user": t.user,
                    "assistant": t.assistant,
                    "interrupted": t.interrupted,
                    "model": t.model,
                    "steps": [_step_json(m) for m in t.steps],
                }
                for t in self.turns
            ],
        }
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(_scrubbed(document), f, indent=1, ensure_ascii=False)
            os.replace(tmp, path)
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
            raise ConversationFileError(
                f"Could not save the conversation to {_shown(path)}: {e}"
            ) from e

    def restore(self, path: Path) -> int:
        """Replace the turns with those saved in `path`; returns how many were loaded."""
        path = _expanded(path)
        try:
            document = json.loads(_read_regular(path))
        except FileNotFoundError as e:
            raise ConversationFileError(f"No saved conversation at {path}") from e
        except (OSError, ValueError) as e:  # ValueError: bad JSON, UTF-8 or a NUL in the path
            raise ConversationFileError(
                f"{_shown(path)} is not a readable conversation file: {e}"
            ) from e
        except RecursionError:
            raise ConversationFileError(
                f"{_shown(path)} is nested too deeply to be a conversation"
            ) from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ConversationFileError(f"{path} is not a Shammah conversation (made by /save)")
        try:
            turns = [
                Turn(
                    user=str(t["user"]),
                    assistant=str(t["assistant"]),
                    interrupted=bool(t.get("interrupted", False)),
                    model=str(t.get("model", "")),
                    steps=tuple(_step(m) for m in t.get("steps", [])),
                )
                for t in document["turns"]
            ]
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as e:
            raise ConversationFileError(f"{path} has a malformed turn list: {e!r:.200}") from None
        self.turns = turns
        return len(turns)


def _shown(path: Path) -> str:
    """`path` for a message: a NUL byte (which no path may hold) shown escaped."""
    return str(path).replace("\0", "\\0")


def _expanded(path: Path) -> Path:
    """`path` with a leading ``~`` or ``~user`` expanded; one clear error for an unknown user."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise ConversationFileError(f"Cannot find the home folder in {str(path)!r}") from None


def _read_regular(path: Path) -> str:
    """The text of `path` if it is a regular file of at most MAX_FILE_BYTES: a FIFO or a device
    (/dev/zero) would block or never end. O_NONBLOCK: opening a FIFO does not wait for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise OSError("not a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise OSError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    return data.decode("utf-8")


def _scrubbed(value: object) -> object:
    """`value` (the JSON document) with every string scrubbed of known secret values."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrubbed(item) for item in value]
    if isinstance(value, dict):
        return {scrub(str(key)): _scrubbed(item) for key, item in value.items()}
    return value


def _step_json(message: Message) -> dict[str, object]:
    return {
        "role": message.role.value,
        "content": message.content,
        "tool_calls": [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
        ],
        "tool_call_id": message.tool_call_id,
        "is_error": message.is_error,
    }


def _step(data: dict[str, Any]) -> Message:
    calls = data.get("tool_calls") or []
    return Message(
        Role(str(data["role"])),
        str(data["content"]),
        tuple(ToolCall(str(c["id"]), str(c["name"]), dict(c["arguments"])) for c in calls),
        str(data.get("tool_call_id", "")),
        bool(data.get("is_error", False)),
    )
