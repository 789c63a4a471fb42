"""The Shammah Jupyter kernel: each cell is one turn with the assistant, or a slash command.

A thin adapter: protocol plumbing stays in ipykernel; behaviour lives in the assistant, the
commands and the renderer. It subclasses IPythonKernel because only that class handles comms
(widgets).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ipykernel.ipkernel import IPythonKernel
from traitlets import Float

from . import __version__
from .approvals import Approver, Frontend, frontend_for
from .assistant import Assistant
from .commands import COMMANDS, claude_prompt, complete, is_command, run_command
from .errors import ShammahError
from .events import ToolCallProposed, TurnFailed, TurnFinished
from .feedback_view import show_feedback
from .markup import escape_text
from .renderer import OutputSink, ReplyRenderer, markdown_bundle
from .session import TurnHandle

if TYPE_CHECKING:
    from .widgets.status import StatusCards

RED, RESET = "\x1b[31m", "\x1b[0m"


class IopubSink:
    """Sends outputs of the current cell on the kernel's iopub channel."""

    def __init__(self, kernel: ShammahKernel) -> None:
        self.kernel = kernel

    def _send(self, msg_type: str, content: dict[str, Any]) -> None:
        self.kernel.send_response(self.kernel.iopub_socket, msg_type, content)

    def display(self, data: dict[str, str], display_id: str | None = None) -> None:
        transient = {"display_id": display_id} if display_id else {}
        self._send("display_data", {"data": data, "metadata": {}, "transient": transient})

    def update(self, data: dict[str, str], display_id: str) -> None:
        content = {"data": data, "metadata": {}, "transient": {"display_id": display_id}}
        self._send("update_display_data", content)

    def stream(self, text: str) -> None:
        self._send("stream", {"name": "stdout", "text": text})


class SilentSink:
    def display(self, data: dict[str, str], display_id: str | None = None) -> None:
        pass

    def update(self, data: dict[str, str], display_id: str) -> None:
        pass

    def stream(self, text: str) -> None:
        pass


