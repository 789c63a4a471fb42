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
from collections.abc import Callable
from pathlib import Path
from typing import IO

from ..secrets import StreamScrubber, tool_environment
from .arguments import number_arg, str_arg
from .base import Arguments, HeadTail, ToolContext, ToolOutcome

MAX_TIMEOUT = 600.0
# Output that background processes still write once the command has exited is waited for this long.
EXIT_GRACE = 1.0
# No pagers or prompts: nobody can answer them.
QUIET_ENV = {"PAGER": "cat", "GIT_PAGER": "cat", "GIT_TERMINAL_PROMPT": "0", "TERM": "dumb"}
READ_SIZE = 65536
# Chunks waiting for the main loop; a full queue blocks the reader, so a flood waits in the pipe.
QUEUED_CHUNKS = 16
# The main loop hands output on for at most this long before it checks the deadline and stop.
TAKE_SLICE = 0.05
STREAM_INTERVAL = 0.1  # the cell is updated at most this often
STREAM_KEEP = 65536  # characters sent to the cell per update; in a flood, older ones are skipped


def _pump(stream: IO[bytes], chunks: queue.Queue[str | None], abandoned: threading.Event) -> None:
    """Reader thread: the command's output as it arrives, then None at its end or once abandoned."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with stream:
        # read1 returns what the pipe holds now, so partial lines (prompts, progress) show too.
        for raw in iter(lambda: stream.read1(READ_SIZE), b""):  # type: ignore[attr-defined]
            if not _put(chunks, decoder.decode(raw), abandoned):
                return  # closing the pipe stops background processes that still write to it
    if _put(chunks, decoder.decode(b"", final=True), abandoned):  # a cut-off UTF-8 sequence
        _put(chunks, None, abandoned)


def _put(chunks: queue.Queue[str | None], item: str | None, abandoned: threading.Event) -> bool:
    """Queue `item`, waiting while the queue is full; False once the main loop has gone."""
    while not abandoned.is_set():
        try:
            chunks.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _Stream:
    """What the cell is sent: scrubbed, at most every STREAM_INTERVAL, the latest STREAM_KEEP."""

    def __init__(self, on_output: Callable[[str], None]) -> None:
        self.on_output = on_output
        self.pending = ""
        self.skipped = 0
        self.sent_at = 0.0

    def add(self, text: str) -> None:
        self.pending += text
        if len(self.pending) > STREAM_KEEP:
            self.skipped += len(self.pending) - STREAM_KEEP
            self.pending = self.pending[-STREAM_KEEP:]
        self.tick()

    def tick(self) -> None:
        if self.pending and time.monotonic() - self.sent_at >= STREAM_INTERVAL:
            self.flush()

    def flush(self) -> None:
        if self.skipped:
            self.pending = f"\n[... {self.skipped} characters not shown ...]\n{self.pending}"
        text, self.pending, self.skipped = self.pending, "", 0
        self.sent_at = time.monotonic()
        if text:
            self.on_output(text)


class _Sink:
    """Where the command's output goes: scrubbed of secrets, into the result and the cell."""

    def __init__(self, output: HeadTail, ctx: ToolContext) -> None:
        self.output = output
        self.scrubber = StreamScrubber()
        self.stream = _Stream(ctx.on_output)

    def add(self, text: str) -> None:
        self._pass(self.scrubber.feed(text))

    def finish(self) -> None:
        self._pass(self.scrubber.finish())
        self.stream.flush()

    def _pass(self, text: str) -> None:
        if text:
            self.output.add(text)
            self.stream.add(text)


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
            # The gate parses the whole line before deciding: a bound keeps that quick.
            "command": {"type": "string", "description": "The bash command.", "maxLength": 20_000},
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
        # Secrets stay out even when no environment was given (the gate's default).
        env = dict(ctx.env) if ctx.env is not None else tool_environment(os.environ)
        process = subprocess.Popen(
            ["bash", "-c", str_arg(arguments, "command")],
            cwd=ctx.workspace,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill reaches its children
            env={**env, **QUIET_ENV},
        )
        assert process.stdout is not None
        chunks: queue.Queue[str | None] = queue.Queue(maxsize=QUEUED_CHUNKS)
        abandoned = threading.Event()
        threading.Thread(
            target=_pump, args=(process.stdout, chunks, abandoned), daemon=True
        ).start()
        output = HeadTail(ctx.max_output_chars)
        sink = _Sink(output, ctx)
        try:
            ended = self._collect(process, chunks, sink, ctx, time.monotonic() + timeout)
            sink.finish()
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
        sink: _Sink,
        ctx: ToolContext,
        deadline: float,
    ) -> str:
        """Stream output until the command ends: "exited", "timeout" or "stopped" (group killed)."""
        eof, exited_at = False, 0.0
        while True:
            eof = eof or self._take(chunks, sink, wait=0.05)
            sink.stream.tick()
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
                    eof = self._take(chunks, sink, wait=0.05)
                return ended

    def _kill(self, process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def _take(self, chunks: queue.Queue[str | None], sink: _Sink, *, wait: float) -> bool:
        """Pass on output that is waiting (up to `wait` for some, at most TAKE_SLICE of it, so a
        flood still lets the caller check the deadline and stop); True at the end of output."""
        until = time.monotonic() + TAKE_SLICE
        try:
            text = chunks.get(timeout=wait)
            while text is not None:
                sink.add(text)
                if time.monotonic() >= until:
                    return False
                text = chunks.get_nowait()
            return True
        except queue.Empty:
            return False
