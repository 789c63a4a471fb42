"""Background training on the model worker, with the tiny random Qwen2: runs, turns in between,
cancel, failure, and the adapter a model answers with."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shammah_kernel.adapter_library import AdapterLibrary
from shammah_kernel.config import LoraSettings
from shammah_kernel.errors import CommandError, ModelError
from shammah_kernel.events import (
    GenerationOptions,
    Message,
    Role,
    TrainingState,
    TrainingStatus,
    TurnFinished,
)
from shammah_kernel.learning import Learner
from shammah_kernel.mlx_backend import MlxBackend
from shammah_kernel.store import ExampleStore
from shammah_kernel.worker import ModelWorker

OPTIONS = GenerationOptions(max_tokens=4, temperature=0.0)


def _settings() -> LoraSettings:
    settings = LoraSettings(rank=4, alpha=8.0, dropout=0.0, learning_rate=1e-2, batch_size=2)
    settings.epochs, settings.num_layers, settings.auto_train_threshold = 2, 2, 3
    return settings


class Rig:
    def __init__(self, model: Path, home: Path, settings: LoraSettings) -> None:
        self.store = ExampleStore(home / "examples.db")
        self.library = AdapterLibrary(home / "adapters")
        self.worker: ModelWorker[MlxBackend] = ModelWorker(
            lambda _: self.learner.attach(MlxBackend(model, "tiny")), "tiny"
        )
        self.learner = Learner(self.worker, lambda: self.store, self.library, settings, "Be brief.")
        self.statuses: list[TrainingStatus] = []
        self.learner.subscribe(self.statuses.append)

    def add(self, count: int, weight: float = 1.0) -> None:
        for i in range(count):
            context = [Message(Role.SYSTEM, "Be brief."), Message(Role.USER, f"Question {i}?")]
            self.store.add(context, f"Answer number {i}.", source="test", weight=weight)

    def ask(self) -> str:
        messages = [Message(Role.USER, "Hello?")]
        return self.worker.submit(lambda b: b.generate(messages, OPTIONS).text).result(60)

    def wait(self, timeout: float = 120) -> TrainingStatus:
        deadline = time.monotonic() + timeout
        while self.learner.running:
            assert time.monotonic() < deadline, self.learner.status
            time.sleep(0.05)
        return self.learner.status

    @property
    def backend(self) -> MlxBackend:
        assert self.worker.backend is not None
        return self.worker.backend


@pytest.fixture
def rig(tiny_model: Path, shammah_home: Path) -> Iterator[Rig]:
    rig = Rig(tiny_model, shammah_home, _settings())
    rig.ask()  # loaded
    yield rig
    rig.worker.stop()
    rig.store.close()


def test_a_run_trains_publishes_and_applies_an_adapter(rig: Rig) -> None:
    rig.add(3)
    name = rig.learner.train()
    status = rig.wait()
    assert status.state is TrainingState.DONE, status
    assert name == "adapter-1" and status.active == name and rig.backend.adapter == name
    assert (rig.library.path(name) / "adapters.safetensors").is_file()
    assert rig.library.current("tiny") == name
    assert rig.store.untrained_count() == 0  # trained examples leave the buffer
    assert {e.adapter for e in rig.store.examples()} == {name}
    states = [s.state for s in rig.statuses if s.state is not TrainingState.IDLE]
    assert states[0] is TrainingState.PREPARING and TrainingState.TRAINING in states
    steps = [s for s in rig.statuses if s.state is TrainingState.TRAINING and s.iteration]
    assert steps[-1].iteration == steps[-1].total and steps[-1].tokens_per_second > 0
    generated = rig.ask()
    assert isinstance(generated, str)


def test_the_next_run_retrains_the_same_adapter_on_old_and_new_examples(rig: Rig) -> None:
    rig.add(2)
    rig.learner.train()
    assert rig.wait().state is TrainingState.DONE
    rig.add(1)
    assert rig.learner.train() == "adapter-1"
    status = rig.wait()
    assert status.state is TrainingState.DONE and status.examples == 3
    assert rig.library.names() == ["adapter-1"]


def test_chat_turns_run_between_training_steps(rig: Rig) -> None:
    rig.add(6)
    still_training: list[bool] = []  # whether the run was still going when the turn answered

    def turn() -> None:
        rig.ask()
        still_training.append(rig.learner.running)

    def ask_once(status: TrainingStatus) -> None:
        if status.state is TrainingState.TRAINING and status.iteration == 1 and not still_training:
            threading.Thread(target=turn).start()

    rig.learner.subscribe(ask_once)
    rig.learner.train()
    status = rig.wait()
    assert status.state is TrainingState.DONE
    deadline = time.monotonic() + 10
    while not still_training and time.monotonic() < deadline:
        time.sleep(0.05)
    assert still_training == [True], "the turn waited for the whole run"


def test_cancel_keeps_the_previous_adapter_and_writes_nothing(rig: Rig) -> None:
    rig.add(3)
    first = rig.learner.train()
    rig.wait()
    before = (rig.library.path(first) / "adapters.safetensors").read_bytes()
    rig.add(3)
    rig.learner.subscribe(
        lambda s: rig.learner.cancel() if s.state is TrainingState.TRAINING else None
    )
    rig.learner.train()
    status = rig.wait()
    assert status.state is TrainingState.CANCELLED, status
    assert f"{first} still answers" in status.detail
    assert rig.backend.adapter == first
    assert (rig.library.path(first) / "adapters.safetensors").read_bytes() == before
    assert [p.name for p in rig.library.root.iterdir() if p.name.startswith(".")] == [".replay"]
    assert rig.store.untrained_count() == 3


def test_a_failed_run_keeps_the_previous_adapter(rig: Rig) -> None:
    rig.add(3)
    first = rig.learner.train()
    rig.wait()
    rig.add(2)
    rig.learner.settings.target_modules = ["no_such_layer"]
    rig.learner.train()
    status = rig.wait()
    assert status.state is TrainingState.FAILED and "no_such_layer" in status.detail
    assert rig.backend.adapter == first and rig.library.names() == [first]
    assert rig.store.untrained_count() == 2
    rig.ask()  # still answers


def test_train_refuses_with_nothing_to_learn_or_a_run_going(rig: Rig) -> None:
    with pytest.raises(CommandError, match="no examples"):
        rig.learner.train()
    rig.add(3)
    rig.learner.train()
    with pytest.raises(CommandError, match="already running"):
        rig.learner.train()
    rig.wait()


def test_auto_training_starts_at_the_threshold(rig: Rig) -> None:
    rig.add(2)
    assert rig.learner.maybe_auto_train() == ""
    rig.add(1)
    assert rig.learner.maybe_auto_train() == "adapter-1"
    assert rig.wait().state is TrainingState.DONE
    rig.learner.settings.auto_train = False
    rig.add(3)
    assert rig.learner.maybe_auto_train() == ""


def test_a_reloaded_model_answers_with_its_last_adapter(
    rig: Rig, tiny_model: Path, shammah_home: Path
) -> None:
    rig.add(3)
    name = rig.learner.train()
    rig.wait()
    again = Rig(tiny_model, shammah_home, _settings())
    try:
        again.ask()
        assert again.backend.adapter == name and again.learner.status.active == name
    finally:
        again.worker.stop()


def test_unload_load_and_a_refused_adapter(rig: Rig, shammah_home: Path) -> None:
    rig.add(3)
    name = rig.learner.train()
    rig.wait()
    rig.learner.use(None)
    assert rig.backend.adapter == "" and rig.library.current("tiny") is None
    rig.learner.use(name)
    assert rig.backend.adapter == name
    foreign = rig.library.path("foreign")
    foreign.mkdir()
    for f in rig.library.path(name).iterdir():
        (foreign / f.name).write_bytes(f.read_bytes())
    meta = (foreign / "shammah.json").read_text().replace('"tiny"', '"another-model"')
    (foreign / "shammah.json").write_text(meta)
    with pytest.raises(ModelError, match="another-model"):
        rig.learner.use("foreign")
    assert rig.backend.adapter == name and rig.library.current("tiny") == name


def test_start_new_trains_a_fresh_adapter_from_the_buffer_only(rig: Rig) -> None:
    rig.add(3)
    first = rig.learner.train()
    rig.wait()
    rig.learner.start_new("project-b")
    assert rig.backend.adapter == ""
    rig.add(2)
    assert rig.learner.train() == "project-b"
    status = rig.wait()
    assert status.examples == 2 and rig.backend.adapter == "project-b"
    assert rig.library.names() == [first, "project-b"]


def test_serve_pending_runs_turns_but_defers_model_changes() -> None:
    worker: ModelWorker[object] = ModelWorker(lambda _: object(), "stub")
    order: list[str] = []
    queued = threading.Event()
    proceed = threading.Event()

    def long_job(_: object) -> None:
        order.append("long:start")
        queued.set()
        proceed.wait(5)
        worker.serve_pending()
        order.append("long:end")

    worker.submit(long_job, between_steps=False)
    queued.wait(5)
    swap = worker.submit(lambda _: order.append("swap"), between_steps=False)
    turn = worker.submit(lambda _: order.append("turn"))
    proceed.set()
    turn.result(5)
    swap.result(5)
    assert order == ["long:start", "turn", "long:end", "swap"]
    worker.stop()
    with pytest.raises(RuntimeError, match="worker thread"):
        worker.serve_pending()


def _turn_of(assistant: Any, text: str) -> Any:
    handle = assistant.session.ask(text)
    while (event := handle.next_event()) is None or not isinstance(event, TurnFinished):
        time.sleep(0.01)
    return event.turn


def test_a_better_answer_is_proposed_from_the_note_and_the_conversation(
    tiny_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from claude_server import ClaudeServer

    from shammah_kernel.assistant import Assistant

    with ClaudeServer(reply="Use sorted(xs, reverse=True).") as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        assistant = Assistant()
        try:
            assistant.start()
            turn = _turn_of(assistant, "How do I sort backwards?")
            assert assistant.proposer == "Claude"
            proposal = assistant.propose_better(turn, "use reverse")
            assert proposal == "Use sorted(xs, reverse=True)."
            sent = server.requests[-1].body["messages"]
            assert sent[-3]["content"] == "How do I sort backwards?"
            assert sent[-2] == {"role": "assistant", "content": turn.assistant}
            assert "use reverse" in sent[-1]["content"]
        finally:
            assistant.shutdown()


def test_without_a_key_the_local_model_proposes(tiny_home: Path) -> None:
    from shammah_kernel.assistant import Assistant

    assistant = Assistant()
    try:
        assistant.start()
        turn = _turn_of(assistant, "How do I sort backwards?")
        assert assistant.proposer == "the local model"
        proposal = assistant.propose_better(turn, "shorter")
        backend = assistant.worker.backend
        assert backend is not None
        # the local model's last prompt, then its answer: the note and the question were in it
        seen = backend.tokenizer.decode(backend._cached_tokens)
        assert "shorter" in seen and "How do I sort backwards?" in seen
        assert proposal in seen
    finally:
        assistant.shutdown()


def test_after_a_cancel_auto_training_waits_for_new_examples(rig: Rig) -> None:
    rig.add(3)
    stop_cancelling = rig.learner.subscribe(
        lambda s: rig.learner.cancel() if s.state is TrainingState.TRAINING else None
    )
    assert rig.learner.maybe_auto_train() == "adapter-1"
    assert rig.wait().state is TrainingState.CANCELLED
    assert rig.learner.maybe_auto_train() == ""  # the same buffer: no restart after each turn
    stop_cancelling()
    rig.add(1)
    assert rig.learner.maybe_auto_train() == "adapter-1"
    assert rig.wait().state is TrainingState.DONE


def test_a_run_never_overwrites_another_models_adapter(rig: Rig) -> None:
    rig.add(3)
    first = rig.learner.train()
    rig.wait()
    meta = rig.library.path(first) / "shammah.json"
    meta.write_text(meta.read_text().replace('"tiny"', '"another-model"'))
    rig.add(1)
    assert rig.learner.train() == "adapter-2"
    assert rig.wait().state is TrainingState.DONE
    assert "another-model" in meta.read_text() and rig.backend.adapter == "adapter-2"


def test_a_remembered_adapter_without_weights_is_reported_at_load(
    rig: Rig, tiny_model: Path, shammah_home: Path
) -> None:
    rig.add(3)
    name = rig.learner.train()
    rig.wait()
    (rig.library.path(name) / "adapters.safetensors").unlink()
    again = Rig(tiny_model, shammah_home, _settings())
    try:
        again.ask()
        assert again.backend.adapter == "" and "no weights file" in again.learner.attach_problem
    finally:
        again.worker.stop()
