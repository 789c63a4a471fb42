"""The renderer: a waiting line goes once the answer starts; `streaming = false` shows the answer
whole when it is done."""

from __future__ import annotations

from shammah_kernel.events import GenerationStats, Notice, TextDelta, TurnFinished
from shammah_kernel.renderer import ReplyRenderer

STATS = GenerationStats("m", 1, 0, 2, 0.1, 0.1, "stop")


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, dict[str, str]]] = []

    def display(self, data: dict[str, str], display_id: str | None = None) -> None:
        self.calls.append(("display", display_id, data))

    def update(self, data: dict[str, str], display_id: str) -> None:
        self.calls.append(("update", display_id, data))

    def stream(self, text: str) -> None:
        self.calls.append(("stream", None, {"text/plain": text}))

    def shown(self) -> dict[str | None, str]:
        """What each display shows now (anonymous displays under None, the last one)."""
        latest: dict[str | None, str] = {}
        for _, display_id, data in self.calls:
            latest[display_id] = data.get("text/plain", "")
        return latest


def test_a_waiting_line_is_replaced_once_the_answer_starts() -> None:
    sink = Sink()
    renderer = ReplyRenderer(sink, plain=False)
    renderer.handle(Notice("Waiting for SmolLM2: preparing the embedded model…", transient=True))
    (waiting,) = [d for kind, d, _ in sink.calls if kind == "display"]
    assert "Waiting" in sink.shown()[waiting]
    renderer.handle(TextDelta("Hello"))
    renderer.handle(TurnFinished("Hello", STATS))
    assert sink.shown()[waiting] == ""
    assert "Hello" in sink.shown().values()


def test_a_lasting_notice_stays() -> None:
    sink = Sink()
    renderer = ReplyRenderer(sink, plain=False)
    renderer.handle(Notice("The oldest turns were dropped to fit the context."))
    renderer.handle(TextDelta("Hi"))
    renderer.handle(TurnFinished("Hi", STATS))
    assert any("dropped" in data["text/plain"] for _, _, data in sink.calls)
    assert all(data["text/plain"] for _, _, data in sink.calls)  # nothing was cleared


def test_without_streaming_the_answer_appears_whole() -> None:
    sink = Sink()
    renderer = ReplyRenderer(sink, plain=False, streaming=False)
    for piece in ("one ", "two ", "three"):
        renderer.handle(TextDelta(piece))
        assert sink.calls == []  # nothing shown while it is generated
    renderer.handle(TurnFinished("one two three", STATS))
    answer = [data for kind, _, data in sink.calls if "one" in data.get("text/plain", "")]
    assert [a["text/plain"] for a in answer] == ["one two three"]
    assert all(kind == "display" for kind, _, _ in sink.calls)
