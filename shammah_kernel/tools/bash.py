"""Bash: a shell command in the workspace, its output streamed as it runs."""

from __future__ import annotations

import codecs
import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

from .arguments import number_arg, str_arg
from .base import Arguments, HeadTail, ToolContext, ToolOutcome

MAX_TIMEOUT = 600.0
# Output that background processes still write once the command has exited is waited for this long.
EXIT_GRACE = 1.0
# No pagers or prompts: nobody can answer them.
QUIET_ENV = {"PAGER": "cat", "GIT_PAGER": "cat", "GIT_TERMINAL_PROMPT": "0", "TERM": "dumb"}


def _pump(stream: IO[bytes], chunks: queue.Queue[str | None], abandoned: threading.Event) -> None:
    """Reader thread: the command's output as it arrives, then None at its end or once abandoned."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with stream:
        # read1 returns what the pipe holds now, so partial lines (prompts, progress) show too.
        for raw in iter(lambda: stream.read1(65536), b""):  # type: ignore[attr-defined]
            if abandoned.is_set():
                break  # closing the pipe stops background processes that still write to it
            chunks.put(decoder.decode(raw))
    chunks.put(None)


class BashTool:
    name = "Bash"
    description = (
        "Run a bash command in the notebook's directory and return its output (stdout and "
        "stderr together) and exit code. No input can be given: stdin is closed. `timeout` is "
        "in seconds (default 120, at most 600)."
    )
    parameters: dict[str, object] = {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The bash command."},
            "timeout": {"type": "number", "minimum": 1, "maximum": MAX_TIMEOUT},
        },
        "required": ["command"],
        "additionalProperties": False,
    }

    def describe(self, arguments: Arguments, workspace: Path) -> str:
        timeout = number_arg(arguments, "timeout")
        suffix = f" (timeout {timeout:g} s)" if timeout is not None else ""
        return f"Run: {str_arg(arguments, 'command')}{suffix}"

    def specifiers(self, arguments: Arguments, workspace: Path) -> tuple[str, ...]:
        return (str_arg(arguments, "command"),)

    def preview(self, arguments: Arguments, workspace: Path) -> str:
        return ""

    def run(self, arguments: Arguments, ctx: ToolContext) -> ToolOutcome:
        timeout = min(number_arg(arguments, "timeout") or ctx.bash_timeout, MAX_TIMEOUT)
        process = subprocess.Popen(
            ["bash", "-c", str_arg(arguments, "command")],
            cwd=ctx.workspace,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill reaches its children
            env={**os.environ, **QUIET_ENV},
        )
        assert process.stdout is not None
        chunks: queue.Queue[str | None] = queue.Queue()
        abandoned = threading.Event()
        threading.Thread(
            target=_pump, args=(process.stdout, chunks, abandoned), daemon=True
        ).start()
        output = HeadTail(ctx.max_output_chars)
        try:
            ended = self._collect(process, chunks, output, ctx, time.monotonic() + timeout)
        except BaseException:  # an interrupt, or on_output failing: leave nothing running
            self._kill(process)
            raise
        finally:
            abandoned.set()
        if ended == "timeout":
            note, failed = f"[timed out after {timeout:g} s; the command was killed]", True
        elif ended == "stopped":
            note, failed = "[stopped by the user; the command was killed]", True
        else:
            code = process.returncode
            note, failed = f"[exit code {code}]", code != 0
        return ToolOutcome(f"{output.text().rstrip()}\n{note}".lstrip(), is_error=failed)

    def _collect(
        self,
        process: subprocess.Popen[bytes],
        chunks: queue.Queue[str | None],
        output: HeadTail,
        ctx: ToolContext,
        deadline: float,
    ) -> str:
        """Stream output until the command ends: "exited", "timeout" or "stopped" (group killed)."""
        eof, exited_at = False, 0.0
        while True:
            eof = eof or self._take(chunks, output, ctx, wait=0.05)
            if process.poll() is not None:
                exited_at = exited_at or time.monotonic()
                # Background children may hold the pipe open; they go on without us.
                if eof or time.monotonic() - exited_at > EXIT_GRACE:
                    return "exited"
                continue
            if eof:
                time.sleep(0.05)  # output closed but the command runs on
            ended = (
                "stopped" if ctx.should_stop() else "timeout" if time.monotonic() > deadline else ""
            )
            if ended:
                self._kill(process)
                end = time.monotonic() + 0.5  # what it wrote before the kill
                while not eof and time.monotonic() < end:
                    eof = self._take(chunks, output, ctx, wait=0.05)
                return ended

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def _take(
        self, chunks: queue.Queue[str | None], output: HeadTail, ctx: ToolContext, *, wait: float
    ) -> bool:
        """Pass on the output that is waiting (waiting up to `wait` for some); True at the end."""
        try:
            text = chunks.get(timeout=wait)
            while text is not None:
                if text:
                    output.add(text)
                    ctx.on_output(text)
                text = chunks.get_nowait()
            return True
        except queue.Empty:
            return False
