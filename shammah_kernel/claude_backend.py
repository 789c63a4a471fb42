"""Claude through the Anthropic Messages API: streamed replies while the local model is not ready.

Like `mlx_backend`, this module is imported only where a backend is built, so
`import shammah_kernel` stays free of `anthropic`. The API key never appears in an error,
a repr or a log line of ours.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import anthropic
import httpx2
from anthropic.types import AssistantMessageParam, MessageParam, UserMessageParam

from .errors import ClaudeError
from .events import GenerationOptions, GenerationStats, Message, Role

KEY_HELP = "check ANTHROPIC_API_KEY or api_key in config.toml"
# Claude's stop reasons in the local backend's words; others pass through unchanged.
FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
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


def resolve_api_key(config_key: str) -> str:
    """The key Claude requests use: ANTHROPIC_API_KEY wins over the config's `api_key`."""
    return os.environ.get("ANTHROPIC_API_KEY", "").strip() or config_key.strip()


def _chat_message(message: Message) -> MessageParam:
    if message.role is Role.USER:
        return UserMessageParam(role="user", content=message.content)
    return AssistantMessageParam(role="assistant", content=message.content)


@dataclass(frozen=True, slots=True)
class ClaudeReply:
    text: str
    stats: GenerationStats
    interrupted: bool


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
        on_text: Callable[[str], None] = lambda _: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ClaudeReply:
        """Streams one reply; only `options.max_tokens` is sent.

        anthropic 2.x has no `temperature`/`top_p` parameters, and current Claude models reject
        them with a 400 (BerriAI/litellm#26444), so the local sampling settings stay local.
        """
        system = "\n\n".join(m.content for m in messages if m.role is Role.SYSTEM)
        chat = [_chat_message(m) for m in messages if m.role is not Role.SYSTEM]
        parts: list[str] = []
        prompt_tokens = generated_tokens = 0
        stop_reason: str | None = None
        interrupted = False
        start = time.perf_counter()
        first_text_at: float | None = None
        try:
            with self._client.messages.stream(
                model=self.model,
                max_tokens=options.max_tokens,
                messages=chat,
                system=system or anthropic.omit,
            ) as stream:
                for event in stream:
                    if event.type == "message_start":
                        prompt_tokens = event.message.usage.input_tokens
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        if first_text_at is None:
                            first_text_at = time.perf_counter()
                        parts.append(event.delta.text)
                        on_text(event.delta.text)
                    elif event.type == "message_delta":
                        # usage on message_delta is cumulative
                        generated_tokens = event.usage.output_tokens
                        prompt_tokens = event.usage.input_tokens or prompt_tokens
                        stop_reason = event.delta.stop_reason
                    if should_stop():
                        interrupted = True
                        break  # leaving the `with` closes the response
        except (anthropic.AnthropicError, httpx2.HTTPError) as e:
            # `from None`: the SDK's exception text may quote the server's reply verbatim
            raise self._error(e) from None
        end = time.perf_counter()
        first = first_text_at if first_text_at is not None else end
        finish = (
            "interrupted" if interrupted else FINISH_REASONS.get(stop_reason or "", stop_reason)
        )
        stats = GenerationStats(
            model=self.name,
            prompt_tokens=prompt_tokens,
            reused_tokens=0,
            generated_tokens=generated_tokens,
            prompt_seconds=first - start,
            generation_seconds=end - first,
            finish_reason=finish or "stop",
        )
        return ClaudeReply("".join(parts), stats, interrupted)

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
            detail = (error.api_message or "").replace(self._api_key, "***")[:MAX_DETAIL]
            message = f"Claude refused the request (400 {kind}): {detail}".rstrip(": ")
        else:
            message = f"Claude refused the request ({status} {kind})"
        if mid_stream:
            message += "; the reply broke off midway"
        return ClaudeError(message, retryable=retryable)
