"""Glob: files whose path matches a pattern like `**/*.py`, newest first."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import ToolError
from .arguments import str_arg
from .base import (
    SKIPPED_DIRS,
    Arguments,
    ToolContext,
    ToolOutcome,
    display_path,
    resolve_path,
)

_WILDCARDS = re.compile(r"[*?\[]")


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a glob over `/`-separated paths: `**/` spans directories, `*` does not;
    `[a-z]` and `{py,pyi}` as in the shell."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            out.append(f"[^{body[1:]}]" if body[0] in "!^" else f"[{body}]")
            i = end + 1
        elif pattern[i] == "{" and (end := pattern.find("}", i)) != -1:
            choices = pattern[i + 1 : end].split(",")
            out.append("(?:" + "|".join(pattern_regex(c).pattern[:-2] for c in choices) + ")")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def walk_files(root: Path) -> Iterator[Path]:
    """Every file below `root`, skipping version control, dependency and cache directories."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if name not in SKIPPED_DIRS]
        for name in files:
            yield Path(folder, name)


def modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # a dangling symlink
        return 0.0


def split_pattern(pattern: str, base: Path) -> tuple[Path, str]:
    """The literal leading directories of `pattern` joined to `base`, and the pattern's rest."""
    parts = pattern.split("/")
    literal = 0
    while literal < len(parts) - 1 and not _WILDCARDS.search(parts[literal]):
        literal += 1
    root = Path("/".join(parts[:literal]) or ".")
    return (base / root).resolve(), "/".join(parts[literal:])


class GlobTool:
    name = "Glob"
    description = (
        "Find files by path pattern, e.g. `**/*.py` or `src/**/test_*.py`; `*` stays within a "
        "directory, `**` spans directories. Returns paths, most recently modified first."
    )
    parameters: dict[str, object] = {
        "type": "object",
        "properties": {
            "pattern": {"type": "string", "description": "The glob pattern."},
            "path": {"type": "string", "description": "Directory to search (the notebook's)."},
        },
        "required": ["pattern"],
        "additionalProperties": False,
    }

    def describe(self, arguments: Arguments, workspace: Path) -> str:
        return f"Find files matching {self.specifiers(arguments, workspace)[0]}"

    def specifiers(self, arguments: Arguments, workspace: Path) -> tuple[str, ...]:
        base = resolve_path(str_arg(arguments, "path", "."), workspace)
        shown = display_path(base, workspace)
        pattern = str_arg(arguments, "pattern")
        return (pattern if shown == "." else f"{shown.rstrip('/')}/{pattern}",)

    def preview(self, arguments: Arguments, workspace: Path) -> str:
        return ""

    def run(self, arguments: Arguments, ctx: ToolContext) -> ToolOutcome:
        base = resolve_path(str_arg(arguments, "path", "."), ctx.workspace)
        if not base.is_dir():
            raise ToolError(f"{display_path(base, ctx.workspace)} is not a directory")
        root, rest = split_pattern(str_arg(arguments, "pattern"), base)
        regex = pattern_regex(rest)
        found = [p for p in walk_files(root) if regex.match(p.relative_to(root).as_posix())]
        if not found:
            return ToolOutcome(f"No files match {self.specifiers(arguments, ctx.workspace)[0]}.")
        found.sort(key=modified, reverse=True)
        lines = [display_path(p, ctx.workspace) for p in found[: ctx.glob_max_results]]
        if len(found) > ctx.glob_max_results:
            lines.append(
                f"[showing {ctx.glob_max_results} of {len(found)} files; narrow the pattern]"
            )
        return ToolOutcome("\n".join(lines))
