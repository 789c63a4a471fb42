"""The status widget: traits and text from Python, updates from a thread, the card in JupyterLab."""

from __future__ import annotations

import time
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

from shammah_kernel.events import EngineState, EngineStatus
from shammah_kernel.widgets.status import StatusWidget, format_duration, status_text

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

# A cell that shows a StatusWidget, then a thread that waits for the file go-<i> and shows batch i.
CELL = """\
import pathlib, threading, time
from shammah_kernel.events import EngineState as S, EngineStatus
from shammah_kernel.widgets.status import StatusWidget

widget = StatusWidget()
display(widget)
batches = {batches}

def report(folder=pathlib.Path({folder!r})):
    for i, batch in enumerate(batches):
        while not (folder / f"go-{{i}}").exists():
            time.sleep(0.02)
        for status in batch:
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


def test_show_from_a_thread_after_the_cell_finished(tmp_path: Path) -> None:
    """A real ipykernel sends the updates of a thread that outlives its cell, one per show()."""
    batch = [LOADED_QWEN.replace("412_000_000", str(n)) for n in (100, 200, 300)]
    code = CELL.format(
        batches=f"[[{', '.join(batch)}, EngineStatus(S.READY, 'm')]]", folder=str(tmp_path)
    )
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
        _iopub_until(
            client, lambda m: [u.get("state") for u in _update_states([m])] == ["ready"], after
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

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
