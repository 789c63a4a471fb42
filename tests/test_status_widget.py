"""The status widget: traits and text from Python, updates from a thread, the card in JupyterLab."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.manager import start_new_kernel

from shammah_kernel.events import EngineState, EngineStatus
from shammah_kernel.widgets.status import StatusWidget, format_duration, status_text

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
WAIT_S = 120  # generous: other test runs share this machine's two cores
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _lab(root: Path, tmp_path: Path) -> Iterator[str]:
    """JupyterLab as tests/test_lab_browser.py runs it; yields the base URL with its token."""
    settings = tmp_path / "lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"))
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "lab-workspaces")
    port, token = _free_port(), "shammah-status-test"
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root"]
    args += ["--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    args += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    args += ["--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True"]
    with (tmp_path / "lab.log").open("wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + WAIT_S
            while True:
                assert proc.poll() is None, f"JupyterLab exited: {proc.returncode}"
                assert time.monotonic() < deadline, "JupyterLab did not answer"
                try:
                    urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.25)
            yield f"{base}/lab/tree/status.ipynb?reset&token={token}"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _shot(page: Any, card: Any, name: str) -> None:
    """The card with a margin of the notebook around it."""
    box = card.bounding_box()
    clip = {"x": box["x"] - 16, "y": box["y"] - 12}
    clip.update(width=box["width"] + 32, height=box["height"] + 24)
    page.screenshot(path=str(ARTIFACTS / f"status-widget-{name}.png"), clip=clip)


@pytest.mark.browser
@pytest.mark.timeout(300)
@pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM}")
def test_card_in_jupyterlab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the playwright package is missing"
    )
    expect = sync_api.expect
    expect.set_options(timeout=WAIT_S * 1000)
    # The run's preloaded OpenBLAS (tests/openblas_preload.py) crashes Chromium and Playwright.
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    ARTIFACTS.mkdir(exist_ok=True)
    root, signals = tmp_path / "notebooks", tmp_path / "signals"
    root.mkdir()
    signals.mkdir()
    failed = f'EngineStatus(S.FAILED, "{QWEN}", detail="{FAILED.detail}", hint="{FAILED.hint}")'
    batches = f"[[{LOADED_QWEN}], [EngineStatus(S.READY, '{QWEN}')], [{failed}]]"
    source = CELL.format(batches=batches, folder=str(signals))
    notebook: dict[str, Any] = {
        "cells": [{"cell_type": "code", "metadata": {}, "source": source, "outputs": []}]
    }
    notebook["cells"][0]["execution_count"] = None
    kernelspec = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    notebook.update(metadata={"kernelspec": kernelspec}, nbformat=4, nbformat_minor=5)
    (root / "status.ipynb").write_text(json.dumps(notebook))

    with _lab(root, tmp_path) as url, sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
            + ["--disable-background-networking", "--disable-component-update", "--disable-sync"],
            viewport={"width": 1100, "height": 700},
        )
        context.set_default_timeout(WAIT_S * 1000)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(url)
            expect(page.locator("#jp-main-statusbar")).to_contain_text(
                "Python 3 (ipykernel) | Idle"
            )
            page.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
            page.keyboard.press("Shift+Enter")
            card = page.locator(".jp-OutputArea .shammah-status")
            expect(card).to_have_attribute("data-state", "initializing")
            expect(card.locator(".shammah-status-bar-indeterminate")).to_be_visible()
            _shot(page, card, "initializing")

            (signals / "go-0").touch()
            expect(card).to_have_attribute("data-state", "downloading")
            expect(card.locator(".shammah-status-numbers")).to_have_text(
                "412.0 MB / 1.6 GB (25%) · 12.3 MB/s · ETA 1m38s"
            )
            expect(card.locator(".shammah-status-fill")).to_have_attribute("style", "width: 25.8%;")
            page.wait_for_timeout(400)  # the bar's width transition
            _shot(page, card, "downloading")

            (signals / "go-1").touch()
            expect(card).to_have_attribute("data-state", "ready")
            expect(card.locator(".shammah-status-label")).to_have_text("Ready")
            expect(card.locator(".shammah-status-bar")).to_have_count(0)
            _shot(page, card, "ready")

            page.evaluate(
                "window.jupyterapp.commands.execute("
                "'apputils:change-theme', {theme: 'JupyterLab Dark'})"
            )
            expect(page.locator("body")).to_have_attribute("data-jp-theme-light", "false")
            expect(page.locator("#jupyterlab-splash")).to_have_count(0)  # shown while it switches
            (signals / "go-2").touch()
            expect(card.locator(".shammah-status-trouble")).to_contain_text(FAILED.hint)
            _shot(page, card, "failed-dark")
        finally:
            context.close()
