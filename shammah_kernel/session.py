"""The chat session: one conversation, its turn loop, and the events each turn yields."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import TYPE_CHECKING

from .conversation import Conversation
from .crisis import HELP_RESOURCES, CrisisDetector
from .errors import ClaudeError, ModelError, ShammahError
from .events import (
    GenerationOptions,
    Message,
    Notice,
    TextDelta,
    Turn,
    TurnFailed,
    TurnFinished,
)
from .router import Route, decide_route
from .turn import TurnHandle
from .worker import ModelWorker

if TYPE_CHECKING:
    from .claude_backend import ClaudeBackend
    from .mlx_backend import MlxBackend
    from .store import ExampleStore

# Small models follow a shown example of a code fence far better than an instruction alone.
DEFAULT_SYSTEM_PROMPT = (
    "You are Shammah, a helpful coding assistant in a Jupyter notebook. Always write code inside "
    "Markdown code fences, like:\n```python\nprint('hi')\n```\nKeep answers short and correct."
)


class ChatSession:
    """Turns a user's text into a streamed reply, from the local model or Claude, keeping history.

    Local turns run on the model worker; Claude turns run on a thread of their own, so Claude
    can answer while the local model is still downloading or loading.
    """

    def __init__(
        self,
        worker: ModelWorker[MlxBackend],
        options: GenerationOptions,
        *,
        system_prompt: str = "",
        route: str = "auto",
        claude: ClaudeBackend | None = None,
        crisis: CrisisDetector | None = None,
        claude_share: float = 0.0,
        store: ExampleStore | None = None,
        chance: Callable[[], float] = random.random,
    ) -> None:
        self.worker = worker
        self.options = options
        self.system_prompt = system_prompt or DEFAULT_SYSTEM_PROMPT
        self.route = route
        self.claude = claude
        self.crisis = crisis or CrisisDetector()
        self.claude_share = claude_share
        self.store = store
        self._chance = chance
        self.conversation = Conversation()
        self.fallback_notice = ""  # said once, on the next local turn, when a fallback happened

    def ask(self, text: str, *, cell_id: str | None = None, claude: bool = False) -> TurnHandle:
        """Start a turn (`claude=True` for `/claude`); its events stream on the returned handle."""
        decision = decide_route(
            setting=self.route,
            forced_claude=claude,
            crisis=self.crisis.matches(text),
            local_ready=self.worker.answering,
            claude_available=self.claude is not None,
        )
        handle = TurnHandle()
        self.conversation.begin(text, cell_id)
        if decision.route is Route.HELP:
            handle.emit(TextDelta(HELP_RESOURCES))
            handle.emit(TurnFinished(HELP_RESOURCES, None))
        elif decision.route is Route.CLAUDE:
            threading.Thread(
                target=self._claude_turn,
                args=(handle, text, cell_id),
                name="shammah-claude-turn",
                daemon=True,
            ).start()
        else:
            self._local_turn(handle, text, cell_id)
        return handle

    def _local_turn(self, handle: TurnHandle, text: str, cell_id: str | None) -> None:
        self.worker.start()
        if not self.worker.answering:
            status = self.worker.status
            handle.emit(Notice(f"Waiting for {status.model}: {status.detail}…"))
        future = self.worker.submit(lambda backend: self._run_turn(backend, handle, text, cell_id))
        future.add_done_callback(lambda f: _report_unserved(f, handle))

    def _claude_turn(self, handle: TurnHandle, text: str, cell_id: str | None) -> None:
        """Runs on its own thread; on a Claude error the turn falls back to the local model."""
        assert self.claude is not None
        try:
            reply = self.claude.generate(
                self.conversation.messages(self.system_prompt, text),
                self.options,
                on_text=lambda delta: handle.emit(TextDelta(delta)) if delta else None,
                should_stop=lambda: handle.cancelled,
            )
        except ClaudeError as e:
            handle.emit(Notice(f"Claude: {e} Waiting for the local model instead."))
            self._local_turn(handle, text, cell_id)
            return
        except Exception as e:  # the thread's top: the turn must end
            handle.emit(TurnFailed(f"Claude failed: {type(e).__name__}: {e}"))
            return
        turn = Turn(text, reply.text, cell_id, reply.interrupted, self.claude.name)
        self.conversation.append(turn)
        handle.emit(TurnFinished(reply.text, reply.stats, reply.interrupted))

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
        if self.fallback_notice:  # set while the model was fetched: say it once, here
            handle.emit(Notice(self.fallback_notice))
            self.fallback_notice = ""
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
        full_context = self.conversation.messages(self.system_prompt, text)
        turn = Turn(text, result.text, cell_id, result.interrupted, backend.name)
        self.conversation.append(turn)
        handle.emit(TurnFinished(result.text, result.stats, result.interrupted))
        if not result.interrupted:
            self._maybe_sample(full_context, result.text)

    def _maybe_sample(self, context: list[Message], local_answer: str) -> None:
        """Ask Claude too, for a share of local turns; a different answer becomes an example."""
        if self.claude is None or self.store is None or self._chance() >= self.claude_share:
            return
        threading.Thread(
            target=self._sample, args=(context, local_answer), name="shammah-sample", daemon=True
        ).start()

    def _sample(self, context: list[Message], local_answer: str) -> None:
        assert self.claude is not None and self.store is not None
        try:
            reply = self.claude.generate(context, self.options)
        except ClaudeError:
            return  # a sample is a bonus: a failed one costs the user nothing
        if " ".join(reply.text.split()) != " ".join(local_answer.split()):
            self.store.add(context, reply.text, source="claude-sample", rejected=local_answer)

    def reset(self) -> None:
        self.conversation.reset()


def _report_unserved(future: Future[None], handle: TurnHandle) -> None:
    """A turn the worker could not run (the model failed to load) still ends, with the reason."""
    error = future.exception()
    if error is not None:
        handle.emit(TurnFailed(str(error)))
