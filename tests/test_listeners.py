"""Status listeners: one mechanism with unsubscribe, and at most one live status card per cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kernel_client import CellRun, KernelSession

from shammah_kernel.adapter_library import AdapterLibrary
from shammah_kernel.config import LoraSettings
from shammah_kernel.events import EngineState, EngineStatus, TrainingState, TrainingStatus
from shammah_kernel.learning import Learner
from shammah_kernel.widgets.status import StatusCards
from shammah_kernel.worker import Listeners, ModelWorker

READY = EngineStatus(EngineState.READY, "tiny")
TRAINING = TrainingStatus(TrainingState.TRAINING, adapter="a1", iteration=3, total=9)


def _never_loaded(_report: object) -> object:
    raise AssertionError("these tests never start the worker")


@pytest.fixture
def sources(tmp_path: Path) -> tuple[ModelWorker[Any], Learner]:
    """A real worker (never started) and a real learner: the two things a card follows."""
    worker: ModelWorker[Any] = ModelWorker(_never_loaded, "tiny")
    library = AdapterLibrary(tmp_path / "adapters")
    no_store: Any = None  # these tests never read examples
    learner = Learner(worker, lambda: no_store, library, LoraSettings(), "")
    return worker, learner


def _counts(worker: ModelWorker[Any], learner: Learner) -> tuple[int, int]:
    return len(worker.listeners), len(learner.listeners)


def test_subscribe_returns_the_unsubscribe() -> None:
    listeners: Listeners[int] = Listeners()
    seen: list[int] = []
    first = listeners.subscribe(seen.append)
    second = listeners.subscribe(seen.append)  # the same callable twice: two subscriptions
    listeners.notify(1)
    first()
    first()  # a second call changes nothing
    listeners.notify(2)
    second()
    listeners.notify(3)
    assert seen == [1, 1, 2]
    assert len(listeners) == 0


def test_a_listener_that_raises_is_dropped_and_the_others_still_hear() -> None:
    listeners: Listeners[int] = Listeners()
    seen: list[int] = []

    def broken(_: int) -> None:
        raise RuntimeError("the front end is gone")

    listeners.subscribe(broken)
    listeners.subscribe(seen.append)
    listeners.notify(1)
    listeners.notify(2)
    assert seen == [1, 2] and len(listeners) == 1


def test_n_runs_of_one_cell_leave_one_card_following(
    sources: tuple[ModelWorker[Any], Learner],
) -> None:
    worker, learner = sources
    cards = StatusCards(worker, learner)
    bundles = [cards.open("cell-1", run) for run in range(20)]
    assert all(bundle is not None for bundle in bundles)
    assert _counts(worker, learner) == (1, 1)  # before the fix: 40 and 40
    assert cards.open("cell-1", 19) is None  # the same run asks again: its card is shown
    assert _counts(worker, learner) == (1, 1) and cards.live == 1

    worker.report(READY)
    learner._report(TRAINING)
    [(_run, live)] = cards._cards.values()
    assert (live.widget.status, live.widget.training) == (READY, TRAINING)


def test_each_cell_has_its_card_and_terminals_share_one(
    sources: tuple[ModelWorker[Any], Learner],
) -> None:
    worker, learner = sources
    cards = StatusCards(worker, learner)
    for run in range(5):
        cards.open("cell-a", run)
        cards.open("cell-b", run)
        cards.open(None, run)  # jupyter console sends no cell id
    assert _counts(worker, learner) == (3, 3) and cards.live == 3
    cards.close_all()
    assert _counts(worker, learner) == (0, 0) and cards.live == 0


def test_a_replaced_card_stops_following(sources: tuple[ModelWorker[Any], Learner]) -> None:
    worker, learner = sources
    cards = StatusCards(worker, learner)
    cards.open("cell-1", 0)
    [(_run, old)] = cards._cards.values()
    cards.open("cell-1", 1)
    worker.report(READY)
    assert old.closed and old.widget.comm is None
    assert old.widget.status.state is EngineState.INITIALIZING  # it heard nothing after


def test_a_card_closed_by_the_front_end_is_unsubscribed(
    sources: tuple[ModelWorker[Any], Learner],
) -> None:
    worker, learner = sources
    cards = StatusCards(worker, learner)
    cards.open("cell-1", 0)
    [(_run, card)] = cards._cards.values()
    comm = card.widget.comm
    assert comm is not None
    comm.handle_close({"content": {"comm_id": comm.comm_id, "data": {}}})  # a comm_close
    assert card.closed and _counts(worker, learner) == (0, 0) and cards.live == 0
    assert cards.open("cell-1", 0) is not None  # the same run may show a new one


def test_a_card_closed_from_python_is_unsubscribed(
    sources: tuple[ModelWorker[Any], Learner],
) -> None:
    worker, learner = sources
    cards = StatusCards(worker, learner)
    cards.open("cell-1", 0)
    [(_run, card)] = cards._cards.values()
    card.widget.close()  # ipywidgets' close, as Widget.close_all() does
    assert card.closed and _counts(worker, learner) == (0, 0)


def test_a_card_whose_update_fails_drops_both_subscriptions(
    sources: tuple[ModelWorker[Any], Learner], monkeypatch: pytest.MonkeyPatch
) -> None:
    worker, learner = sources
    cards = StatusCards(worker, learner)
    cards.open("cell-1", 0)
    [(_run, card)] = cards._cards.values()

    def send_fails(*_: object, **__: object) -> None:
        raise OSError("the socket is closed")

    monkeypatch.setattr(card.widget, "_send", send_fails)
    worker.report(READY)
    assert card.closed and _counts(worker, learner) == (0, 0)
    learner._report(TRAINING)  # nobody left to tell; the learner goes on


def _cards_opened(run: CellRun) -> set[str]:
    opened = run.of_type("comm_open")
    return {m["content"]["comm_id"] for m in opened if _model(m) == "AnyModel"}


def _model(message: dict[str, Any]) -> str:
    return str(message["content"]["data"]["state"].get("_model_name"))


def _live_cards(runs: list[CellRun]) -> int:
    """Status cards (widget comms) a kernel opened and has not closed, over the given runs."""
    opened = set().union(*(_cards_opened(run) for run in runs))
    closed = {m["content"]["comm_id"] for run in runs for m in run.of_type("comm_close")}
    return len(opened - closed)


def test_the_kernel_keeps_one_live_card_per_cell(tiny_kernel: KernelSession) -> None:
    same_cell = [tiny_kernel.execute("/status", cell_id="cell-1") for _ in range(6)]
    assert all(run.status == "ok" for run in same_cell)
    assert all(len(_cards_opened(run)) == 1 for run in same_cell)
    opened = sum(len(run.of_type("comm_open")) for run in same_cell)
    closed = sum(len(run.of_type("comm_close")) for run in same_cell)
    assert opened - closed == 2  # the card and its layout: nothing else is left open
    assert _live_cards(same_cell) == 1  # before the fix: 6 cards, 12 listeners
    console = [tiny_kernel.execute("/status", cell_id=None) for _ in range(3)]
    assert _live_cards([*same_cell, *console]) == 2
    train = [tiny_kernel.execute("/train status", cell_id="cell-2") for _ in range(3)]
    assert _live_cards([*same_cell, *console, *train]) == 3
