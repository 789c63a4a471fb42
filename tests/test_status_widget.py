"""The status widget: traits and text from Python, updates from a thread, the card in JupyterLab."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel
from lab_harness import (
    WAIT_S,
    browser_test,
    expect,
    lab_page,
    run_cell,
    set_theme,
    shot,
    wait_for_kernel,
    write_notebook,
)

import shammah_kernel.widgets.status
from shammah_kernel.events import EngineState, EngineStatus, TrainingState, TrainingStatus
from shammah_kernel.widgets.status import (
    StatusWidget,
    format_duration,
    status_text,
    training_text,
)

ESM = Path(shammah_kernel.widgets.status.__file__).with_name("status.js")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
QWEN = "Qwen2.5-1.5B-Instruct"
DOWNLOADING = EngineStatus(
    EngineState.DOWNLOADING,
    QWEN,
    detail="model.safetensors",
    downloaded_bytes=412_000_000,
    total_bytes=1_600_000_000,
    bytes_per_second=12_300_000.0,
    eta_seconds=98.0,
)
FAILED = EngineStatus(
    EngineState.FAILED,
    QWEN,
    detail="The download stopped: no network.",
    hint="Check the connection, then run /model load.",
)
TRAINING = TrainingStatus(
    TrainingState.TRAINING,
    adapter="a3",
    active="a2",
    iteration=12,
    total=30,
    train_loss=1.2341,
    val_loss=1.3,
    tokens_per_second=850.4,
    eta_seconds=13.2,
    examples=40,
    buffer=5,
)
TRAINING_FAILED = TrainingStatus(
    TrainingState.FAILED, adapter="a3", detail="Out of memory at iteration 3.", buffer=40
)

# A cell that shows a StatusWidget, then a thread that waits for the file go-<i> and shows batch i
# (EngineStatus with show(), TrainingStatus with show_training()).
CELL = """\
import pathlib, threading, time
from shammah_kernel.events import EngineState as S, EngineStatus
from shammah_kernel.events import TrainingState as T, TrainingStatus
from shammah_kernel.widgets.status import StatusWidget

widget = StatusWidget()
display(widget)
batches = {batches}

def report(folder=pathlib.Path({folder!r})):
    for i, batch in enumerate(batches):
        while not (folder / f"go-{{i}}").exists():
            time.sleep(0.02)
        for status in batch:
            if isinstance(status, TrainingStatus):
                widget.show_training(status)
            else:
                widget.show(status)

