"""Feedback on answers: how a rating becomes a weighted training example.

critical (high) 10x: a strategy error, never do this; medium 3x: works, but prefer another
approach; good (normal) 1x: remember this pattern. Weights come from the [lora] config. In a
feedback command cell, the lines after the command line are the better answer to learn from.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .config import LoraSettings
from .errors import CommandError
from .events import Turn


class Rating(enum.StrEnum):
    CRITICAL = "critical"
    MEDIUM = "medium"
    GOOD = "good"


ALIASES = {"high": Rating.CRITICAL, "medium": Rating.MEDIUM, "normal": Rating.GOOD}


@dataclass(frozen=True, slots=True)
class Feedback:
    rating: Rating
    note: str
    better_answer: str  # "" keeps the answer as it is (only for good)


def weight_of(rating: Rating, lora: LoraSettings) -> float:
    return {
        Rating.CRITICAL: lora.high_weight,
        Rating.MEDIUM: lora.medium_weight,
        Rating.GOOD: lora.normal_weight,
    }[rating]


def parse_feedback(rating: Rating, args: list[str], body: str) -> Feedback:
    feedback = Feedback(rating, " ".join(args).strip(), body.strip())
    if rating is not Rating.GOOD and not feedback.better_answer:
        raise CommandError(
            f"/{rating.value} needs the better answer to learn from: write it on the lines "
            "after the command line (or use the feedback widget under the answer)."
        )
    return feedback


def training_pair(turn: Turn, feedback: Feedback) -> tuple[str, str | None]:
    """The answer to learn and the one it replaces (None when the answer is kept)."""
    if feedback.better_answer:
        return feedback.better_answer, turn.assistant
    return turn.assistant, None


def collectable(turn: Turn) -> bool:
    """Finished turns are collected; interrupted ones and tool-call plumbing are not targets."""
    return not turn.interrupted and not turn.steps and bool(turn.assistant.strip())
