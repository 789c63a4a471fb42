"""Grep: lines matching a regular expression (RE2: linear time) in a file or below a folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import re2

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
from .glob import pattern_regex, skipped_note, walk_files

MAX_LINE_CHARS = 300
MAX_FILE_BYTES = 20_000_000  # bigger files are data, not code; skipped


class GrepTool:
    name = "Grep"
    description = (
        "Search file contents with a regular expression (RE2 syntax: no backreferences or "
        "lookaround). Returns `path:line: text` for each matching line. `path` is a file or "
        "directory (default: the notebook's), `glob` filters file names (e.g. `*.py`), `-i` "
        "ignores case. Binary files and .git, node_modules and .venv are skipped."
    )
    parameters: dict[str, object] = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "description": "Regular expression (RE2)."},
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
        regex = compile_pattern(str_arg(arguments, "pattern"), bool_arg(arguments, "-i"))
        base = resolve_path(str_arg(arguments, "path", "."), ctx.workspace)
        if not base.exists():
            raise ToolError(f"{display_path(base, ctx.workspace)} does not exist")
        hits: list[str] = []
        skipped = 0
        for path in self._files(base, str_arg(arguments, "glob", "")):
            if not ctx.may_read(path):  # the same rules as a Read of the file
                skipped += 1
                continue
            for number, line in self._matches(path, regex, ctx):
                if len(hits) == ctx.grep_max_results:
                    hits.append(f"[stopped at {len(hits)} matches; narrow the pattern or path]")
                    return ToolOutcome(_with_note(hits, skipped))
                text = line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " [...]"
                hits.append(f"{display_path(path, ctx.workspace)}:{number}: {text}")
        return ToolOutcome(_with_note(hits or ["No matches."], skipped))

    def _files(self, base: Path, glob: str) -> Iterator[Path]:
        if base.is_file():
            yield base
            return
        regex = pattern_regex(glob) if glob else None
        for path in sorted(walk_files(base)):
            name = path.relative_to(base).as_posix() if "/" in glob else path.name
            if regex is None or regex.fullmatch(name):
                yield path

    def _matches(
        self, path: Path, regex: re2._Regexp, ctx: ToolContext
    ) -> Iterator[tuple[int, str]]:
        """The matching lines of a text file; nothing for binary, huge or unreadable files."""
        if ctx.should_stop():
            raise ToolError("stopped by the user")
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                return
            data = path.read_bytes()
            text = "" if looks_binary(data) else data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            return
        for number, line in enumerate(text.splitlines(), start=1):
            if number % 1024 == 0 and ctx.should_stop():  # the stop button, in a long file
                raise ToolError("stopped by the user")
            if regex.search(line):
                yield number, line


def compile_pattern(pattern: str, ignore_case: bool) -> re2._Regexp:
    """`pattern` for RE2, which matches in linear time; Python-only syntax is refused plainly."""
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = not ignore_case
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        detail = error.args[0] if error.args else error
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ToolError(
            f"unsupported or invalid regular expression ({detail}); Grep uses RE2 syntax: "
            "no backreferences (\\1), lookahead or lookbehind ((?=...), (?<=...))"
        ) from None


def _with_note(lines: list[str], skipped: int) -> str:
    note = skipped_note(skipped)
    return "\n".join([*lines, note] if note else lines)
