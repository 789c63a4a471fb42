"""Glob: files whose path matches a pattern like `**/*.py`, newest first."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import re2  # linear time: no pattern can freeze the kernel

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


def pattern_regex(pattern: str) -> re2._Regexp:
    """A linear-time regex (RE2) for a glob over `/`-separated paths: `**/` spans directories,
    `*` does not; `[a-z]` and `{py,pyi}` as in the shell. Match it with `fullmatch`."""
    try:
        return re2.compile(_glob_body(pattern), _options())
    except re2.error:
        raise ToolError(f"invalid glob pattern {pattern!r}") from None


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is the model's to fix, not a line on stderr
    options.dot_nl = True
    return options


def _glob_body(pattern: str) -> str:
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
            out.append("(?:" + "|".join(_glob_body(c) for c in choices) + ")")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def walk_files(root: Path) -> Iterator[Path]:
    """Every file below `root`, skipping version control, dependency and cache directories;
    symlinked folders are not entered (a symlinked file is listed: `may_read` judges its target)."""
    for folder, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if name not in SKIPPED_DIRS]
        for name in files:
            yield Path(folder, name)


def modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # a dangling symlink
        return 0.0


def literal_prefix(pattern: str) -> tuple[str, str]:
    """The leading folders of `pattern` without wildcards (`..` and `/` included), and the rest;
    a `..` after a wildcard is refused, since the rules could not see where it leads."""
    parts = pattern.split("/")
    literal = 0
    while literal < len(parts) - 1 and not _WILDCARDS.search(parts[literal]):
        literal += 1
    if ".." in parts[literal:]:
        raise ToolError("a Glob pattern may use `..` only before its first wildcard")
    return "/".join(parts[:literal]), "/".join(parts[literal:])


def split_pattern(pattern: str, base: Path) -> tuple[Path, str]:
    """The literal leading directories of `pattern` joined to `base` (resolved like any path,
    so `../x/*` searches the folder beside the workspace), and the pattern's rest."""
    prefix, rest = literal_prefix(pattern)
    return (base / (prefix or ".")).resolve(), rest


def search_root(arguments: Arguments, workspace: Path) -> tuple[Path, Path]:
    """The folder a Glob call lists, as written (lexical) and resolved: what the rules see."""
    prefix, _ = literal_prefix(str_arg(arguments, "pattern"))
    raw = os.path.expanduser(str_arg(arguments, "path", "."))
    lexical = Path(os.path.normpath(workspace / raw / (prefix or ".")))
    return lexical, split_pattern(str_arg(arguments, "pattern"), resolve_path(raw, workspace))[0]


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
        # The folder searched, resolved like a path (`../x/*` is outside), then the wildcards.
        root, rest = split_pattern(str_arg(arguments, "pattern"), search_base(arguments, workspace))
        shown = display_path(root, workspace)
        return (rest if shown == "." else f"{shown.rstrip('/')}/{rest}",)

    def preview(self, arguments: Arguments, workspace: Path) -> str:
        return ""

    def run(self, arguments: Arguments, ctx: ToolContext) -> ToolOutcome:
        base = search_base(arguments, ctx.workspace)
        if not base.is_dir():
            raise ToolError(f"{display_path(base, ctx.workspace)} is not a directory")
        root, rest = split_pattern(str_arg(arguments, "pattern"), base)
        regex = pattern_regex(rest)
        found, skipped = [], 0
        for path in walk_files(root):
            if ctx.should_stop():
                raise ToolError("stopped by the user")
            if regex.fullmatch(path.relative_to(root).as_posix()) is None:
                continue
            if ctx.may_read(path):
                found.append(path)
            else:
                skipped += 1
        note = skipped_note(skipped)
        if not found:
            shown = self.specifiers(arguments, ctx.workspace)[0]
            return ToolOutcome(f"No files match {shown}." + (f"\n{note}" if note else ""))
        found.sort(key=modified, reverse=True)
        lines = [display_path(p, ctx.workspace) for p in found[: ctx.glob_max_results]]
        if len(found) > ctx.glob_max_results:
            lines.append(
                f"[showing {ctx.glob_max_results} of {len(found)} files; narrow the pattern]"
            )
        return ToolOutcome("\n".join(lines + ([note] if note else [])))


def search_base(arguments: Arguments, workspace: Path) -> Path:
    return resolve_path(str_arg(arguments, "path", "."), workspace)


def skipped_note(skipped: int) -> str:
    """Says how many files the rules kept out of a search, naming none of them."""
    if not skipped:
        return ""
    files = "file" if skipped == 1 else "files"
    return f"[{skipped} {files} skipped: the permission rules or protected paths keep them out]"
