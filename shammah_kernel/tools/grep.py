"""Grep: lines matching a Python regex in a file or below a directory."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import ToolError
from .arguments import bool_arg, str_arg
from .base import (
    Arguments,
    ToolContext,
    ToolOutcome,
    display_path,
    looks_binary,
    resolve_path,
)
from .glob import pattern_regex, walk_files

MAX_LINE_CHARS = 300
MAX_FILE_BYTES = 20_000_000  # bigger files are data, not code; skipped


class GrepTool:
    name = "Grep"
    description = (
        "Search file contents with a Python regular expression. Returns `path:line: text` for "
        "each matching line. `path` is a file or directory (default: the notebook's), `glob` "
        "filters file names (e.g. `*.py`), `-i` ignores case. Binary files and .git, "
        "node_modules and .venv are skipped."
    )
    parameters: dict[str, object] = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "description": "Python regular expression."},
            "path": {"type": "string", "description": "File or directory to search."},
            "glob": {"type": "string", "description": "Only files matching this, e.g. *.py."},
            "-i": {"type": "boolean", "description": "Case-insensitive search."},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }

    def describe(self, arguments: Arguments, workspace: Path) -> str:
        where = self.specifiers(arguments, workspace)[0]
        text = f"Search for /{str_arg(arguments, 'pattern')}/ in {where}"
        if "glob" in arguments:
            text += f" (files {str_arg(arguments, 'glob')})"
        return text + (", ignoring case" if bool_arg(arguments, "-i") else "")

    def specifiers(self, arguments: Arguments, workspace: Path) -> tuple[str, ...]:
        return (display_path(resolve_path(str_arg(arguments, "path", "."), workspace), workspace),)

    def preview(self, arguments: Arguments, workspace: Path) -> str:
        return ""

    def run(self, arguments: Arguments, ctx: ToolContext) -> ToolOutcome:
        try:
            flags = re.IGNORECASE if bool_arg(arguments, "-i") else 0
            regex = re.compile(str_arg(arguments, "pattern"), flags)
        except re.error as error:
            raise ToolError(f"invalid regular expression: {error}") from None
        base = resolve_path(str_arg(arguments, "path", "."), ctx.workspace)
        if not base.exists():
            raise ToolError(f"{display_path(base, ctx.workspace)} does not exist")
        files = self._files(base, str_arg(arguments, "glob", ""))
        hits: list[str] = []
        for path in files:
            for number, line in self._matches(path, regex):
                if len(hits) == ctx.grep_max_results:
                    hits.append(f"[stopped at {len(hits)} matches; narrow the pattern or path]")
                    return ToolOutcome("\n".join(hits))
                text = line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " [...]"
                hits.append(f"{display_path(path, ctx.workspace)}:{number}: {text}")
        return ToolOutcome("\n".join(hits) if hits else "No matches.")

    def _files(self, base: Path, glob: str) -> Iterator[Path]:
        if base.is_file():
            yield base
            return
        regex = pattern_regex(glob) if glob else None
        for path in sorted(walk_files(base)):
            name = path.relative_to(base).as_posix() if "/" in glob else path.name
            if regex is None or regex.match(name):
                yield path

    def _matches(self, path: Path, regex: re.Pattern[str]) -> Iterator[tuple[int, str]]:
        """The matching lines of a text file; nothing for binary, huge or unreadable files."""
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return
            data = path.read_bytes()
            text = "" if looks_binary(data) else data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return
        for number, line in enumerate(text.splitlines(), start=1):
            if regex.search(line):
                yield number, line
