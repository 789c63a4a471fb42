"""The MLX backend on a real (tiny) model: exact streaming, KV-cache reuse, stopping."""

from __future__ import annotations

from pathlib import Path

import pytest

from shammah_kernel.events import GenerationOptions, Message, Role
from shammah_kernel.mlx_backend import MlxBackend, StreamingText

GREEDY = GenerationOptions(max_tokens=12, temperature=0.0)
SYSTEM = Message(Role.SYSTEM, "You are a test assistant.")


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> MlxBackend:
    return MlxBackend(tiny_model, "tiny")


def conversation(*pairs: str) -> list[Message]:
    roles = [Role.USER, Role.ASSISTANT]
    return [SYSTEM, *(Message(roles[i % 2], text) for i, text in enumerate(pairs))]


def test_streamed_pieces_concatenate_to_the_exact_decode(backend: MlxBackend) -> None:
    pieces: list[str] = []
    result = backend.generate(conversation("def add(a, b):"), GREEDY, on_text=pieces.append)
    assert "".join(pieces) == result.text == backend.tokenizer.decode(list(result.tokens))
    assert result.stats.generated_tokens == len(result.tokens) == GREEDY.max_tokens


def test_incomplete_utf8_is_held_back_until_complete(backend: MlxBackend) -> None:
    tokens = backend.tokenizer.encode("naïve 🙂 café", add_special_tokens=False)
    text = StreamingText(backend.tokenizer.decode)
    pieces = [text.add(t) for t in tokens] + [text.finish()]
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == "naïve 🙂 café"


def test_second_turn_reuses_the_cache_and_matches_a_full_prefill(
    backend: MlxBackend, tiny_model: Path
) -> None:
    first = backend.generate(conversation("first question"), GREEDY)
    turn2 = conversation("first question", first.text, "second question")
    cached = backend.generate(turn2, GREEDY)
    assert cached.stats.reused_tokens >= first.stats.prompt_tokens
    fresh = MlxBackend(tiny_model, "tiny").generate(turn2, GREEDY)
    assert fresh.stats.reused_tokens == 0
    assert cached.text == fresh.text


def test_changed_history_falls_back_to_the_shared_prefix(backend: MlxBackend) -> None:
    backend.generate(conversation("one question"), GREEDY)
    other = backend.generate(conversation("a different question"), GREEDY)
    system_only = backend.count_tokens([SYSTEM])
    assert 0 < other.stats.reused_tokens < system_only + 4


def test_rerunning_the_same_prompt_still_feeds_one_token(backend: MlxBackend) -> None:
    once = backend.generate(conversation("same"), GREEDY)
    again = backend.generate(conversation("same"), GREEDY)
    assert again.stats.reused_tokens == again.stats.prompt_tokens - 1
    assert again.text == once.text


def test_should_stop_interrupts_after_the_current_token(backend: MlxBackend) -> None:
    pieces: list[str] = []
    result = backend.generate(
        conversation("talk"),
        GenerationOptions(max_tokens=500),
        on_text=pieces.append,
        should_stop=lambda: len(pieces) >= 3,
    )
    assert result.interrupted and result.stats.finish_reason == "interrupted"
    assert len(result.tokens) == 3
    after = backend.generate(conversation("talk"), GREEDY)  # the cache is consistent after a stop
    assert not after.interrupted


def test_a_stop_during_prefill_abandons_the_prompt(backend: MlxBackend, tiny_model: Path) -> None:
    result = backend.generate(conversation("long " * 600), GREEDY, should_stop=lambda: True)
    assert result.interrupted and result.tokens == ()
    after = backend.generate(conversation("talk"), GREEDY)
    assert after.text == MlxBackend(tiny_model, "tiny").generate(conversation("talk"), GREEDY).text
