"""The feedback card under an answer: the widget, wired to the assistant's examples."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .feedback import Rating, parse_feedback, weight_of
from .renderer import OutputSink

if TYPE_CHECKING:
    from .assistant import Assistant
    from .events import Turn


def show_feedback(sink: OutputSink, assistant: Assistant, turn: Turn) -> None:
    from .widgets.feedback import FeedbackWidget

    def save(rating: Rating, note: str, better: str) -> str:
        stored = assistant.rate(turn, parse_feedback(rating, [note], better))
        widget.set_buffer(assistant.collector.buffer_text())
        return stored

    def propose(note: str) -> str:
        return assistant.propose_better(turn, note)

    lora = assistant.config.lora
    widget = FeedbackWidget(
        weights={rating: weight_of(rating, lora) for rating in Rating},
        save=save,
        propose=propose,
        proposer=assistant.proposer,
        buffer=assistant.collector.buffer_text(),
    )
    bundle = widget._repr_mimebundle_()
    if bundle is not None:
        sink.display(bundle[0])
