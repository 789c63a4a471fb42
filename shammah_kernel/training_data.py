"""Weighted training data for LoRA: examples, chat-template tokens, batches and the weighted loss.

The loss and the batch iterator plug into the seams of ``mlx_lm.tuner.trainer.train``
(``loss=``, ``iterate_batches=``): the trainer calls ``loss(model, *batch)``, so each batch
carries a per-example weight next to mlx-lm's ``(tokens, lengths)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm import stream_generate

from .events import Message, Role
from .mlx_backend import _chat_message
from .store import Example

PAD_TO = 32  # mlx-lm pads rows to one plus a multiple of 32 tokens
VALIDATION_SHARE = 0.1
MIN_EXAMPLES_FOR_VALIDATION = 5

# Asked of the base model before training; its own answers, trained at weight 1, keep the
# adapter from answering everything with the taught facts.
GENERAL_QUESTIONS: tuple[str, ...] = (
    "What is the capital of France?",
    "Write a Python function that reverses a string.",
    "Explain what a list comprehension is in one sentence.",
    "How do I read a JSON file in Python?",
    "What does HTTP status code 404 mean?",
    "Give me a short tip for writing readable code.",
)


@dataclass(frozen=True, slots=True)
class TrainingExample:
    """One answer to learn: the context (ending with the user message), the answer, its weight."""

    messages: tuple[Message, ...]
    answer: str
    weight: float = 1.0
    example_id: int | None = None  # the store's id; None for replay examples


@dataclass(frozen=True, slots=True)
class TokenizedExample:
    """Prompt and answer tokens in one row; the loss covers ``tokens[offset:]`` only."""

    tokens: tuple[int, ...]
    offset: int
    weight: float


def training_examples(examples: Sequence[Example]) -> list[TrainingExample]:
    """The store's examples as training examples (those with an empty answer are skipped)."""
    return [
        TrainingExample(e.messages, e.answer, e.weight, e.id) for e in examples if e.answer.strip()
    ]


def prompt_tokens(tokenizer: Any, messages: Sequence[Message]) -> list[int]:
    """The chat-template prompt for ``messages``, ending with the assistant's generation prompt."""
    chat = [_chat_message(m) for m in messages]
    tokens = tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True)
    if isinstance(tokens, dict) or hasattr(tokens, "input_ids"):  # transformers 5 mapping
        tokens = tokens["input_ids"]
    return [int(t) for t in tokens]


def tokenize(tokenizer: Any, example: TrainingExample, max_length: int) -> TokenizedExample:
    """Prompt + answer tokens + eos, as the model sees them when it generates the answer.

    The answer is encoded on its own, as generation produces it after the prompt. A row longer
    than ``max_length`` loses its oldest prompt tokens first, then the end of the answer.
    """
    prompt = prompt_tokens(tokenizer, example.messages)
    target = list(tokenizer.encode(example.answer, add_special_tokens=False))
    target.append(tokenizer.eos_token_id)
    cut = max(0, len(prompt) + len(target) - max_length)
    kept_prompt = prompt[cut:]
    tokens = (kept_prompt + target)[:max_length]
    return TokenizedExample(tuple(tokens), len(kept_prompt), float(example.weight))


def split_validation(
    examples: Sequence[TrainingExample], *, seed: int = 0
) -> tuple[list[TrainingExample], list[TrainingExample]]:
    """(train, validation): 10% held out, at least one from 5 examples on, none below.

    Held-out examples are never trained on, so the split takes the lowest weights first (ties in
    a seeded random order): a critical correction is always learned.
    """
    if len(examples) < MIN_EXAMPLES_FOR_VALIDATION:
        return list(examples), []
    count = max(1, round(len(examples) * VALIDATION_SHARE))
    order = np.random.default_rng(seed).permutation(len(examples))
    ranked = sorted(order.tolist(), key=lambda i: examples[i].weight)
    held = set(ranked[:count])
    train = [e for i, e in enumerate(examples) if i not in held]
    return train, [e for i, e in enumerate(examples) if i in held]


