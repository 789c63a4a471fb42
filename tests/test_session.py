"""The chat session over a real model worker and the tiny model: turns, history, context fitting."""

from __future__ import annotations

from pathlib import Path

from shammah_kernel.engine import loader
from shammah_kernel.errors import ModelError
from shammah_kernel.events import (
    EngineState,
    GenerationOptions,
    Notice,
    TextDelta,
    TurnFailed,
    TurnFinished,
)
from shammah_kernel.model_choice import ModelChoice, ModelSource
from shammah_kernel.session import ChatSession
from shammah_kernel.worker import ModelWorker


def make_session(model: Path, tmp_path: Path, **options: int) -> ChatSession:
    choice = ModelChoice("tiny", ModelSource.CONFIGURED, "test", path=model)
    worker = ModelWorker(loader(choice, tmp_path / "models", "auto", lambda _: None), "tiny")
    return ChatSession(worker, GenerationOptions(temperature=0.0, **options))


def test_a_turn_streams_deltas_then_finishes_into_the_history(
    tiny_model: Path, tmp_path: Path
) -> None:
    session = make_session(tiny_model, tmp_path, max_tokens=8)
    events = list(session.ask("hello", cell_id="a"))
    deltas = "".join(e.text for e in events if isinstance(e, TextDelta))
    (finished,) = [e for e in events if isinstance(e, TurnFinished)]
    assert deltas == finished.text
    assert [(t.user, t.assistant) for t in session.conversation.turns] == [("hello", deltas)]
    session.worker.stop()


def test_oldest_turns_are_dropped_to_fit_the_context(tiny_model: Path, tmp_path: Path) -> None:
    session = make_session(tiny_model, tmp_path, max_tokens=8, context_length=512)
    for n in range(6):
        list(session.ask(f"question number {n} " + "the quick brown fox " * 10))
    notices = [e for e in session.ask("last question") if isinstance(e, Notice)]
    assert any("Dropped the" in n.text and "512 tokens" in n.text for n in notices)
    assert len(session.conversation.turns) == 7  # dropped from the prompt, kept in the history
    session.worker.stop()


def test_a_message_longer_than_the_context_fails_clearly(tiny_model: Path, tmp_path: Path) -> None:
    session = make_session(tiny_model, tmp_path, max_tokens=8, context_length=512)
    events = list(session.ask("word " * 400))
    assert isinstance(events[-1], TurnFailed) and "does not fit" in events[-1].message
    assert session.conversation.turns == []
    session.worker.stop()


def test_turns_on_a_model_that_failed_to_load_end_with_the_reason(tmp_path: Path) -> None:
    session = make_session(tmp_path / "missing-model", tmp_path)
    events = list(session.ask("hello"))
    assert isinstance(events[-1], TurnFailed) and "Could not load the model" in events[-1].message
    assert session.worker.status.state is EngineState.FAILED


def test_the_worker_runs_jobs_in_order_and_returns_their_errors() -> None:
    worker: ModelWorker[list[int]] = ModelWorker(lambda report: [], "list")
    futures = [worker.submit(lambda log, n=n: log.append(n) or len(log)) for n in range(5)]
    assert [f.result(timeout=10) for f in futures] == [1, 2, 3, 4, 5]

    def fail(_: list[int]) -> None:
        raise ModelError("boom")

    error = worker.submit(fail).exception(timeout=10)
    assert isinstance(error, ModelError)
    assert worker.submit(len).result(timeout=10) == 5  # the worker survives a failed job
    worker.stop()