threading.Thread(target=report, daemon=True).start()
"""
LOADED_QWEN = f'EngineStatus(S.DOWNLOADING, "{QWEN}", downloaded_bytes=412_000_000, '
LOADED_QWEN += "total_bytes=1_600_000_000, bytes_per_second=12_300_000.0, eta_seconds=98.0)"


def test_show_sets_every_trait() -> None:
    widget = StatusWidget()
    widget.show(DOWNLOADING)
    assert (widget.state, widget.model, widget.detail) == ("downloading", QWEN, "model.safetensors")
    assert (widget.downloaded_bytes, widget.total_bytes) == (412_000_000, 1_600_000_000)
    assert (widget.bytes_per_second, widget.eta_seconds) == (12_300_000.0, 98.0)
    assert widget.status == DOWNLOADING
    widget.show(FAILED)
    assert (widget.state, widget.hint, widget.eta_seconds) == ("failed", FAILED.hint, -1.0)
    assert widget.status == FAILED


def test_status_text_for_each_state() -> None:
    assert status_text(DOWNLOADING) == (
        f"{QWEN}: downloading 412.0 MB / 1.6 GB (25%), 12.3 MB/s, ETA 1m38s (model.safetensors)"
    )
    no_total = EngineStatus(EngineState.DOWNLOADING, QWEN, downloaded_bytes=2_500, eta_seconds=None)
    assert status_text(no_total) == f"{QWEN}: downloading 2.5 KB"
    assert status_text(FAILED) == f"{QWEN}: failed ({FAILED.detail})\n{FAILED.hint}"
    assert status_text(EngineStatus(EngineState.READY, QWEN, hint="unused")) == f"{QWEN}: ready"
    assert status_text(EngineStatus(EngineState.INITIALIZING, "")) == "Shammah: initializing"
    loading = EngineStatus(EngineState.LOADING, QWEN, detail="reading weights")
    assert status_text(loading) == f"{QWEN}: loading (reading weights)"
    offline = EngineStatus(EngineState.OFFLINE, QWEN, detail="no network", hint="SmolLM2 answers")
    assert status_text(offline) == f"{QWEN}: offline (no network)\nSmolLM2 answers"


def test_show_training_round_trip() -> None:
    widget = StatusWidget()
    assert widget.training == TrainingStatus()
    widget.show_training(TRAINING)
    assert (widget.training_state, widget.training_adapter, widget.active_adapter) == (
        "training",
        "a3",
        "a2",
    )
    assert (widget.iteration, widget.total_iterations) == (12, 30)
    assert (widget.train_loss, widget.val_loss) == (1.2341, 1.3)
    assert (widget.training_tokens_per_second, widget.training_eta_seconds) == (850.4, 13.2)
    assert (widget.training_examples, widget.training_buffer) == (40, 5)
    assert widget.training == TRAINING
    # None (no loss yet, no ETA) is -1 in the traits, and None again in the snapshot.
    widget.show_training(TRAINING_FAILED)
    assert (widget.train_loss, widget.val_loss, widget.training_eta_seconds) == (-1, -1, -1)
    assert widget.training == TRAINING_FAILED
    assert widget.status == EngineStatus(EngineState.INITIALIZING, "")  # the engine's untouched
    widget.show(DOWNLOADING)
    assert widget.training == TRAINING_FAILED


def test_show_and_show_training_from_many_threads() -> None:
    """Threads interleaving show() and show_training() leave a whole snapshot of each kind."""
    widget = StatusWidget()
    engine = [DOWNLOADING, FAILED]
    training = [TRAINING, TRAINING_FAILED]

    def report(i: int) -> None:
        for _ in range(200):
            widget.show(engine[i % 2])
            widget.show_training(training[i % 2])

    threads = [threading.Thread(target=report, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert widget.status in engine
    assert widget.training in training


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (TrainingStatus(), ""),
        (TrainingStatus(buffer=1), "Adapter: none (base model), buffer: 1 new example"),
        (TrainingStatus(active="a2"), "Adapter: a2, buffer: 0 new examples"),
        (
            TrainingStatus(
                TrainingState.PREPARING, adapter="a3", detail="replaying 12 answers", buffer=40
            ),
            "Adapter: none (base model), buffer: 40 new examples\n"
            "Training adapter a3: preparing (replaying 12 answers)",
        ),
        (
            TRAINING,
            "Adapter: a2, buffer: 5 new examples\n"
            "Training adapter a3 (40 examples): iter 12/30, loss 1.234 (val 1.300), 850 tok/s, "
            "ETA 14s",
        ),
        (
            TrainingStatus(TrainingState.TRAINING, adapter="a3", iteration=0, total=30),
            "Adapter: none (base model), buffer: 0 new examples\nTraining adapter a3: iter 0/30",
        ),
        (
            TrainingStatus(TrainingState.TRAINING, iteration=4, val_loss=2.0, examples=1),
            "Adapter: none (base model), buffer: 0 new examples\n"
            "Training (1 example): iter 4, val loss 2.000",
        ),
        (
            TrainingStatus(
                TrainingState.DONE, adapter="a3", active="a3", detail="a3 answers now", examples=40
            ),
            "Adapter: a3, buffer: 0 new examples\n"
            "Training adapter a3 (40 examples): done (a3 answers now)",
        ),
        (
            TrainingStatus(TrainingState.CANCELLED, adapter="a3", active="a2", buffer=40),
            "Adapter: a2, buffer: 40 new examples\nTraining adapter a3: cancelled",
        ),
        (
            TRAINING_FAILED,
            "Adapter: none (base model), buffer: 40 new examples\n"
            "Training adapter a3: failed (Out of memory at iteration 3.)",
        ),
    ],
)
def test_training_text_for_each_state(status: TrainingStatus, text: str) -> None:
    assert training_text(status) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.2, "1s"), (45, "45s"), (60, "1m00s"), (98, "1m38s"), (7500, "2h05m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_mimebundle_has_the_text_fallback_and_the_widget_view() -> None:
    widget = StatusWidget()
    widget.show(FAILED)
    bundle = widget._repr_mimebundle_()
    assert bundle is not None
    data, _metadata = bundle
    assert data["text/plain"] == status_text(FAILED)
    assert data[WIDGET_MIME]["model_id"] == widget.model_id
    widget.show_training(TRAINING)
    bundle = widget._repr_mimebundle_()
    assert bundle is not None
    assert bundle[0]["text/plain"] == f"{status_text(FAILED)}\n{training_text(TRAINING)}"


@pytest.mark.skipif(not shutil.which("node"), reason="no node")
def test_the_esm_parses(tmp_path: Path) -> None:
    module = tmp_path / "status.mjs"  # .mjs: node checks it as an ES module
    module.write_text(ESM.read_text())
    checked = subprocess.run(["node", "--check", str(module)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_esm_redraws_on_every_synced_trait() -> None:
    esm = ESM.read_text()
    synced = StatusWidget.class_own_traits(sync=True)
    assert len(synced) == 20
    assert [name for name in synced if f'  "{name}",\n' not in esm] == []


def _iopub_until(client: Any, done: Any, log: list[dict[str, Any]]) -> None:
    deadline = time.monotonic() + WAIT_S
    while True:
        message = client.get_iopub_msg(timeout=max(1, deadline - time.monotonic()))
        log.append(message)
        if done(message):
            return


def _update_states(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        m["content"]["data"]["state"]
        for m in log
        if m["msg_type"] == "comm_msg" and m["content"]["data"].get("method") == "update"
    ]


def _run_thread_cell(
    tmp_path: Path, batch: list[str], last: Callable[[dict[str, Any]], bool]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Runs CELL with one batch in a real ipykernel: the iopub messages while the cell ran, and
    those after it, up to the update that `last` accepts."""
    code = CELL.format(batches=f"[[{', '.join(batch)}]]", folder=str(tmp_path))
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=WAIT_S)
    try:
        msg_id = client.execute(code)
        during: list[dict[str, Any]] = []
        _iopub_until(
            client,
            lambda m: (
                m["parent_header"].get("msg_id") == msg_id
                and m["content"].get("execution_state") == "idle"
            ),
            during,
        )
        assert client.get_shell_msg(timeout=WAIT_S)["content"]["status"] == "ok"
        (tmp_path / "go-0").touch()
        after: list[dict[str, Any]] = []
        _iopub_until(client, lambda m: any(last(u) for u in _update_states([m])), after)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return during, after


