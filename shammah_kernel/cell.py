"""One Jupyter cell, whatever runs it: the Shammah kernel, and the `%%shammah` magics.

Given the cell text, its id, an output sink, the front end and a way to read a line, the runner
does everything a cell does (settings problems and notices once, the status card, a slash
command or a turn with its approvals and feedback card) and returns the outcome. Front ends only
translate their protocol into this and back.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .approvals import Approver, Frontend
from .commands import claude_prompt, is_command, run_command
from .errors import ShammahError
from .events import ToolCallProposed, TurnFailed, TurnFinished
from .feedback_view import show_feedback
from .markup import escape_text
from .renderer import OutputSink, ReplyRenderer, markdown_bundle

if TYPE_CHECKING:
    from .assistant import Assistant
    from .turn import TurnHandle
    from .widgets.status import StatusCards

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CellOutcome:
    """How a cell ended: ok, or an error with a name and one readable line."""

    error_name: str = ""
    message: str = ""

    @property
    def ok(self) -> bool:
        return not self.error_name


OK = CellOutcome()


class CellRunner:
    """Runs cells for one assistant; holds what lasts between cells (status cards, notices)."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self._unshown_problems = list(assistant.problems)
        self._status_shown = False
        self._status_cards: StatusCards | None = None  # made on first use: widgets load late
        self._runs = itertools.count()

    async def run(
        self,
        text: str,
        *,
        cell_id: str | None,
        sink: OutputSink | None,
        frontend: Frontend,
        read_line: Callable[[str], str],
    ) -> CellOutcome:
        """Run one cell; `sink` None is a silent cell (nothing shown). Never raises."""
        run = next(self._runs)
        shown: OutputSink = _SilentSink() if sink is None else sink
        try:
            self._show_problems_once(shown)
            self.assistant.start()
            if sink is not None and self._wants_status(text):
                self._show_status(shown, cell_id, run)
            prompt = claude_prompt(text)
            if is_command(text) and prompt is None:
                result = run_command(self.assistant, text)
                shown.display(markdown_bundle(result.markdown))
                if result.show_status and sink is not None:
                    self._show_status(shown, cell_id, run)
                return OK
            if not text.strip():
                return OK
            if prompt is not None and not prompt:
                run_command(self.assistant, text)  # raises the usage error
            return await self._turn(prompt or text, cell_id, shown, frontend, read_line, prompt)
        except ShammahError as e:
            return CellOutcome(type(e).__name__, str(e))
        except Exception as e:  # a bug of ours must not leave the cell at [*]: one line, and log
            log.exception("Shammah failed on a cell")
            message = f"Shammah failed: {type(e).__name__}: {e} (the kernel log has the details)"
            return CellOutcome("InternalError", message)

    async def _turn(
        self,
        message: str,
        cell_id: str | None,
        sink: OutputSink,
        frontend: Frontend,
        read_line: Callable[[str], str],
        prompt: str | None,
    ) -> CellOutcome:
        # Terminals (jupyter console) ignore display updates: they get plain text.
        plain, streaming = frontend is Frontend.TERMINAL, self.assistant.config.streaming
        renderer = ReplyRenderer(sink, plain=plain, streaming=streaming)
        approver = Approver(sink, frontend, read_line)
        handle = self.assistant.session.ask(message, cell_id=cell_id, claude=prompt is not None)
        final = await _stream(handle, renderer, approver)
        if frontend is Frontend.WIDGETS and isinstance(final, TurnFinished) and final.turn:
            show_feedback(sink, self.assistant, final.turn)
        if isinstance(final, TurnFailed):
            return CellOutcome("ModelError", final.message)
        if final.interrupted:
            text = (
                "Interrupted: the partial answer above is kept in the conversation."
                if final.text
                else "Interrupted before any answer."
            )
            return CellOutcome("KeyboardInterrupt", text)
        return OK

    def _wants_status(self, text: str) -> bool:
        """The live status card: on a session's first cell, and on every `/status`."""
        return not self._status_shown or text.strip().split(maxsplit=1)[:1] == ["/status"]

    def _show_status(self, sink: OutputSink, cell_id: str | None, run: int) -> None:
        """One live card per cell: it replaces the card an earlier run of the cell showed."""
        if self._status_cards is None:
            from .widgets.status import StatusCards

            self._status_cards = StatusCards(self.assistant.worker, self.assistant.learner)
        self._status_shown = True
        bundle = self._status_cards.open(cell_id, run)
        if bundle is not None:
            sink.display(bundle)

    def _show_problems_once(self, sink: OutputSink) -> None:
        """Settings problems once, a rule file's again when it changes, and one-time notices."""
        problems, self._unshown_problems = self._unshown_problems, []
        problems += self.assistant.rules.new_problems()
        if problems:
            lines = "\n".join(f"- {escape_text(str(p))}" for p in problems)
            sink.display(markdown_bundle(f"**Settings problems** (defaults used):\n\n{lines}"))
        for notice in self.assistant.take_notices():
            sink.display(markdown_bundle(f"*{escape_text(notice)}*", notice))


async def _stream(
    handle: TurnHandle, renderer: ReplyRenderer, approver: Approver
) -> TurnFinished | TurnFailed:
    """Render the turn's events as they come, until it ends; the stop button cancels it."""
    with _cancel_on_sigint(handle):
        try:
            async for event in handle.events():
                renderer.handle(event)
                if isinstance(event, ToolCallProposed):
                    approver.ask(event)
                if isinstance(event, TurnFinished | TurnFailed):
                    return event
        finally:
            approver.close("the turn ended before a decision")
    raise AssertionError("a turn's events end with TurnFinished or TurnFailed")


@contextmanager
def _cancel_on_sigint(handle: TurnHandle) -> Iterator[None]:
    """While a turn runs, the stop button (SIGINT) cancels it instead of raising.

    The handler goes through the event loop (`add_signal_handler`), which wakes the loop at
    once: a plain `signal.signal` handler would run only when the loop next wakes on its own.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    running = asyncio.get_running_loop()
    loop: asyncio.AbstractEventLoop | None = running
    try:
        running.add_signal_handler(signal.SIGINT, handle.cancel)
    except (NotImplementedError, RuntimeError, ValueError):  # no loop signals here
        signal.signal(signal.SIGINT, lambda *_: handle.cancel())
        loop = None
    try:
        yield
    finally:
        if loop is not None:
            loop.remove_signal_handler(signal.SIGINT)
        signal.signal(signal.SIGINT, previous)


class _SilentSink:
    def display(self, data: dict[str, str], display_id: str | None = None) -> None:
        pass

    def update(self, data: dict[str, str], display_id: str) -> None:
        pass

    def stream(self, text: str) -> None:
        pass
