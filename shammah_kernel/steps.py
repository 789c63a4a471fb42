"""One model step of a turn: a reply that may call tools, from the local model or from Claude."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .errors import ModelError
from .events import GenerationOptions, GenerationStats, Message, Notice, TextDelta, ToolCall
from .tool_calls import ToolCallStreamFilter, parse_tool_calls
from .turn import TurnHandle

if TYPE_CHECKING:
    from .claude_link import ClaudeLink
    from .conversation import Conversation
    from .mlx_backend import MlxBackend

ToolSchemas = Sequence[tuple[str, str, dict[str, object]]]  # name, description, JSON schema


@dataclass(frozen=True, slots=True)
class StepReply:
    text: str  # what the user sees (tool-call markup removed)
    raw: str  # what the model wrote, as it goes back into the prompt
    calls: tuple[ToolCall, ...]
    problems: tuple[str, ...]  # malformed tool calls, reported back to the model
    stats: GenerationStats
    interrupted: bool


def _emit_text(handle: TurnHandle) -> Callable[[str], None]:
    def emit(delta: str) -> None:
        if delta:
            handle.emit(TextDelta(delta))

    return emit


def local_step(
    backend: MlxBackend,
    conversation: Conversation,
    system_prompt: str,
    user: str,
    steps: Sequence[Message],
    options: GenerationOptions,
    tools: ToolSchemas,
    handle: TurnHandle,
) -> StepReply:
    """Runs on the model worker: fit the history, generate, and pick out tool calls."""
    definitions = _openai_tools(tools) if backend.supports_tools else []
    context, max_tokens = options.context_length, options.max_tokens
    # Keep room for the reply, but never more than half the context for it.
    budget = context - min(max_tokens, context // 2)

    def count(messages: list[Message]) -> int:
        return backend.count_tokens([*messages, *steps], definitions)

    messages, dropped = conversation.fit(system_prompt, user, count, budget)
    prompt_tokens = count(messages)
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
    shown = ToolCallStreamFilter()
    emit = _emit_text(handle)
    result = backend.generate(
        [*messages, *steps],
        replace(options, max_tokens=min(max_tokens, context - prompt_tokens)),
        tools=definitions,
        on_text=lambda delta: emit(shown.feed(delta)),
        should_stop=lambda: handle.cancelled,
    )
    emit(shown.finish())
    earlier = sum(len(m.tool_calls) for m in steps)  # call ids stay unique within the turn
    parsed = parse_tool_calls(result.text, first_id=earlier) if definitions else None
    if parsed is None:
        return StepReply(result.text, result.text, (), (), result.stats, result.interrupted)
    return StepReply(
        parsed.text_without_calls,
        result.text,
        tuple(parsed.calls),
        tuple(parsed.problems),
        result.stats,
        result.interrupted,
    )


def claude_step(
    claude: ClaudeLink,
    messages: Sequence[Message],
    options: GenerationOptions,
    tools: ToolSchemas,
    handle: TurnHandle,
) -> StepReply:
    """Runs on the turn's thread: Claude's native tool use, streamed."""
    reply = claude.generate(
        messages,
        options,
        tools=tools,
        on_text=_emit_text(handle),
        should_stop=lambda: handle.cancelled,
    )
    malformed = tuple(
        f"The arguments of your {c.name} call were not valid JSON: {c.arguments['__malformed__']}"
        for c in reply.tool_calls
        if "__malformed__" in c.arguments
    )
    calls = tuple(c for c in reply.tool_calls if "__malformed__" not in c.arguments)
    return StepReply(reply.text, reply.text, calls, malformed, reply.stats, reply.interrupted)


def _openai_tools(tools: ToolSchemas) -> list[dict[str, object]]:
    return [
        {"type": "function", "function": {"name": n, "description": d, "parameters": p}}
        for n, d, p in tools
    ]
