"""Read: a text file's lines, numbered like `cat -n`, a window at a time."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from ..errors import ToolError
from .arguments import int_arg, str_arg
from .base import (
    Arguments,
    ToolContext,
    ToolOutcome,
    cap_text,
    display_path,
    looks_binary,
    resolve_path,
)

MAX_LINE_CHARS = 2000


class ReadTool:
    name = "Read"
    description = (
        "Read a text file. Returns its lines numbered like `cat -n`. Use `offset` (the first "
        "line, from 1) and `limit` (how many lines) to read a long file in parts."
    )
    parameters: dict[str, object] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "The file, relative to the notebook."},
            "offset": {"type": "integer", "minimum": 1, "description": "First line (from 1)."},
            "limit": {"type": "integer", "minimum": 1, "description": "How many lines to read."},
        },
        "required": ["path"],
        "additionalProperties": False,
    }

    def describe(self, arguments: Arguments, workspace: Path) -> str:
        shown = self.specifiers(arguments, workspace)[0]
        offset, limit = int_arg(arguments, "offset") or 1, int_arg(arguments, "limit")
        if limit is not None:
            return f"Read {shown} (lines {offset}-{offset + limit - 1})"
        return f"Read {shown}" + (f" (from line {offset})" if offset > 1 else "")

    def specifiers(self, arguments: Arguments, workspace: Path) -> tuple[str, ...]:
        return (display_path(resolve_path(str_arg(arguments, "path"), workspace), workspace),)

    def preview(self, arguments: Arguments, workspace: Path) -> str:
        return ""

    def run(self, arguments: Arguments, ctx: ToolContext) -> ToolOutcome:
        path = resolve_path(str_arg(arguments, "path"), ctx.workspace)
        shown = display_path(path, ctx.workspace)
        if path.is_dir():
            raise ToolError(f"{shown} is a directory; use Glob to list files")
        if not path.is_file():
            raise ToolError(
                f"{shown} is not a file" if path.exists() else f"{shown} does not exist"
            )
        offset = int_arg(arguments, "offset") or 1
        limit = int_arg(arguments, "limit") or ctx.read_max_lines
        size = path.stat().st_size
        with path.open("rb") as file:
            if looks_binary(file.read(8192)):
                raise ToolError(f"{shown} is a binary file ({size:,} bytes)")
            file.seek(0)
            try:
                # One line past the window tells whether the file goes on.
                raw = list(islice(file, offset - 1, offset - 1 + limit + 1))
                lines = [line.decode("utf-8") for line in raw]
            except UnicodeDecodeError:
                raise ToolError(f"{shown} is a binary file ({size:,} bytes)") from None
        return ToolOutcome(self._numbered(lines, offset, limit, shown, size, ctx))

    def _numbered(
        self, lines: list[str], offset: int, limit: int, shown: str, size: int, ctx: ToolContext
    ) -> str:
        if not lines:
            return f"{shown} is empty." if size == 0 else f"{shown} has fewer than {offset} lines."
        more = len(lines) > limit
        numbered = []
        for number, line in enumerate(lines[:limit], start=offset):
            text = line.rstrip("\r\n")
            if len(text) > MAX_LINE_CHARS:
                text = text[:MAX_LINE_CHARS] + f" [... line cut at {MAX_LINE_CHARS} characters]"
            numbered.append(f"{number:>6}\t{text}")
        text = cap_text("\n".join(numbered), ctx.max_output_chars)
        if more:
            last = offset + limit - 1
            text += (
                f"\n[showing lines {offset}-{last}; the file goes on: read from offset={last + 1}]"
            )
        return text
