"""Bash output floods cannot defeat the timeout or the stop button, nor grow memory without bound;
numbers that are not finite are refused as arguments."""

from __future__ import annotations

import json
import resource
import threading
import time
from pathlib import Path

import pytest

from shammah_kernel.events import ToolCall
from shammah_kernel.tool_calls import parse_tool_calls
from shammah_kernel.tools import ALL_TOOLS, ToolContext, check_arguments, run_tool
from shammah_kernel.tools.base import ToolOutcome
from shammah_kernel.tools.bash import STREAM_INTERVAL, STREAM_KEEP, BashTool

FLOODS = (
    "yes",
    "cat /dev/zero | tr '\\0' x",  # one endless line
    "yes & yes & yes; wait",  # several writers in the group
    "head -c 100000000 /dev/zero | tr '\\0' y; sleep 60",  # a burst, then a hang
)
MAX_CHARS = 30_000


def run_bash(command: str, tmp_path: Path, *, timeout: float, stop_after: float | None = None):
    """Run the real Bash tool on a thread; (outcome or None if it hung, seconds, streamed)."""
    streamed: list[str] = []

    def show(text: str) -> None:  # as slow as a cell update: a flood outruns it
        streamed.append(text)
        time.sleep(0.002)

    started = time.monotonic()
    ctx = ToolContext(
        tmp_path,
        on_output=show,
        should_stop=lambda: stop_after is not None and time.monotonic() - started > stop_after,
        max_output_chars=MAX_CHARS,
    )
    outcome: list[ToolOutcome] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            BashTool().run({"command": command, "timeout": timeout}, ctx)
        ),
        daemon=True,
    )
    worker.start()
    worker.join(timeout + 15)
    return (outcome[0] if outcome else None), time.monotonic() - started, streamed


@pytest.mark.parametrize("command", FLOODS)
def test_a_flood_still_times_out_and_stays_bounded(command: str, tmp_path: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome, seconds, streamed = run_bash(command, tmp_path, timeout=2)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert outcome is not None, "the command outran its timeout"
    assert outcome.is_error and "timed out after 2 s" in outcome.content
    assert seconds < 8
    assert len(outcome.content) < MAX_CHARS + 200  # head + tail, and a note of what was cut
    assert "characters cut" in outcome.content
    # The cell gets at most one update per interval, each of at most STREAM_KEEP characters.
    assert len(streamed) <= seconds / STREAM_INTERVAL + 5
    assert all(len(text) <= STREAM_KEEP + 100 for text in streamed)
    assert grown_mib < 300


@pytest.mark.parametrize("command", FLOODS[:2])
def test_stop_kills_a_flood_promptly(command: str, tmp_path: Path) -> None:
    outcome, seconds, _ = run_bash(command, tmp_path, timeout=120, stop_after=0.5)
    assert outcome is not None, "stop did not reach the command"
    assert "stopped by the user" in outcome.content
    assert seconds < 5


def test_ordinary_output_still_streams_whole(tmp_path: Path) -> None:
    outcome, _, streamed = run_bash("seq 1 5000; echo done", tmp_path, timeout=10)
    assert outcome is not None and not outcome.is_error
    assert "".join(streamed) == "".join(f"{n}\n" for n in range(1, 5001)) + "done\n"


BAD_NUMBERS = [float("nan"), float("inf"), float("-inf"), 10**400]


@pytest.mark.parametrize("value", BAD_NUMBERS, ids=["nan", "inf", "-inf", "huge"])
def test_a_non_finite_timeout_is_an_invalid_argument(value: float, tmp_path: Path) -> None:
    started = time.monotonic()
    call = ToolCall("c1", "Bash", {"command": "sleep 30", "timeout": value})
    result = run_tool(call, ToolContext(tmp_path))
    assert result.is_error and "invalid arguments for Bash" in result.content
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("spelling", ["NaN", "Infinity", "-Infinity"])
def test_a_non_finite_number_from_a_model_reply_is_refused(spelling: str) -> None:
    reply = (
        f'<tool_call>{{"name": "Bash", "arguments": {{"command": "ls", "timeout": {spelling}}}}}'
    )
    (call,) = parse_tool_calls(reply + "</tool_call>").calls
    problem = check_arguments(ALL_TOOLS["Bash"], call.arguments)
    assert problem is not None and "finite" in problem


def numeric_arguments() -> list[tuple[str, str]]:
    return [
        (tool.name, key)
        for tool in ALL_TOOLS.values()
        for key, schema in tool.parameters["properties"].items()  # type: ignore[attr-defined]
        if schema.get("type") in ("number", "integer")
    ]


@pytest.mark.parametrize(("tool", "key"), numeric_arguments())
def test_every_numeric_argument_refuses_nan(tool: str, key: str) -> None:
    required = ALL_TOOLS[tool].parameters.get("required", [])
    arguments: dict[str, object] = {name: "x" for name in required}  # type: ignore[attr-defined]
    for value in (float("nan"), float("inf")):
        arguments[key] = value
        assert check_arguments(ALL_TOOLS[tool], json.loads(json.dumps(arguments))) is not None
