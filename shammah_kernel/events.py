"""The vocabulary of a conversation: messages, and the events a turn yields while it runs."""

from __future__ import annotations

import enum
from concurrent.futures import Future
from dataclasses import dataclass


class Role(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant message that calls tools
    tool_call_id: str = ""  # a tool message: the call it answers
    is_error: bool = False  # a tool message whose call failed or was denied


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Sampling and length settings for one reply, derived from the config's [model] section."""

    max_tokens: int = 1024
    temperature: float = 0.2
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    context_length: int = 8192


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply, in order; the pieces concatenate to the exact reply text."""

    text: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should know about this turn (dropped history, a model loading)."""

    text: str
    transient: bool = (
        False  # true while it holds (waiting for a model): gone once the answer starts
    )


@dataclass(frozen=True, slots=True)
class GenerationStats:
    model: str
    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    prompt_seconds: float
    generation_seconds: float
    finish_reason: str
    adapter: str = ""  # the LoRA adapter on the model while it answered; "" = the base model

    @property
    def tokens_per_second(self) -> float:
        if self.generation_seconds <= 0:
            return 0.0
        return self.generated_tokens / self.generation_seconds


@dataclass(frozen=True, slots=True)
class TurnFinished:
    text: str
    stats: GenerationStats | None  # None when no model answered (crisis help resources)
    interrupted: bool = False
    turn: Turn | None = None  # the turn as the conversation keeps it (None: not kept)


@dataclass(frozen=True, slots=True)
class TurnFailed:
    message: str
    partial_text: str = ""


@dataclass(slots=True)
class Turn:
    """One user turn and the assistant's reply, as kept in the history."""

    user: str
    assistant: str = ""
    cell_id: str | None = None
    interrupted: bool = False
    model: str = ""
    steps: tuple[Message, ...] = ()  # tool calls and their results, between user and answer


class EngineState(enum.StrEnum):
    """Where the local model is on its way to answering."""

    INITIALIZING = "initializing"
    DOWNLOADING = "downloading"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    OFFLINE = "offline"  # the chosen model could not be had: the embedded model answers


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """A snapshot of the engine for the status widget, `/status` and the router."""

    state: EngineState
    model: str
    detail: str = ""  # the current step, or what went wrong
    hint: str = ""  # what the user can do about a failure
    downloaded_bytes: int = 0
    total_bytes: int = 0
    bytes_per_second: float = 0.0
    eta_seconds: float | None = None


class TrainingState(enum.StrEnum):
    """Where the background LoRA training is."""

    IDLE = "idle"  # nothing has run in this session
    PREPARING = "preparing"  # reading examples, the base model's replay answers
    TRAINING = "training"
    DONE = "done"  # the new adapter answers
    CANCELLED = "cancelled"  # the previous adapter (or none) still answers
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class TrainingStatus:
    """A snapshot of adapter training for the status widget and `/train status`."""

    state: TrainingState = TrainingState.IDLE
    adapter: str = ""  # the adapter being trained, or the one just finished
    active: str = ""  # the adapter answering now; "" = the base model
    detail: str = ""  # the current step, the outcome, or what went wrong
    iteration: int = 0
    total: int = 0
    train_loss: float | None = None
    val_loss: float | None = None
    tokens_per_second: float = 0.0
    eta_seconds: float | None = None
    examples: int = 0  # examples in this run (train + validation)
    buffer: int = 0  # stored examples no adapter has trained on yet


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for: the tool's name and its JSON arguments."""

    id: str
    name: str
    arguments: dict[str, object]


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call gave back to the model; failures are results too (`is_error`)."""

    call_id: str
    content: str
    is_error: bool = False


class ApprovalChoice(enum.StrEnum):
    """The user's answer to a tool call (PRODUCT.md: once, session, pattern, always, deny)."""

    ONCE = "once"
    SESSION = "session"  # this exact call, for the rest of the session
    SESSION_PATTERN = "session_pattern"
    ALWAYS = "always"  # this exact call, remembered in permissions.json
    ALWAYS_PATTERN = "always_pattern"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Approval:
    choice: ApprovalChoice
    rule: str = ""  # the (possibly edited) rule for the pattern choices
    reason: str = ""  # why the user denied, passed to the model

    @property
    def approved(self) -> bool:
        return self.choice is not ApprovalChoice.DENY


@dataclass(frozen=True, slots=True)
class ToolCallProposed:
    """A tool call that needs the user's decision; whoever renders it resolves `answer`."""

    call: ToolCall
    description: str  # exactly what will happen: the command, the path, the URL
    preview: str  # a diff for Edit/Write, else ""
    suggestion: str  # a generalized rule for the pattern choices, e.g. Bash(pytest *)
    answer: Future[Approval]
    # A protected path (rule files, the Shammah home, secrets, files that run code later): only
    # "once" or "deny" are offered, so no remembered rule ever covers it.
    per_call_only: bool = False


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    call: ToolCall
    description: str


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """Output a running tool streams (Bash), shown in the cell as it arrives."""

    call_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    call: ToolCall
    description: str
    result: ToolResult
    refused: bool = False  # never ran: denied, or not a valid call


ToolEvent = ToolCallProposed | ToolCallStarted | ToolOutput | ToolCallFinished

TurnEvent = TextDelta | Notice | TurnFinished | TurnFailed | ToolEvent
