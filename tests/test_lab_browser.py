"""JupyterLab in a real Chromium, used as a person would: launcher, /help, reply, stop button."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import write_config

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
WAIT_MS = 90_000  # generous: other test runs share this machine's two cores
HELLO = '```python\nprint("hello")\n```'
# Reply text has streamed into the cell: a rendered Markdown output other than a notice
# (notices such as "Waiting for the model" are one italic paragraph).
STREAMED_TEXT = """cell => [...cell.querySelectorAll('.jp-OutputArea .jp-RenderedMarkdown')].some(
    out => out.innerText.trim() && !out.matches(':has(> p:only-child > em:only-child)'))"""
CHROMIUM_FLAGS = (
    "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run"
    " --disable-background-networking --disable-component-update --disable-sync"
)

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")
sync_api.expect.set_options(timeout=WAIT_MS)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),  # a crashed browser driver must not hang the run
    pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM}"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_server(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"JupyterLab did not answer {url} in {timeout} s")


@contextmanager
def start_lab(tmp_path: Path) -> Iterator[str]:
    """Run JupyterLab with the test's environment; yields the /lab?reset URL (token included)."""
    notebooks, settings = tmp_path / "notebooks", tmp_path / "lab-settings"
    notebooks.mkdir()
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings))
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "lab-workspaces")
    port, token = free_port(), "shammah-browser-test"
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root"]
    args += ["--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}"]
    args += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={notebooks}"]
    args += ["--LabApp.news_url=None", "--ServerApp.port_retries=0"]
    log = (tmp_path / "lab.log").open("wb")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_server(f"{base}/api/status?token={token}", proc)
        yield f"{base}/lab?reset&token={token}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


@pytest.fixture
def lab_page(tiny_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    """A Chromium page on a fresh JupyterLab whose kernels use the tiny model's home."""
    # The preloaded OpenBLAS of the test run (tests/openblas_preload.py) crashes Chromium and
    # Playwright's driver; the kernel gets it back from its kernelspec's env.
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    ARTIFACTS.mkdir(exist_ok=True)
    with start_lab(tmp_path) as url, sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS.split(),
            viewport={"width": 1280, "height": 900},
        )
        context.set_default_timeout(WAIT_MS)
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.goto(url)
            yield page
        finally:
            context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"lab-{name}.png"))


def open_shammah_notebook(page: Page) -> None:
    card = page.locator('.jp-LauncherCard[data-category="Notebook"][title="Shammah"]')
    card.wait_for()
    icon = card.locator("img")
    sync_api.expect(icon).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=icon.element_handle())
    shot(page, "launcher")
    card.click()
    status = page.locator("#jp-main-statusbar")
    sync_api.expect(status).to_contain_text("Shammah | Idle")
    sync_api.expect(cell(page, 0).locator(".jp-InputPrompt")).to_contain_text("[ ]:")


def cell(page: Page, index: int) -> Locator:
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").nth(index)


def run_cell(page: Page, index: int, text: str) -> Locator:
    """Type `text` into cell `index` and run it with Shift+Enter; returns the cell."""
    target = cell(page, index)
    target.locator(".cm-content").click()
    page.keyboard.insert_text(text)
    page.keyboard.press("Shift+Enter")
    return target


def wait_done(target: Locator) -> None:
    """The prompt shows an execution count (not `[*]` or blank) once the kernel replied."""
    sync_api.expect(target.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]:"))


def test_launcher_help_reply_and_model_status(lab_page: Page) -> None:
    page = lab_page
    open_shammah_notebook(page)

    help_cell = run_cell(page, 0, "/help")
    wait_done(help_cell)
    table = help_cell.locator(".jp-OutputArea .jp-RenderedMarkdown table")
    sync_api.expect(table).to_contain_text("/history")
    shot(page, "help")
    assert "`" not in table.inner_text(), "raw Markdown in the /help table (an unescaped '|'?)"

    reply_cell = run_cell(page, 1, f"Write hello world in Python, like:\n\n{HELLO}")
    wait_done(reply_cell)
    outputs = reply_cell.locator(".jp-OutputArea .jp-RenderedMarkdown")
    sync_api.expect(outputs.last).to_contain_text("tok/s")  # the footer closes the reply
    shot(page, "reply")
    *_, reply, footer = outputs.all_inner_texts()
    assert reply.strip(), "the streamed reply rendered empty"
    assert "tokens" in footer, footer

    status_cell = run_cell(page, 2, "/model status")
    wait_done(status_cell)
    sync_api.expect(status_cell.locator(".jp-OutputArea")).to_contain_text("tiny-qwen2")
    shot(page, "model-status")

    history_cell = run_cell(page, 3, "/history")
    wait_done(history_cell)
    code = history_cell.locator(".jp-RenderedMarkdown pre")
    sync_api.expect(code).to_contain_text('print("hello")')
    sync_api.expect(code.locator("span").first).to_be_visible()  # highlighted tokens
    shot(page, "history")


def test_stop_button_interrupts_a_long_reply(lab_page: Page, tiny_home: Path) -> None:
    page = lab_page
    config = (tiny_home / "config.toml").read_text()
    write_config(tiny_home, config.replace("max_tokens = 24", "max_tokens = 100000"))
    open_shammah_notebook(page)  # the kernel starts now, so it reads the new config

    long_cell = run_cell(page, 0, "Write a very long story")
    page.wait_for_function(STREAMED_TEXT, arg=long_cell.element_handle())
    sync_api.expect(long_cell.locator(".jp-InputPrompt")).to_have_text("[*]:")
    shot(page, "streaming")
    page.locator('.jp-NotebookPanel:visible [data-jp-item-name="interrupt"]').click()
    wait_done(long_cell)
    sync_api.expect(long_cell.locator(".jp-OutputArea")).to_contain_text("interrupted")
    shot(page, "interrupted")

    status_cell = run_cell(page, 1, "/status")
    wait_done(status_cell)
    sync_api.expect(status_cell.locator(".jp-OutputArea")).to_contain_text("conversation")
    shot(page, "after-interrupt")
