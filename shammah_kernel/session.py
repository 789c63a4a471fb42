"""The chat session: one conversation, its turn loop, and the events each turn yields."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Protocol

from .conversation import Conversation
from .crisis import HELP_RESOURCES, CrisisDetector
from .errors import ClaudeError, ShammahError
from .events import (
    GenerationStats,
    Message,
    Notice,
    Role,
    TextDelta,
    ToolCall,
    Turn,
    TurnFailed,
    TurnFinished,
)
from .router import Route, decide_route
from .secrets import scrub
from .steps import StepReply, ToolSchemas, claude_step, local_step
from .turn import TurnHandle
from .worker import ModelWorker

if TYPE_CHECKING:
    from .claude_link import ClaudeLink
    from .events import GenerationOptions
    from .mlx_backend import MlxBackend
    from .store import ExampleStore

TOOL_STEP_LIMIT = 10  # model steps in one turn before it must answer
REPEAT_LIMIT = 2  # the same tool call with the same arguments, within one turn


class ToolGate(Protocol):
    """Offers the tools to the model and runs a call once the rules or the user allow it."""

    def schemas(self) -> ToolSchemas: ...

    def run(self, call: ToolCall, handle: TurnHandle) -> Message: ...


# Small models follow a shown example of a code fence far better than an instruction alone.
DEFAULT_SYSTEM_PROMPT = (
    "You are Shammah, a helpful coding assistant in a Jupyter notebook. Always write code inside "
    "Markdown code fences, like:\n```python\nprint('hi')\n```\nKeep answers short and correct."
)


class ChatSession:
    """Turns a user's text into a streamed reply, from the local model or Claude, keeping history.

    Each turn runs on a thread of its own: local model steps go through the worker's queue, Claude
    steps and tool calls run on the turn's thread, so Claude can answer while the local model is
    still downloading or loading, and a long tool call never holds the model.
    """

    def __init__(
        self,
        worker: ModelWorker[MlxBackend],
        options: GenerationOptions,
        *,
        system_prompt: str = "",
        route: str = "auto",
        claude: ClaudeLink | None = None,
        crisis: CrisisDetector | None = None,
        claude_share: float = 0.0,
        store: ExampleStore | None = None,
        gate: ToolGate | None = None,
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
        self.gate = gate
        self._chance = chance
        self.conversation = Conversation()
        self.fallback_notice = ""  # said once, on the next local turn, when a fallback happened
        self.on_finished: Callable[[Turn, list[Message]], None] | None = None
        self.last_context: list[Message] = []  # what the model saw for the last answer

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
        self.conversation.begin(cell_id)
        if decision.route is Route.HELP:
            handle.emit(TextDelta(HELP_RESOURCES))
            handle.emit(TurnFinished(HELP_RESOURCES, None))
        else:
            self._start_turn(handle, text, cell_id, decision.route is Route.CLAUDE)
        return handle

    def _start_turn(self, handle: TurnHandle, text: str, cell_id: str | None, claude: bool) -> None:
        if not claude:
            self.worker.start()
            if not self.worker.answering:
                status = self.worker.status
                handle.emit(Notice(f"Waiting for {status.model}: {status.detail}…"))
        threading.Thread(
            target=self._run_turn,
            args=(handle, text, cell_id, claude),
            name="shammah-turn",
            daemon=True,
        ).start()

    def _run_turn(self, handle: TurnHandle, text: str, cell_id: str | None, claude: bool) -> None:
        """The turn's thread: model step, tool calls, model step... until the model answers.

        Model work goes through the worker's queue; tools run here, so the worker stays free.
        """
        try:
            self._loop(handle, text, cell_id, claude)
        except ShammahError as e:
            handle.emit(TurnFailed(scrub(str(e))))
        except Exception as e:  # the thread's top: the turn must end, with the reason
            handle.emit(TurnFailed(scrub(f"The model failed: {type(e).__name__}: {e}")))

    def _loop(self, handle: TurnHandle, text: str, cell_id: str | None, claude: bool) -> None:
        steps: list[Message] = []
        seen: dict[str, int] = {}
        for _ in range(TOOL_STEP_LIMIT):
            reply, claude = self._step(handle, text, steps, claude)
            if reply.interrupted or not (reply.calls or reply.problems):
                return self._finish(handle, text, cell_id, steps, reply)
            steps.append(Message(Role.ASSISTANT, reply.raw, tool_calls=reply.calls))
            steps.extend(Message(Role.TOOL, p, is_error=True) for p in reply.problems)
            for call in reply.calls:
                steps.append(self._call_tool(call, handle, seen))
        handle.emit(Notice(f"Stopped after {TOOL_STEP_LIMIT} tool steps without an answer."))
        return self._finish(handle, text, cell_id, steps, reply)

    def _step(
        self, handle: TurnHandle, text: str, steps: list[Message], claude: bool
    ) -> tuple[StepReply, bool]:
        """One model step; a Claude error switches the rest of the turn to the local model."""
        schemas = self.gate.schemas() if self.gate else ()
        if claude and self.claude is not None:
            messages = [*self.conversation.messages(self.system_prompt, text), *steps]
            try:
                return claude_step(self.claude, messages, self.options, schemas, handle), True
            except ClaudeError as e:
                handle.emit(Notice(f"Claude: {e} Waiting for the local model instead."))
                self.worker.start()
        future = self.worker.submit(
            lambda backend: self._local(backend, handle, text, steps, schemas)
        )
        while True:  # wait in slices: a stop while the model still loads ends the wait at once
            try:
                return future.result(timeout=0.1), False
            except FutureTimeout:
                if handle.cancelled and future.cancel():
                    return _not_started(self.worker.status.model), False

    def _local(
        self,
        backend: MlxBackend,
        handle: TurnHandle,
        text: str,
        steps: list[Message],
        schemas: ToolSchemas,
    ) -> StepReply:
        if self.fallback_notice:  # set while the model was fetched: say it once, here
            handle.emit(Notice(self.fallback_notice))
            self.fallback_notice = ""
        return local_step(
            backend,
            self.conversation,
            self.system_prompt,
            text,
            steps,
            self.options,
            schemas,
            handle,
        )

    def _call_tool(self, call: ToolCall, handle: TurnHandle, seen: dict[str, int]) -> Message:
        key = f"{call.name}:{json.dumps(call.arguments, sort_keys=True, default=str)}"
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > REPEAT_LIMIT:
            note = (
                f"This exact {call.name} call was already made {REPEAT_LIMIT} times in this turn; "
                "use the earlier result, or answer the user."
            )
            return Message(Role.TOOL, note, tool_call_id=call.id, is_error=True)
        assert self.gate is not None
        return self.gate.run(call, handle)

    def _finish(
        self,
        handle: TurnHandle,
        text: str,
        cell_id: str | None,
        steps: list[Message],
        reply: StepReply,
    ) -> None:
        context = self.conversation.messages(self.system_prompt, text)
        full_context = [*context, *steps]
        model = reply.stats.model
        turn = Turn(text, reply.text, cell_id, reply.interrupted, model, tuple(steps))
        self.conversation.append(turn)
        self.last_context = context
        if self.on_finished is not None:
            self.on_finished(turn, context)  # before the event: a saved example survives a kill
        handle.emit(TurnFinished(reply.text, reply.stats, reply.interrupted, turn))
        local = self.claude is None or model != self.claude.name
        if local and not reply.interrupted and not steps:
            self._maybe_sample(full_context, reply.text)

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


def _not_started(model: str) -> StepReply:
    """The reply of a step stopped before the model took it (it was still loading)."""
    stats = GenerationStats(model, 0, 0, 0, 0.0, 0.0, "interrupted")
    return StepReply("", "", (), (), stats, interrupted=True)
