"""The local model on MLX: chat-template prompts, streamed generation, and KV-cache reuse.

Only the model-worker thread creates and calls a `MlxBackend`; this module is imported there,
so `import shammah_kernel` stays free of MLX.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten
from mlx_lm import load, stream_generate
from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache
from mlx_lm.sample_utils import make_logits_processors, make_sampler

from .errors import ModelError
from .events import GenerationOptions, GenerationStats, Message

PREFILL_STEP = 256


@dataclass(frozen=True, slots=True)
class Generation:
    text: str
    tokens: tuple[int, ...]
    stats: GenerationStats
    interrupted: bool


class _Stopped(Exception):
    """Raised from the prefill progress callback to abandon a long prompt on interrupt."""


class StreamingText:
    """Decodes the whole token list each step and yields only the new suffix.

    mlx-lm's streaming detokenizer drops the first token's leading space, which breaks indented
    code; decoding the whole sequence is exact. Text ending in an incomplete UTF-8 character is
    held back until the character is complete.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self.tokens: list[int] = []
        self.text = ""

    def add(self, token: int) -> str:
        self.tokens.append(token)
        text = self._decode(self.tokens)
        if text.endswith("\ufffd"):
            return ""
        delta = text[len(self.text) :] if text.startswith(self.text) else ""
        self.text = text
        return delta

    def finish(self) -> str:
        text = self._decode(self.tokens)
        delta = text[len(self.text) :] if text.startswith(self.text) else ""
        self.text = text
        return delta


def set_device(device: str) -> str:
    """Apply the `[model] device` setting; returns the device MLX will use."""
    if device == "cpu" or (device == "gpu" and not mx.is_available(mx.gpu)):
        if device == "gpu":
            raise ModelError("[model] device = 'gpu', but MLX has no GPU here; use 'auto' or 'cpu'")
        mx.set_default_device(mx.cpu)
    elif device == "gpu":
        mx.set_default_device(mx.gpu)
    return "gpu" if mx.default_device() == mx.gpu else "cpu"


