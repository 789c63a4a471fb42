"""The chat session: one conversation, its turn loop, and the events each turn yields."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING

from .conversation import Conversation
from .errors import ModelError, ShammahError
from .events import (
    GenerationOptions,
    Notice,
    TextDelta,
    Turn,
    TurnEvent,
    TurnFailed,
    TurnFinished,
)
from .worker import ModelWorker, WorkerState

if TYPE_CHECKING:
    from .mlx_backend import MlxBackend

# Small models follow a shown example of a code fence far better than an instruction alone.
DEFAULT_SYSTEM_PROMPT = (
    "You are Shammah, a helpful coding assistant in a Jupyter notebook. Always write code inside "
    "Markdown code fences, like:\n```python\nprint('hi')\n```\nKeep answers short and correct."
)


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


class ChatSession:
    """Turns a user's text into a streamed reply from the local model, keeping the history."""

    def __init__(
        self,
        worker: ModelWorker[MlxBackend],
        options: GenerationOptions,
        *,
        system_prompt: str = "",
    ) -> None:
        self.worker = worker
        self.options = options
        self.system_prompt = system_prompt or DEFAULT_SYSTEM_PROMPT
        self.conversation = Conversation()

    def ask(self, text: str, *, cell_id: str | None = None) -> TurnHandle:
        """Start a turn; its events stream on the returned handle."""
        handle = TurnHandle()
        self.conversation.begin(text, cell_id)
        self.worker.start()
        status = self.worker.status
        if status.state in (WorkerState.STARTING, WorkerState.LOADING):
            handle.emit(Notice(f"Waiting for the model: {status.detail}…"))
        future = self.worker.submit(lambda backend: self._run_turn(backend, handle, text, cell_id))
        future.add_done_callback(lambda f: _report_unserved(f, handle))
        return handle

    def _run_turn(
        self, backend: MlxBackend, handle: TurnHandle, text: str, cell_id: str | None
    ) -> None:
        """Runs on the model worker; reports only through the handle's events."""
        try:
            self._generate_into(backend, handle, text, cell_id)
        except ShammahError as e:
            handle.emit(TurnFailed(str(e)))
        except Exception as e:  # the job's top: a model crash must not kill the worker
            handle.emit(TurnFailed(f"The model failed: {type(e).__name__}: {e}"))

    def _generate_into(
        self, backend: MlxBackend, handle: TurnHandle, text: str, cell_id: str | None
    ) -> None:
        context, max_tokens = self.options.context_length, self.options.max_tokens
        # Keep room for the reply, but never more than half the context for it.
        budget = context - min(max_tokens, context // 2)
        messages, dropped = self.conversation.fit(
            self.system_prompt, text, backend.count_tokens, budget
        )
        prompt_tokens = backend.count_tokens(messages)
        if prompt_tokens > budget:
            raise ModelError(
                f"This message does not fit: it needs {prompt_tokens} tokens and the prompt may "
                f"use {budget} of the context_length {context} tokens. Shorten it, or raise "
                "[model] context_length in the config."
            )
        if dropped:
            handle.emit(
                Notice(
                    f"Dropped the {dropped} oldest turn(s) so the conversation fits the "
                    f"context length ({context} tokens)."
                )
            )
        options = replace(self.options, max_tokens=min(max_tokens, context - prompt_tokens))

        def on_text(delta: str) -> None:
            if delta:
                handle.emit(TextDelta(delta))

        result = backend.generate(
            messages, options, on_text=on_text, should_stop=lambda: handle.cancelled
        )
        turn = Turn(text, result.text, cell_id, result.interrupted, backend.name)
        self.conversation.append(turn)
        handle.emit(TurnFinished(result.text, result.stats, result.interrupted))

    def reset(self) -> None:
        self.conversation.reset()


def _report_unserved(future: Future[None], handle: TurnHandle) -> None:
    """A turn the worker could not run (the model failed to load) still ends, with the reason."""
    error = future.exception()
    if error is not None:
        handle.emit(TurnFailed(str(error)))
