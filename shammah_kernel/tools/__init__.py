"""The tools the model may call, by name, and `run_tool`, which turns any call into a result."""

from __future__ import annotations

from ..errors import ToolError
from ..events import ToolCall, ToolResult
from ..secrets import scrub
from .arguments import check_arguments
from .base import Tool, ToolContext, ToolOutcome, cap_text
from .bash import BashTool
from .edit import EditTool
from .glob import GlobTool
from .grep import GrepTool
from .read import ReadTool
from .webfetch import WebFetchTool
from .write import WriteTool

__all__ = [
    "ALL_TOOLS",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutcome",
    "check_arguments",
    "find_tool",
    "run_tool",
]

ALL_TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        ReadTool(),
        GlobTool(),
        GrepTool(),
        BashTool(),
        WebFetchTool(),
        EditTool(),
        WriteTool(),
    )
}


def find_tool(call: ToolCall) -> Tool:
    """The tool `call` names, with its arguments checked; ToolError says what is wrong."""
    tool = ALL_TOOLS.get(call.name)
    if tool is None:
        raise ToolError(f"unknown tool {call.name!r}; the tools are: {', '.join(ALL_TOOLS)}")
    problem = check_arguments(tool, call.arguments)
    if problem is not None:
        raise ToolError(f"invalid arguments for {call.name}: {problem}")
    return tool


def run_tool(call: ToolCall, ctx: ToolContext) -> ToolResult:
    """Run `call`; every failure (a bad call, a missing file, a crash) is an error result."""
    try:
        outcome = find_tool(call).run(call.arguments, ctx)
    except ToolError as error:
        return ToolResult(call.id, scrub(str(error)), is_error=True)
    except Exception as error:  # a tool's bug must not end the turn: the model sees it
        text = f"{call.name} failed: {type(error).__name__}: {error}"
        return ToolResult(call.id, scrub(text), True)
    # Whatever a tool read (a file, a page, a command's output), no known secret value leaves it.
    content = scrub(outcome.content)
    return ToolResult(call.id, cap_text(content, ctx.max_output_chars), outcome.is_error)