def test_show_from_a_thread_after_the_cell_finished(tmp_path: Path) -> None:
    """A real ipykernel sends the updates of a thread that outlives its cell, one per show()."""
    batch = [LOADED_QWEN.replace("412_000_000", str(n)) for n in (100, 200, 300)]
    during, after = _run_thread_cell(
        tmp_path, [*batch, "EngineStatus(S.READY, 'm')"], lambda u: u.get("state") == "ready"
    )

    assert not _update_states(during)
    shown = [m["content"]["data"] for m in during if m["msg_type"] == "display_data"]
    assert shown[0]["text/plain"] == "Shammah: initializing"
    opened = {m["content"]["comm_id"] for m in during if m["msg_type"] == "comm_open"}
    assert shown[0][WIDGET_MIME]["model_id"] in opened
    updates = _update_states(after)
    # hold_sync: one message per show(), holding the traits that changed.
    assert [u.get("downloaded_bytes") for u in updates] == [100, 200, 300, 0], updates
    assert [u.get("state") for u in updates] == ["downloading", None, None, "ready"], updates
    assert not [m for m in after if m["msg_type"] == "stream"], "the thread printed"


def test_show_training_from_a_thread_after_the_cell_finished(tmp_path: Path) -> None:
    """show_training() from a thread: one update per call, holding the traits that changed."""
    batch = [
        "TrainingStatus(T.PREPARING, 'a3', buffer=40)",
        "TrainingStatus(T.TRAINING, 'a3', iteration=1, total=30, buffer=40)",
        "TrainingStatus(T.TRAINING, 'a3', iteration=2, total=30, train_loss=1.5, buffer=40)",
        "TrainingStatus(T.DONE, 'a3', active='a3', detail='a3 answers now')",
    ]
    during, after = _run_thread_cell(tmp_path, batch, lambda u: u.get("training_state") == "done")

    assert not _update_states(during)
    shown = [m["content"]["data"] for m in during if m["msg_type"] == "display_data"]
    assert shown[0]["text/plain"] == "Shammah: initializing"
    assert _update_states(after) == [
        {"training_state": "preparing", "training_adapter": "a3", "training_buffer": 40},
        {"training_state": "training", "iteration": 1, "total_iterations": 30},
        {"iteration": 2, "train_loss": 1.5},
        {
            "training_state": "done",
            "active_adapter": "a3",
            "training_detail": "a3 answers now",
            "iteration": 0,
            "total_iterations": 0,
            "train_loss": -1.0,
            "training_buffer": 0,
        },
    ]
    assert not [m for m in after if m["msg_type"] == "stream"], "the thread printed"


