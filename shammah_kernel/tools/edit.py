"""Edit: replace an exact piece of a text file, once or everywhere."""

from __future__ import annotations

from pathlib import Path

from ..errors import ToolError
from .arguments import bool_arg, str_arg
from .base import Arguments, ToolContext, ToolOutcome, display_path, resolve_path
from .write import diff, read_text, write_atomically


class EditTool:
    name = "Edit"
    description = (
        "Replace `old_string` with `new_string` in a text file. `old_string` must match the file "
        "exactly (whitespace included) and occur once, unless `replace_all` is true; include "
        "enough surrounding lines to make it unique."
    )
    parameters: dict[str, object] = {
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "The file, relative to the notebook."},
            "old_string": {"type": "string", "description": "The exact text to replace."},
            "new_string": {"type": "string", "description": "The text to put in its place."},
            "replace_all": {"type": "boolean", "description": "Replace every occurrence."},
        },
        "required": ["path", "old_string", "new_string"],
        "additionalProperties": False,
    }

    def describe(self, arguments: Arguments, workspace: Path) -> str:
        shown = self.specifiers(arguments, workspace)[0]
        return f"Edit {shown}" + (
            " (every occurrence)" if bool_arg(arguments, "replace_all") else ""
        )

    def specifiers(self, arguments: Arguments, workspace: Path) -> tuple[str, ...]:
        return (display_path(resolve_path(str_arg(arguments, "path"), workspace), workspace),)

    def preview(self, arguments: Arguments, workspace: Path) -> str:
        path = resolve_path(str_arg(arguments, "path"), workspace)
        shown = display_path(path, workspace)
        old, new, _ = self._edited(path, shown, arguments)
        return diff(old, new, shown)

    def run(self, arguments: Arguments, ctx: ToolContext) -> ToolOutcome:
        path = resolve_path(str_arg(arguments, "path"), ctx.workspace)
        shown = display_path(path, ctx.workspace)
        _, new, count = self._edited(path, shown, arguments)
        write_atomically(path, new)
        return ToolOutcome(f"Edited {shown}: replaced {count} occurrence{'s' * (count != 1)}.")

    def _edited(self, path: Path, shown: str, arguments: Arguments) -> tuple[str, str, int]:
        """The file's text before and after the edit, and how many places changed."""
        old_string, new_string = str_arg(arguments, "old_string"), str_arg(arguments, "new_string")
        if not old_string:
            raise ToolError("old_string is empty; use Write to create or replace a whole file")
        if old_string == new_string:
            raise ToolError("old_string and new_string are the same; there is nothing to change")
        text = read_text(path, shown)
        count = text.count(old_string)
        if count == 0:
            raise ToolError(
                f"old_string was not found in {shown}; Read the file and copy the text exactly, "
                "whitespace and indentation included"
            )
        if count > 1 and not bool_arg(arguments, "replace_all"):
            raise ToolError(
                f"old_string occurs {count} times in {shown}; include more surrounding lines to "
                "make it unique, or set replace_all to replace every occurrence"
            )
        return text, text.replace(old_string, new_string), count
