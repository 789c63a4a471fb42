"""Oracle tests: with greedy decoding, a Shammah cell says exactly what mlx-lm says directly.

The reference is `mlx_lm.generate` on the same model folder with the same chat-template prompt,
each turn prefilled from scratch. Shammah streams through its kernel and, from the second turn
on, reuses the KV cache of the conversation so far; both must give the same text.
"""

from __future__ import annotations

import os

# Set before mlx_lm is imported: mx.compile on Linux CPU shells out to g++ (~28 s cold).
os.environ.setdefault("MLX_DISABLE_COMPILE", "1")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlx_lm
import pytest
from conftest import write_config
from kernel_client import KernelSession

from shammah_kernel.events import GenerationOptions, Message, Role
from shammah_kernel.mlx_backend import MlxBackend
from shammah_kernel.model_choice import EMBEDDED_MODEL_NAME
from shammah_kernel.session import DEFAULT_SYSTEM_PROMPT

MAX_TOKENS = 48
QUESTION = "Write a Python function that returns the square of a number."
FOLLOW_UP = "Now change it to return the cube instead."

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def reference(embedded_model: Path) -> tuple[Any, Any]:
    """The embedded model as mlx-lm loads it, for the direct generations."""
    model, tokenizer = mlx_lm.load(str(embedded_model))[:2]
    return model, tokenizer


@pytest.fixture
def greedy_kernel(embedded_home: Path) -> Iterator[KernelSession]:
    config = f'[model]\nid = "embedded"\ntemperature = 0.0\nmax_tokens = {MAX_TOKENS}\n'
    write_config(embedded_home, config)
    session = KernelSession.start()
    try:
        yield session
    finally:
        session.stop()


def _ask(kernel: KernelSession, text: str) -> str:
    run = kernel.execute(text, timeout=600)
    assert run.status == "ok", run.reply
    assert EMBEDDED_MODEL_NAME in run.displayed  # the footer names the model that answered
    return run.reply_text


def _chat(*turns: str) -> list[dict[str, str]]:
    """System prompt, then the turns alternating user / assistant."""
    roles = ("user", "assistant")
    return [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}] + [
        {"role": roles[i % 2], "content": text} for i, text in enumerate(turns)
    ]


def _prompt(tokenizer: Any, chat: list[dict[str, str]]) -> list[int]:
    tokens = tokenizer.apply_chat_template(chat, add_generation_prompt=True)
    if isinstance(tokens, dict) or hasattr(tokens, "input_ids"):  # transformers 5 may wrap it
        tokens = tokens["input_ids"]
    return list(tokens)


def _assert_mlx_lm_says(ours: str, reference: tuple[Any, Any], chat: list[dict[str, str]]) -> None:
    model, tokenizer = reference
    prompt = _prompt(tokenizer, chat)
    theirs = mlx_lm.generate(model, tokenizer, prompt, max_tokens=MAX_TOKENS)
    tokens = [
        response.token
        for response in mlx_lm.stream_generate(model, tokenizer, prompt, max_tokens=MAX_TOKENS)
        if response.finish_reason != "stop"  # the eos token ends the reply, it is not part of it
    ]
    assert ours, "the cell shows no reply"
    # Decoding the generated tokens at once is exact; Shammah must give exactly that text.
    assert ours == tokenizer.decode(tokens)
    # mlx-lm's streaming detokenizer drops the first token's leading space; Shammah keeps it.
    assert ours == theirs or (ours.startswith(" ") and ours[1:] == theirs), (ours, theirs)


def test_first_turn_matches_mlx_lm_generate(
    greedy_kernel: KernelSession, reference: tuple[Any, Any]
) -> None:
    ours = _ask(greedy_kernel, QUESTION)
    _assert_mlx_lm_says(ours, reference, _chat(QUESTION))


def test_second_turn_on_the_reused_cache_matches_a_full_prefill(
    greedy_kernel: KernelSession, reference: tuple[Any, Any], embedded_model: Path
) -> None:
    first = _ask(greedy_kernel, QUESTION)
    second = _ask(greedy_kernel, FOLLOW_UP)
    # mlx-lm prefills the whole conversation, with Shammah's first reply as the assistant turn.
    _assert_mlx_lm_says(second, reference, _chat(QUESTION, first, FOLLOW_UP))

    # The kernel's backend, in this process, shows that the second turn did reuse the cache.
    backend = MlxBackend(embedded_model, embedded_model.name)
    options = GenerationOptions(max_tokens=MAX_TOKENS, temperature=0.0)
    system = Message(Role.SYSTEM, DEFAULT_SYSTEM_PROMPT)
    turn1 = backend.generate([system, Message(Role.USER, QUESTION)], options)
    turn2 = backend.generate(
        [
            system,
            Message(Role.USER, QUESTION),
            Message(Role.ASSISTANT, turn1.text),
            Message(Role.USER, FOLLOW_UP),
        ],
        options,
    )
    assert (turn1.text, turn2.text) == (first, second)
    assert turn2.stats.reused_tokens >= turn1.stats.prompt_tokens