class ShammahKernel(IPythonKernel):
    implementation = "shammah"
    implementation_version = __version__
    banner = "Shammah: a local AI coding assistant. Every cell is a message; /help lists commands."
    language_info = {
        "name": "markdown",
        "mimetype": "text/markdown",
        "file_extension": ".md",
        "codemirror_mode": "markdown",
        "pygments_lexer": "markdown",
    }
    poll_interval = Float(
        0.01, help="Seconds between checks for new reply text while a turn streams."
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.assistant = Assistant()
        for problem in self.assistant.problems:
            self.log.warning("%s", problem)
        self._unshown_problems = list(self.assistant.problems)
        self._status_shown = False
        self._status_cards: StatusCards | None = None  # made on first use: widgets load late
        self._runs = itertools.count()
        self._run = 0  # tells one execution of a cell from the next: one status card each

    @property
    def kernel_info(self) -> dict[str, Any]:
        info = dict(super().kernel_info)
        # The debugger is for Python cells; Shammah cells are messages.
        info["supported_features"] = [
            f for f in info.get("supported_features", []) if f != "debugger"
        ]
        return info

    async def kernel_info_request(self, stream: Any, ident: Any, parent: Any) -> None:
        await super().kernel_info_request(stream, ident, parent)
        # Load the model only after the first reply, so the kernel answers at once.
        self.assistant.start()

    async def do_execute(
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict[str, Any] | None = None,
        allow_stdin: bool = False,
        *,
        cell_meta: dict[str, Any] | None = None,
        cell_id: str | None = None,
    ) -> dict[str, Any]:
        assert self.shell is not None
        count = self.shell.execution_count
        self._run = next(self._runs)
        if store_history and not silent:
            self.shell.execution_count += 1
        self._allow_stdin = allow_stdin  # our execute path, not IPython's, so set it here
        sink: OutputSink = SilentSink() if silent else IopubSink(self)
        self._show_config_problems_once(sink)
        try:
            self.assistant.start()
            self._show_status_once(sink, code, cell_id)
            prompt = claude_prompt(code)
            if is_command(code) and prompt is None:
                result = run_command(self.assistant, code)
                sink.display(markdown_bundle(result.markdown))
                if result.show_status:
                    self._show_status(sink, cell_id)
            elif code.strip():
                # Terminals (jupyter console) ignore display updates: they get plain text.
                frontend = frontend_for(cell_id, allow_stdin)
                plain, streaming = frontend is Frontend.TERMINAL, self.assistant.config.streaming
                renderer = ReplyRenderer(sink, plain=plain, streaming=streaming)
                approver = Approver(sink, frontend, self.raw_input)
                forced = prompt is not None
                if forced and not prompt:
                    run_command(self.assistant, code)  # raises the usage error
                message = prompt or code
                handle = self.assistant.session.ask(message, cell_id=cell_id, claude=forced)
                final = await self._stream(handle, renderer, approver)
                if frontend is Frontend.WIDGETS and isinstance(final, TurnFinished) and final.turn:
                    show_feedback(sink, self.assistant, final.turn)
                if isinstance(final, TurnFailed):
                    return self._error(sink, count, "ModelError", final.message)
                if final.interrupted:
                    message = (
                        "Interrupted: the partial answer above is kept in the conversation."
                        if final.text
                        else "Interrupted before any answer."
                    )
                    return self._error(sink, count, "KeyboardInterrupt", message)
        except ShammahError as e:
            return self._error(sink, count, type(e).__name__, str(e))
        except Exception as e:  # a bug of ours must not leave the cell at [*]: one line, and log
            self.log.exception("Shammah failed on a cell")
            message = f"Shammah failed: {type(e).__name__}: {e} (the kernel log has the details)"
            return self._error(sink, count, "InternalError", message)
        return {"status": "ok", "execution_count": count, "payload": [], "user_expressions": {}}

    def _show_status_once(self, sink: OutputSink, code: str, cell_id: str | None) -> None:
        """The live status widget: on a session's first cell, and on every `/status`."""
        first = not self._status_shown
        if first or code.strip().split(maxsplit=1)[:1] == ["/status"]:
            self._show_status(sink, cell_id)

    def _show_status(self, sink: OutputSink, cell_id: str | None) -> None:
        """One live card per cell: it replaces the card an earlier run of the cell showed."""
        if isinstance(sink, SilentSink):  # nobody would see it
            return
        if self._status_cards is None:
            from .widgets.status import StatusCards

            self._status_cards = StatusCards(self.assistant.worker, self.assistant.learner)
        self._status_shown = True
        bundle = self._status_cards.open(cell_id, self._run)
        if bundle is not None:
            sink.display(bundle)

    def _show_config_problems_once(self, sink: OutputSink) -> None:
        problems, self._unshown_problems = self._unshown_problems, []
        if problems:
            lines = "\n".join(f"- {escape_text(str(p))}" for p in problems)
            sink.display(markdown_bundle(f"**Settings problems** (defaults used):\n\n{lines}"))

    async def _stream(
        self, handle: TurnHandle, renderer: ReplyRenderer, approver: Approver
    ) -> TurnFinished | TurnFailed:
        with _cancel_on_sigint(handle):
            try:
                while True:
                    event = handle.next_event()
                    if event is None:
                        await asyncio.sleep(self.poll_interval)
                        continue
                    renderer.handle(event)
                    if isinstance(event, ToolCallProposed):
                        approver.ask(event)
                    if isinstance(event, TurnFinished | TurnFailed):
                        return event
            finally:
                approver.close("the turn ended before a decision")

    def _error(self, sink: OutputSink, count: int, name: str, message: str) -> dict[str, Any]:
        """An error reply with a one-line message in the cell: no traceback of ours."""
        content = {"ename": name, "evalue": message, "traceback": [f"{RED}{message}{RESET}"]}
        if isinstance(sink, IopubSink):
            self.send_response(self.iopub_socket, "error", content)
        return {"status": "error", "execution_count": count, **content}

    def do_complete(self, code: str, cursor_pos: int) -> dict[str, Any]:  # type: ignore[override]
        matches, start, end = complete(code, cursor_pos)
        return {
            "status": "ok",
            "matches": matches,
            "cursor_start": start,
            "cursor_end": end,
            "metadata": {},
        }

    def do_inspect(  # type: ignore[override]
        self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()
    ) -> dict[str, Any]:
        line = code.splitlines()[0] if code.strip() else ""
        name = line[1:].split(" ")[0] if line.startswith("/") else ""
        command = COMMANDS.get(name)
        if command is None:
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}
        text = f"{command.usage}\n\n{command.summary}"
        return {"status": "ok", "found": True, "data": markdown_bundle(text), "metadata": {}}

    def do_is_complete(self, code: str) -> dict[str, Any]:  # type: ignore[override]
        # A message is complete unless a fenced code block is still open.
        if code.count("```") % 2:
            return {"status": "incomplete", "indent": ""}
        return {"status": "complete"}

    def do_shutdown(self, restart: bool) -> dict[str, Any]:  # type: ignore[override]
        self.assistant.shutdown()
        return dict(super().do_shutdown(restart))


@contextmanager
def _cancel_on_sigint(handle: TurnHandle) -> Iterator[None]:
    """While a turn streams, the stop button (SIGINT) cancels it instead of raising."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: handle.cancel())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
