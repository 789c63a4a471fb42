"""Write: a whole file's new content, written atomically; and the file handling Edit shares."""

from __future__ import annotations

import difflib
import os
import secrets
import stat
from pathlib import Path

from ..errors import ToolError
from .arguments import str_arg
from .base import (
    Arguments,
    ToolContext,
    ToolOutcome,
    display_path,
    looks_binary,
    resolve_path,
)


def read_text(path: Path, shown: str) -> str:
    """The whole of a UTF-8 text file, newlines untouched, or a ToolError saying why not."""
    if not path.is_file():
        raise ToolError(f"{shown} is not a file" if path.exists() else f"{shown} does not exist")
    data = path.read_bytes()
    if not looks_binary(data):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise ToolError(f"{shown} is a binary file ({len(data):,} bytes)")


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step: readers see the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    # os.open applies the umask to 0o666 as a plain create would; mkstemp would give 0o600.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(text.encode("utf-8"))
            file.flush()
            os.fsync(file.fileno())
        if path.exists():
            os.chmod(temp, stat.S_IMODE(path.stat().st_mode))
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def diff(old: str, new: str, shown: str, *, new_file: bool = False) -> str:
    """A unified diff of `old` to `new`, as `git diff` shows it; "(no change)" when equal."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile="/dev/null" if new_file else f"a/{shown}",
        tofile=f"b/{shown}",
    )
    text = "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)  # fmt: skip
    return text or "(no change)"


class WriteTool:
    name = "Write"
    description = (
        "Write a file with the given content, replacing it if it exists and creating missing "
        "parent directories. Prefer Edit to change part of an existing file."
    )
    parameters: dict[str, object] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "The file, relative to the notebook."},
            "content": {"type": "string", "description": "The file's whole new content."},
        },
        "required": ["path", "content"],
        "additionalProperties": False,
    }

    def describe(self, arguments: Arguments, workspace: Path) -> str:
        # Decided before the gate's decision: nothing about the file (not even whether it
        # exists) may show here; the preview, made only for a call about to be shown, says it.
        path = resolve_path(str_arg(arguments, "path"), workspace)
        count = len(str_arg(arguments, "content").splitlines())
        return f"Write {display_path(path, workspace)} ({count} lines)"

    def specifiers(self, arguments: Arguments, workspace: Path) -> tuple[str, ...]:
        return (display_path(resolve_path(str_arg(arguments, "path"), workspace), workspace),)

    def preview(self, arguments: Arguments, workspace: Path) -> str:
        path = resolve_path(str_arg(arguments, "path"), workspace)
        shown, content = display_path(path, workspace), str_arg(arguments, "content")
        if not path.exists():
            return f"new file {shown}\n" + diff("", content, shown, new_file=True)
        try:
            return diff(read_text(path, shown), content, shown)
        except ToolError as error:  # a binary or special file: say what gets replaced
            return f"replaces: {error}\n" + diff("", content, shown, new_file=True)

    def run(self, arguments: Arguments, ctx: ToolContext) -> ToolOutcome:
        path = resolve_path(str_arg(arguments, "path"), ctx.workspace)
        shown, content = display_path(path, ctx.workspace), str_arg(arguments, "content")
        if path.is_dir():
            raise ToolError(f"{shown} is a directory")
        existed = path.exists()
        write_atomically(path, content)
        lines = len(content.splitlines())
        return ToolOutcome(f"{'Overwrote' if existed else 'Created'} {shown} ({lines} lines).")