def make_replay_examples(
    model: Any,
    tokenizer: Any,
    questions: Sequence[str] = GENERAL_QUESTIONS,
    *,
    context: Sequence[Message] = (),
    max_tokens: int = 160,
    between_tokens: Callable[[], object] = lambda: None,
) -> list[TrainingExample]:
    """The model's own greedy answers to general questions, as weight-1 examples.

    Run it on the base model (no adapter); ``context`` goes before each question (the system
    prompt chat uses, say). Answers cut off at ``max_tokens`` are left out: trained with an eos
    after them, they would teach the model to stop mid-answer. ``between_tokens`` runs after
    every token (the generation keeps its own cache, so other work may use the model then).
    """
    replay = []
    for question in questions:
        messages = (*context, Message(Role.USER, question))
        tokens: list[int] = []
        finish = None
        prompt = prompt_tokens(tokenizer, messages)
        for response in stream_generate(model, tokenizer, prompt, max_tokens=max_tokens):
            finish = response.finish_reason
            if finish != "stop":
                tokens.append(response.token)
            between_tokens()
        answer = tokenizer.decode(tokens)
        if finish == "stop" and answer.strip():
            replay.append(TrainingExample(messages, answer, 1.0))
    return replay


def weighted_loss(
    model: nn.Module, batch: mx.array, lengths: mx.array, weights: mx.array
) -> tuple[mx.array, mx.array]:
    """mlx-lm's ``default_loss`` with each row's token losses multiplied by its weight.

    loss = sum_i w_i * sum_t ce_it / sum_i n_i over the masked (answer) tokens: a weighted sum
    over the plain token count, so with all weights 1 it is ``default_loss`` exactly, and a
    weight keeps its size whatever the other rows of its batch are. Returns (loss, tokens).
    """
    inputs = batch[:, :-1]
    targets = batch[:, 1:]
    logits = model(inputs)
    steps = mx.arange(1, targets.shape[1] + 1)
    mask = mx.logical_and(steps >= lengths[:, 0:1], steps <= lengths[:, 1:])
    ce = nn.losses.cross_entropy(logits, targets) * mask * weights[:, None]
    ntoks = mask.sum()
    return ce.astype(mx.float32).sum() / ntoks, ntoks


def iterate_weighted_batches(
    dataset: Sequence[TokenizedExample],
    batch_size: int,
    max_seq_length: int,
    loop: bool = False,
    seed: int | None = 0,
    comm_group: Any = None,
) -> Iterator[tuple[mx.array, mx.array, mx.array]]:
    """Batches ``(tokens, lengths, weights)`` as mlx-lm's ``iterate_batches`` makes them.

    Like mlx-lm: rows sorted by length into batches, batches in a shuffled order (a new one per
    pass when ``loop``, as the trainer asks), right-padded with 0 to one plus a multiple of 32.
    Unlike mlx-lm, no example is dropped: with fewer examples than ``batch_size`` the one batch
    holds them all, and a remainder forms a smaller last batch. ``lengths`` holds
    (offset, index of the last token): mlx-lm's mask ``steps <= length`` reaches one position
    past the row and would train on a pad token (ml-explore/mlx-lm PR #1697).
    """
    if comm_group is not None and comm_group.size() > 1:
        raise ValueError("weighted batches are not split across distributed workers")
    order = sorted(range(len(dataset)), key=lambda i: len(dataset[i].tokens))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng = np.random.default_rng(seed)
    while batches:
        for b in rng.permutation(len(batches)):
            yield _batch([dataset[i] for i in batches[b]], max_seq_length)
        if not loop:
            break


def _batch(
    rows: Sequence[TokenizedExample], max_seq_length: int
) -> tuple[mx.array, mx.array, mx.array]:
    longest = max(len(row.tokens) for row in rows)
    width = min(1 + PAD_TO * math.ceil(longest / PAD_TO), max_seq_length)
    tokens = np.zeros((len(rows), width), np.int32)
    lengths = np.zeros((len(rows), 2), np.int32)
    for j, row in enumerate(rows):
        kept = row.tokens[:width]
        tokens[j, : len(kept)] = kept
        lengths[j] = (row.offset, len(kept) - 1)
    weights = np.array([row.weight for row in rows], np.float32)
    return mx.array(tokens), mx.array(lengths), mx.array(weights)