class MlxBackend:
    """One loaded mlx-lm model with a conversation KV cache that later turns reuse."""

    def __init__(self, model_dir: Path, name: str) -> None:
        self.name = name
        self.model_dir = model_dir
        self.device = "gpu" if mx.default_device() == mx.gpu else "cpu"
        try:
            self.model, self.tokenizer = load(str(model_dir))[:2]
        except Exception as e:  # mlx-lm raises bare ValueError/FileNotFoundError/KeyError
            raise ModelError(f"Could not load the model at {model_dir}: {e}") from e
        parameters: list[tuple[str, mx.array]] = tree_flatten(self.model.parameters())  # type: ignore[assignment]
        self.parameter_count = sum(v.size for _, v in parameters)
        if self.device == "cpu" and _half_precision(parameters):
            # MLX's CPU matmuls are fast only in float32 (BLAS); bf16 weights are widened.
            self.model.set_dtype(mx.float32)
        self.adapter = ""  # the LoRA adapter on the model; "" = the base model
        self._reset_cache()

    def use_adapter(self, adapter_dir: Path | None, name: str = "") -> None:
        """Put the adapter in ``adapter_dir`` on the loaded model (None: back to the base).

        No reload: only the LoRA layers change. A damaged adapter, or one for another base model,
        raises ModelError and leaves the model answering as before.
        """
        from .adapters import apply_adapter, remove_adapter

        if adapter_dir is None:
            remove_adapter(self.model)
        else:
            apply_adapter(self.model, adapter_dir, base_model=self.name)
        self.model.eval()
        self.adapter = name if adapter_dir is not None else ""
        self._reset_cache()  # the cached keys and values came from the old weights

    def _reset_cache(self) -> None:
        self._cache = make_prompt_cache(self.model)
        self._cached_tokens: list[int] = []

    @property
    def supports_tools(self) -> bool:
        """Whether the chat template renders tool definitions (Qwen2.5 does; SmolLM2 does not)."""
        template = getattr(self.tokenizer, "chat_template", None) or ""
        return isinstance(template, str) and "tools" in template

    def prompt_tokens(
        self, messages: Sequence[Message], tools: Sequence[dict[str, object]] = ()
    ) -> list[int]:
        chat = [_chat_message(m) for m in messages]
        tokens = self.tokenizer.apply_chat_template(
            chat, tools=list(tools) or None, add_generation_prompt=True, tokenize=True
        )
        # transformers 5 may hand back a BatchEncoding-like mapping instead of a list
        if isinstance(tokens, dict) or hasattr(tokens, "input_ids"):
            tokens = tokens["input_ids"]
        return list(tokens)

    def count_tokens(
        self, messages: Sequence[Message], tools: Sequence[dict[str, object]] = ()
    ) -> int:
        return len(self.prompt_tokens(messages, tools))

    def _reuse_cache(self, tokens: list[int]) -> int:
        """Trim the cache to the longest prefix it shares with `tokens`; returns that length."""
        shared = 0
        for a, b in zip(self._cached_tokens, tokens, strict=False):
            if a != b:
                break
            shared += 1
        shared = min(shared, len(tokens) - 1)  # at least one token must be fed to get logits
        held = self._cache[0].offset if self._cache else 0
        if held > shared:
            if not can_trim_prompt_cache(self._cache):
                self._reset_cache()
                return 0
            trim_prompt_cache(self._cache, held - shared)
        self._cached_tokens = tokens[:shared]
        return shared

    def generate(
        self,
        messages: Sequence[Message],
        options: GenerationOptions,
        *,
        tools: Sequence[dict[str, object]] = (),
        on_text: Callable[[str], None] = lambda _: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> Generation:
        tokens = self.prompt_tokens(messages, tools)
        reused = self._reuse_cache(tokens)
        text = StreamingText(self.tokenizer.decode)
        sampler = make_sampler(options.temperature, options.top_p)
        processors = (
            make_logits_processors(repetition_penalty=options.repetition_penalty)
            if options.repetition_penalty != 1.0
            else None
        )
        start = time.perf_counter()
        first_token_at = start
        finish_reason = "stop"
        interrupted = False

        def check_prefill(_done: int, _total: int) -> None:
            if should_stop():
                raise _Stopped

        try:
            for response in stream_generate(
                self.model,
                self.tokenizer,
                mx.array(tokens[reused:]),
                max_tokens=options.max_tokens,
                sampler=sampler,
                logits_processors=processors,
                prompt_cache=self._cache,
                # small prefill chunks so an interrupt is seen within a fraction of a second
                prefill_step_size=PREFILL_STEP,
                prompt_progress_callback=check_prefill,
            ):
                if not text.tokens:
                    first_token_at = time.perf_counter()
                if response.finish_reason == "stop":
                    break  # the eos token: not part of the reply
                on_text(text.add(response.token))
                if response.finish_reason == "length":
                    finish_reason = "length"
                if should_stop():
                    interrupted, finish_reason = True, "interrupted"
                    break
        except _Stopped:
            self._reset_cache()
            interrupted, finish_reason = True, "interrupted"
        except Exception as e:
            self._reset_cache()  # a half-run step leaves the cache in an unknown state
            raise ModelError(f"The model failed while generating: {e}") from e
        on_text(text.finish())
        end = time.perf_counter()
        held = self._cache[0].offset if self._cache else 0
        self._cached_tokens = (tokens + text.tokens)[:held] if held else []
        if held > len(self._cached_tokens):
            trim_prompt_cache(self._cache, held - len(self._cached_tokens))
        stats = GenerationStats(
            model=self.name,
            prompt_tokens=len(tokens),
            reused_tokens=reused,
            generated_tokens=len(text.tokens),
            prompt_seconds=first_token_at - start,
            generation_seconds=end - first_token_at,
            finish_reason=finish_reason,
            adapter=self.adapter,
        )
        return Generation(text.text, tuple(text.tokens), stats, interrupted)

    def memory_bytes(self) -> tuple[int, int]:
        """MLX's active and peak memory, in bytes."""
        return mx.get_active_memory(), mx.get_peak_memory()


def _half_precision(parameters: list[tuple[str, mx.array]]) -> bool:
    return any(v.dtype in (mx.bfloat16, mx.float16) for _, v in parameters)


def _chat_message(message: Message) -> dict[str, object]:
    """A message in the chat-template shape (OpenAI-style tool calls, as Qwen2.5 expects)."""
    chat: dict[str, object] = {"role": message.role.value, "content": message.content}
    if message.tool_calls:
        chat["tool_calls"] = [
            {"type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    return chat
