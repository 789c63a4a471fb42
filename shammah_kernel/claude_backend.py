"""Claude through the Anthropic Messages API: streamed replies while the local model is not ready.

Like `mlx_backend`, this module is imported only where a backend is built, so
`import shammah_kernel` stays free of `anthropic`. The API key never appears in an error,
a repr or a log line of ours.

Tools are native: definitions go out as `tools=`, `tool_use` blocks come back as
`ToolCall`s, and the history's tool calls and `Role.TOOL` results are sent as the
`tool_use` / `tool_result` blocks the Messages API expects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anthropic
import httpx2
from anthropic.types import (
    ContentBlockParam,
    MessageParam,
    RawMessageStreamEvent,
    ToolParam,
    ToolResultBlockParam,
)

from .claude_link import resolve_api_key as resolve_api_key
from .errors import ClaudeError
from .events import GenerationOptions, GenerationStats, Message, Role, ToolCall
from .secrets import register_secret, scrub, scrub_fragments

KEY_HELP = "check ANTHROPIC_API_KEY or api_key in config.toml"
# Claude's stop reasons in the local backend's words; others pass through unchanged.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
# The `error.type` of an error event sent mid-stream (HTTP 200), as the status it stands for.
ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
MAX_DETAIL = 200
# A tool call whose streamed input is not a JSON object keeps the raw text under this key,
# so the caller can tell the model what went wrong instead of running the tool.
MALFORMED_INPUT = "__malformed__"
# The API rejects a tool_result with empty content when is_error is true.
EMPTY_RESULT = "(no output)"

# A tool the model may call: name, description, and the JSON schema of its input.
ToolDefinition = tuple[str, str, Mapping[str, object]]


def _tool_param(tool: ToolDefinition) -> ToolParam:
    name, description, schema = tool
    return ToolParam(name=name, description=description, input_schema=dict(schema))


def _assistant_message(message: Message) -> MessageParam:
    if not message.tool_calls:
        return {"role": "assistant", "content": message.content}
    blocks: list[ContentBlockParam] = []
    if message.content.strip():  # the API rejects whitespace-only text blocks
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": dict(call.arguments)}
        )
    return {"role": "assistant", "content": blocks}


def _tool_result(message: Message) -> ToolResultBlockParam:
    return {
        "type": "tool_result",
        "tool_use_id": message.tool_call_id,
        "content": message.content or EMPTY_RESULT,
        "is_error": message.is_error,
    }


def _chat_messages(messages: Sequence[Message]) -> list[MessageParam]:
    """The non-system messages as API turns; a run of tool results becomes one user turn."""
    chat: list[MessageParam] = []
    results: list[ToolResultBlockParam] = []
    for message in messages:
        if message.role is Role.TOOL:
            results.append(_tool_result(message))
            continue
        if results:
            chat.append({"role": "user", "content": results})
            results = []
        if message.role is Role.USER:
            chat.append({"role": "user", "content": message.content})
        elif message.role is Role.ASSISTANT:
            chat.append(_assistant_message(message))
    if results:
        chat.append({"role": "user", "content": results})
    return chat


def _tool_call(call_id: str, name: str, start_input: dict[str, object], raw: str) -> ToolCall:
    """The call from its streamed input; input that is not a JSON object is kept raw."""
    if not raw.strip():  # a call without arguments may stream no JSON at all
        return ToolCall(call_id, name, dict(start_input))
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return ToolCall(call_id, name, value)
    return ToolCall(call_id, name, {MALFORMED_INPUT: raw})


@dataclass(slots=True)
class _ToolBlock:
    id: str
    name: str
    start_input: dict[str, object]
    pieces: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Accumulator:
    """The reply as its stream events arrive."""

    on_text: Callable[[str], None]
    parts: list[str] = field(default_factory=list)
    open_tools: dict[int, _ToolBlock] = field(default_factory=dict)
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    generated_tokens: int = 0
    stop_reason: str | None = None
    first_output_at: float | None = None

    def take(self, event: RawMessageStreamEvent) -> None:
        if event.type == "message_start":
            self.prompt_tokens = event.message.usage.input_tokens
        elif event.type == "content_block_start":
            block = event.content_block
            if block.type == "tool_use":
                self.open_tools[event.index] = _ToolBlock(block.id, block.name, block.input)
        elif event.type == "content_block_delta":
            if self.first_output_at is None:
                self.first_output_at = time.perf_counter()
            if event.delta.type == "text_delta":
                self.parts.append(event.delta.text)
                self.on_text(event.delta.text)
            elif event.delta.type == "input_json_delta" and event.index in self.open_tools:
                self.open_tools[event.index].pieces.append(event.delta.partial_json)
        elif event.type == "content_block_stop" and event.index in self.open_tools:
            tool = self.open_tools.pop(event.index)
            raw = "".join(tool.pieces)
            self.tool_calls.append(_tool_call(tool.id, tool.name, tool.start_input, raw))
        elif event.type == "message_delta":
            # usage on message_delta is cumulative
            self.generated_tokens = event.usage.output_tokens
            self.prompt_tokens = event.usage.input_tokens or self.prompt_tokens
            self.stop_reason = event.delta.stop_reason


@dataclass(frozen=True, slots=True)
class ClaudeReply:
    text: str
    stats: GenerationStats
    interrupted: bool
    # in block order; only blocks that ended, so an interrupted reply keeps its finished calls
    tool_calls: tuple[ToolCall, ...] = ()


class ClaudeBackend:
    """One Claude model behind the Messages API, with the local backend's `generate` shape."""

    def __init__(
        self,
        api_key: str,
        *,
        model: str,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 0,
    ) -> None:
        if not api_key:
            raise ClaudeError(f"no Claude API key: {KEY_HELP}")
        self.model = model
        self.timeout = timeout
        self._api_key = api_key  # kept only to scrub it from text the server sends back
        register_secret(api_key)  # and from tool output, stored examples and saved files
        # base_url None lets the SDK read ANTHROPIC_BASE_URL; an explicit api_key stops it
        # from looking for credential profiles on disk.
        self._client = anthropic.Anthropic(
            api_key=api_key,
            base_url=base_url or None,
            timeout=timeout,
            max_retries=max_retries,
        )

    @property
    def name(self) -> str:
        return f"Claude ({self.model})"

    @property
    def base_url(self) -> str:
        return str(self._client.base_url).rstrip("/")

    def __repr__(self) -> str:
        return f"ClaudeBackend(model={self.model!r}, base_url={self.base_url!r})"

    def generate(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        *,
        tools: Sequence[ToolDefinition] = (),
        on_text: Callable[[str], None] = lambda _: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ClaudeReply:
        """Streams one reply; only `options.max_tokens` is sent, and `tools` when there are any.

        anthropic 2.x has no `temperature`/`top_p` parameters, and current Claude models reject
        them with a 400 (BerriAI/litellm#26444), so the local sampling settings stay local.
        A tool call whose input is not a JSON object comes back as `{MALFORMED_INPUT: raw}`.
        """
        system = "\n\n".join(m.content for m in messages if m.role is Role.SYSTEM)
        reply = _Accumulator(on_text)
        interrupted = False
        start = time.perf_counter()
        try:
            # the raw event stream: the SDK's `messages.stream` helper raises a bare ValueError
            # on tool input it cannot parse, which would end the whole reply
            with self._client.messages.create(
                model=self.model,
                max_tokens=options.max_tokens,
                messages=_chat_messages(messages),
                system=system or anthropic.omit,
                tools=[_tool_param(tool) for tool in tools] or anthropic.omit,
                stream=True,
            ) as stream:
                for event in stream:
                    reply.take(event)
                    if should_stop():
                        interrupted = True
                        break  # leaving the `with` closes the response
        except (anthropic.AnthropicError, httpx2.HTTPError) as e:
            # `from None`: the SDK's exception text may quote the server's reply verbatim
            raise self._scrubbed(self._error(e)) from None
        end = time.perf_counter()
        first = reply.first_output_at if reply.first_output_at is not None else end
        stop_reason = reply.stop_reason
        finish = (
            "interrupted" if interrupted else FINISH_REASONS.get(stop_reason or "", stop_reason)
        )
        stats = GenerationStats(
            model=self.name,
            prompt_tokens=reply.prompt_tokens,
            reused_tokens=0,
            generated_tokens=reply.generated_tokens,
            prompt_seconds=first - start,
            generation_seconds=end - first,
            finish_reason=finish or "stop",
        )
        return ClaudeReply("".join(reply.parts), stats, interrupted, tuple(reply.tool_calls))

    def _scrubbed(self, error: ClaudeError) -> ClaudeError:
        """`error` without the key, or any 8 characters in a row of it, or another secret."""
        message = scrub_fragments(scrub(str(error)), self._api_key)
        return ClaudeError(" ".join(message.split()), retryable=error.retryable)

    def _error(self, error: Exception) -> ClaudeError:
        """A short user-facing error for an SDK or transport failure; no SDK text but the type."""
        # httpx2 errors come raw from a stream that breaks after its headers arrived
        if isinstance(error, anthropic.APITimeoutError | httpx2.TimeoutException):
            return ClaudeError(
                f"Claude did not answer within {self.timeout:g} s (timeout): try again",
                retryable=True,
            )
        if isinstance(error, anthropic.APIConnectionError | httpx2.TransportError):
            return ClaudeError(f"cannot reach Claude at {self.base_url}: offline?", retryable=True)
        if isinstance(error, anthropic.APIStatusError):
            return self._status_error(error)
        return ClaudeError(f"the Claude request failed ({type(error).__name__})")

    def _status_error(self, error: anthropic.APIStatusError) -> ClaudeError:
        kind = error.type or "error"
        mid_stream = error.status_code < 400  # an `event: error` after a 200 response
        status = ERROR_TYPE_STATUS.get(kind, 500) if mid_stream else error.status_code
        retryable = status in (408, 409, 429) or status >= 500
        if status == 401:
            message = f"Claude rejected the API key (401): {KEY_HELP}"
        elif status == 403:
            message = f"Claude refused access (403): this API key may not use {self.model!r}"
        elif status == 404:
            message = f"Claude has no model {self.model!r} (404): check claude_model in config.toml"
        elif status == 429:
            message = "Claude's rate limit was reached (429): wait a moment and try again"
        elif status == 529:
            message = "Claude is overloaded (529): try again in a moment"
        elif status >= 500:
            message = f"Claude had a server error ({status} {kind}): try again"
        elif status == 400:
            # the server's reason ("prompt is too long") is what the user can act on
            detail = scrub_fragments(error.api_message or "", self._api_key)[:MAX_DETAIL]
            message = f"Claude refused the request (400 {kind}): {detail}".rstrip(": ")
        else:
            message = f"Claude refused the request ({status} {kind})"
        if mid_stream:
            message += "; the reply broke off midway"
        return ClaudeError(message, retryable=retryable)