@browser_test()
def test_card_in_jupyterlab(tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    failed = f'EngineStatus(S.FAILED, "{QWEN}", detail="{FAILED.detail}", hint="{FAILED.hint}")'
    batches = f"[[{LOADED_QWEN}], [EngineStatus(S.READY, '{QWEN}')], [{failed}]]"
    notebook = write_notebook(
        tmp_path, "status.ipynb", [CELL.format(batches=batches, folder=str(signals))]
    )

    with lab_page(tmp_path, notebook, viewport=(1100, 700)) as page:
        wait_for_kernel(page, "Python 3 (ipykernel)")
        run_cell(page, 0)
        card = page.locator(".jp-OutputArea .shammah-status")
        expect(card).to_have_attribute("data-state", "initializing")
        expect(card.locator(".shammah-status-bar-indeterminate")).to_be_visible()
        shot(page, "status-widget-initializing", card)

        (signals / "go-0").touch()
        expect(card).to_have_attribute("data-state", "downloading")
        expect(card.locator(".shammah-status-numbers")).to_have_text(
            "412.0 MB / 1.6 GB (25%) · 12.3 MB/s · ETA 1m38s"
        )
        expect(card.locator(".shammah-status-fill")).to_have_attribute("style", "width: 25.8%;")
        page.wait_for_timeout(400)  # the bar's width transition
        shot(page, "status-widget-downloading", card)

        (signals / "go-1").touch()
        expect(card).to_have_attribute("data-state", "ready")
        expect(card.locator(".shammah-status-label")).to_have_text("Ready")
        expect(card.locator(".shammah-status-bar")).to_have_count(0)
        shot(page, "status-widget-ready", card)

        set_theme(page, "JupyterLab Dark")
        (signals / "go-2").touch()
        expect(card.locator(".shammah-status-trouble")).to_contain_text(FAILED.hint)
        shot(page, "status-widget-failed-dark", card)


@browser_test()
def test_training_section_in_jupyterlab(tmp_path: Path) -> None:
    signals = tmp_path / "signals"
    signals.mkdir()
    preparing = "TrainingStatus(T.PREPARING, 'a3', detail='replaying 12 answers', buffer=40)"
    training = (
        "TrainingStatus(T.TRAINING, 'a3', iteration=12, total=30, train_loss=1.2341, val_loss=1.3,"
        " tokens_per_second=850.4, eta_seconds=13.2, examples=40)"
    )
    done = "TrainingStatus(T.DONE, 'a3', active='a3', detail='a3 answers now', examples=40)"
    failed = f"TrainingStatus(T.FAILED, 'a4', active='a3', detail={TRAINING_FAILED.detail!r})"
    batches = (
        f"[[EngineStatus(S.READY, '{QWEN}')], [{preparing}], [{training}], [{done}], [{failed}]]"
    )
    notebook = write_notebook(
        tmp_path, "training.ipynb", [CELL.format(batches=batches, folder=str(signals))]
    )

    with lab_page(tmp_path, notebook, viewport=(1100, 700)) as page:
        wait_for_kernel(page, "Python 3 (ipykernel)")
        run_cell(page, 0)
        card = page.locator(".jp-OutputArea .shammah-status")
        section = card.locator(".shammah-training")
        (signals / "go-0").touch()
        expect(card).to_have_attribute("data-state", "ready")
        expect(section).to_have_count(0)  # nothing to say about training yet

        (signals / "go-1").touch()
        expect(section).to_have_attribute("data-training-state", "preparing")
        expect(section.locator(".shammah-training-active")).to_have_text(
            "Adapter: none (base model)"
        )
        expect(section.locator(".shammah-training-buffer")).to_have_text("Buffer: 40 new examples")
        expect(section.locator(".shammah-training-bar-indeterminate")).to_be_visible()
        expect(section.locator(".shammah-training-detail")).to_have_text("replaying 12 answers")
        expect(card.locator(".shammah-status-bar")).to_have_count(0)  # the engine's bar
        shot(page, "status-widget-training-preparing", card)

        (signals / "go-2").touch()
        expect(section).to_have_attribute("data-training-state", "training")
        expect(section.locator(".shammah-training-title")).to_have_text("Training a3 · 40 examples")
        expect(section.locator(".shammah-training-label")).to_have_text("Training")
        expect(section.locator(".shammah-training-numbers")).to_have_text(
            "iter 12/30 · loss 1.234 (val 1.300) · 850 tok/s · ETA 14s"
        )
        expect(section.locator(".shammah-training-fill")).to_have_attribute("style", "width: 40%;")
        expect(section.locator(".shammah-training-detail")).to_have_count(0)
        page.wait_for_timeout(400)  # the bar's width transition
        shot(page, "status-widget-training", card)

        (signals / "go-3").touch()
        expect(section).to_have_attribute("data-training-state", "done")
        expect(section.locator(".shammah-training-active")).to_have_text("Adapter: a3")
        expect(section.locator(".shammah-training-detail")).to_have_text("a3 answers now")
        expect(section.locator(".shammah-training-bar")).to_have_count(0)
        shot(page, "status-widget-training-done", card)

        set_theme(page, "JupyterLab Dark")
        (signals / "go-4").touch()
        expect(section.locator(".shammah-training-trouble")).to_have_text(TRAINING_FAILED.detail)
        shot(page, "status-widget-training-failed-dark", card)
