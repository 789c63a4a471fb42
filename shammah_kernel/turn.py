"""A running turn: the events it yields, in order, and a way to ask it to stop."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Iterator

from .events import TurnEvent, TurnFailed, TurnFinished


class TurnHandle:
    """A running turn: its events arrive in order on a queue, and `cancel` asks it to stop."""

    def __init__(self) -> None:
        self._events: queue.Queue[TurnEvent] = queue.Queue()
        self._cancel = threading.Event()
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._waiter_lock = threading.Lock()
        self.done = False

    def emit(self, event: TurnEvent) -> None:
        """From any thread; wakes the event loop awaiting `events()`, if one is."""
        self._events.put(event)
        with self._waiter_lock:
            waiter = self._waiter
        if waiter is not None:
            loop, ready = waiter
            with contextlib.suppress(RuntimeError):  # the loop closed (a kernel shutting down)
                loop.call_soon_threadsafe(ready.set)

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

    async def events(self) -> AsyncIterator[TurnEvent]:
        """The events, awaited on the running loop (no polling) until the turn ends."""
        ready = asyncio.Event()
        with self._waiter_lock:
            self._waiter = (asyncio.get_running_loop(), ready)
        try:
            while not self.done:
                event = self.next_event()
                if event is None:
                    await ready.wait()
                    ready.clear()
                    continue
                yield event
        finally:
            with self._waiter_lock:
                self._waiter = None

    def __iter__(self) -> Iterator[TurnEvent]:
        while not self.done:
            event = self.next_event(timeout=0.1)
            if event is not None:
                yield event
