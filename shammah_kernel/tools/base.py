"""What every tool shares: the `Tool` seam, the context a call runs in, paths, output limits."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

Arguments = Mapping[str, object]

# Directories no search walks into: version control, dependencies, caches.
SKIPPED_DIRS = frozenset(
    {".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".mypy_cache",
     ".pytest_cache", ".ruff_cache", ".tox", ".ipynb_checkpoints"}
)  # fmt: skip
BINARY_SNIFF_BYTES = 8192


def _ignore_output(text: str) -> None:
    """The default `on_output`: nobody is watching."""


def _never_stop() -> bool:
    return False


def _read_anything(path: Path) -> bool:
    """The default `may_read`: no gate is watching (unit tests of a tool alone)."""
    return True


def _no_private_hosts(host: str, port: int) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Where a tool call runs and how far it may go; relative paths resolve against `workspace`."""

    workspace: Path
    on_output: Callable[[str], None] = _ignore_output  # Bash streams its output here as it arrives
    should_stop: Callable[[], bool] = _never_stop  # polled by Bash; True kills the command
    # Whether a search tool may open or list this file: the consent gate's Read decision for it.
    may_read: Callable[[Path], bool] = _read_anything
    # Whether WebFetch may connect to a loopback/private address: only when a rule names the host.
    may_fetch_private: Callable[[str, int], bool] = _no_private_hosts
    # The environment tools run with (secrets removed); None = the process's, secrets removed.
    env: Mapping[str, str] | None = None
    max_output_chars: int = 30_000
    bash_timeout: float = 120.0  # seconds, when the call gives no `timeout`
    fetch_timeout: float = 20.0  # seconds for a whole WebFetch, redirects included
    fetch_max_bytes: int = 2_000_000
    read_max_lines: int = 2000
    grep_max_results: int = 200
    glob_max_results: int = 200


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What a tool's `run` gives back; `run_tool` turns it into the call's `ToolResult`."""

    content: str
    is_error: bool = False


class Tool(Protocol):
    name: str
    description: str
    parameters: dict[str, object]  # JSON Schema of the arguments

    def describe(self, arguments: Arguments, workspace: Path) -> str:
        """One line saying exactly what the call will do, for the approval widget."""
        ...

    def specifiers(self, arguments: Arguments, workspace: Path) -> tuple[str, ...]:
        """The strings permission rules match against; the first is the call's own specifier."""
        ...

    def preview(self, arguments: Arguments, workspace: Path) -> str:
        """A diff of the change for Edit/Write ("" for other tools); raises ToolError if invalid."""
        ...

    def run(self, arguments: Arguments, ctx: ToolContext) -> ToolOutcome: ...


def resolve_path(raw: str, workspace: Path) -> Path:
    """`raw` as an absolute path with symlinks and `..` resolved; relative to `workspace`."""
    path = Path(os.path.expanduser(raw))
    return (workspace / path).resolve() if not path.is_absolute() else path.resolve()


def display_path(path: Path, workspace: Path) -> str:
    """`path` relative to the workspace when inside it ("." for the workspace), else absolute."""
    try:
        return path.relative_to(workspace.resolve()).as_posix() or "."
    except ValueError:
        return str(path)


def looks_binary(head: bytes) -> bool:
    return b"\0" in head[:BINARY_SNIFF_BYTES]


def cap_text(text: str, max_chars: int) -> str:
    """`text` cut to about `max_chars`, keeping its head and tail around a note of what was cut."""
    if len(text) <= max_chars:
        return text
    half = max_chars // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters cut ...]\n{text[len(text) - half :]}"


class HeadTail:
    """The first and last `max_chars / 2` characters of streamed text, and how much fell between."""

    def __init__(self, max_chars: int) -> None:
        self.half = max_chars // 2
        self.head: list[str] = []
        self.head_chars = 0
        self.tail: deque[str] = deque()
        self.tail_chars = 0
        self.dropped = 0

    def add(self, text: str) -> None:
        if self.head_chars < self.half:
            piece = text[: self.half - self.head_chars]
            self.head.append(piece)
            self.head_chars += len(piece)
            text = text[len(piece) :]
        self.tail.append(text)
        self.tail_chars += len(text)
        excess = self.tail_chars - self.half
        while excess > 0:
            first = self.tail.popleft()
            if len(first) > excess:
                self.tail.appendleft(first[excess:])
            cut = min(len(first), excess)
            self.dropped += cut
            self.tail_chars -= cut
            excess -= cut

    def text(self) -> str:
        cut = f"[... {self.dropped} characters cut ...]\n" if self.dropped else ""
        return "".join(self.head) + cut + "".join(self.tail)
