"""A running turn: the events it yields, in order, and a way to ask it to stop."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from .events import TurnEvent, TurnFailed, TurnFinished


class TurnHandle:
    """A running turn: its events arrive in order on a queue, and `cancel` asks it to stop."""

    def __init__(self) -> None:
        self._events: queue.Queue[TurnEvent] = queue.Queue()
        self._cancel = threading.Event()
        self.done = False

    def emit(self, event: TurnEvent) -> None:
        self._events.put(event)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def next_event(self, timeout: float | None = None) -> TurnEvent | None:
        """The next event, or None if none came within `timeout` seconds."""
        try:
            event = self._events.get(timeout=timeout) if timeout else self._events.get_nowait()
        except queue.Empty:
            return None
        self.done = isinstance(event, TurnFinished | TurnFailed)
        return event

    def __iter__(self) -> Iterator[TurnEvent]:
        while not self.done:
            event = self.next_event(timeout=0.1)
            if event is not None:
                yield event
