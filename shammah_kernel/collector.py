"""Turns become weighted examples: every finished turn at 1x, and the user's ratings.

The collector remembers, per turn of this session, the context the model saw and the examples
stored for it, so a rating replaces the turn's automatic copy (or an earlier rating) instead of
adding a second one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import LoraSettings
from .errors import CommandError
from .events import Message, Turn
from .feedback import Feedback, collectable, training_pair, weight_of

if TYPE_CHECKING:
    from .store import ExampleStore


@dataclass(slots=True)
class _Record:
    turn: Turn  # held so that id(turn) stays this turn's
    context: list[Message]
    example: int | None = None  # the automatic copy, or the latest rating's example


class ExampleCollector:
    def __init__(self, store: Callable[[], ExampleStore], settings: LoraSettings) -> None:
        self.store = store
        self.settings = settings
        self._records: dict[int, _Record] = {}

    def collect(self, turn: Turn, context: list[Message]) -> int | None:
        """Remember the turn; store it as a 1x example when `[lora] collect_all_turns` is on."""
        record = _Record(turn, context)
        self._records[id(turn)] = record
        if self.settings.collect_all_turns and collectable(turn):
            record.example = self.store().add(
                context, turn.assistant, source="auto", weight=self.settings.normal_weight
            )
        return record.example

    def context_of(self, turn: Turn) -> list[Message]:
        record = self._records.get(id(turn))
        if record is None:  # a turn restored from a file: its context is not known here
            raise CommandError(
                "This answer was restored from a file: rate an answer given in this session."
            )
        return record.context

    def rate(self, turn: Turn, feedback: Feedback) -> tuple[int, float]:
        """Store the rated answer as a weighted example; returns (example id, weight)."""
        if not feedback.better_answer and not collectable(turn):
            raise CommandError(
                "That answer was interrupted or used tools: give a better answer to learn from "
                "(on the lines after the command, or in the widget)."
            )
        context = self.context_of(turn)
        record = self._records[id(turn)]
        answer, rejected = training_pair(turn, feedback)
        weight = weight_of(feedback.rating, self.settings)
        store = self.store()
        example = store.add(
            context,
            answer,
            source=f"feedback:{feedback.rating.value}",
            weight=weight,
            note=feedback.note,
            rejected=rejected,
        )
        if record.example is not None:  # committed after the new one: a kill loses neither
            store.delete(record.example)
        record.example = example
        return example, weight

    def buffer_text(self) -> str:
        count = self.store().untrained_count()
        text = f"Training buffer: {count} example(s) not yet trained on"
        if self.settings.auto_train:
            threshold = self.settings.auto_train_threshold
            if count < threshold:
                return f"{text}; training starts by itself at {threshold}."
            return f"{text}; training starts by itself."
        return f"{text}; /train trains on them."
