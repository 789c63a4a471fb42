"""Claude as the session sees it: the key resolved at once, the SDK client made on first use.

Importing `anthropic` takes ~2 s; the kernel must answer `kernel_info` at once even with a key set.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .claude_backend import ClaudeBackend, ClaudeReply, ToolDefinition
    from .events import GenerationOptions, Message


def resolve_api_key(config_key: str) -> str:
    """The key Claude requests use: ANTHROPIC_API_KEY wins over the config's `api_key`."""
    return os.environ.get("ANTHROPIC_API_KEY", "").strip() or config_key.strip()


class ClaudeLink:
    def __init__(self, api_key: str, *, model: str) -> None:
        self.model = model
        self._api_key = api_key
        self._backend: ClaudeBackend | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return f"Claude ({self.model})"

    def __repr__(self) -> str:
        return f"ClaudeLink(model={self.model!r})"

    def backend(self) -> ClaudeBackend:
        with self._lock:
            if self._backend is None:
                from .claude_backend import ClaudeBackend

                self._backend = ClaudeBackend(self._api_key, model=self.model)
            return self._backend

    def generate(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        *,
        tools: Sequence[ToolDefinition] = (),
        on_text: Callable[[str], None] = lambda _: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> ClaudeReply:
        return self.backend().generate(
            messages, options, tools=tools, on_text=on_text, should_stop=should_stop
        )
