"""JupyterLab in a real Chromium for the browser tests: start both, open notebooks, run cells.

Lab serves `<tmp_path>/notebooks` on 127.0.0.1 with a token and its own settings (no news popup);
the Jupyter dirs, Shammah home and kernelspecs are the test run's (tests/conftest.py). Both run
without the run's preloaded OpenBLAS (tests/openblas_preload.py), which crashes Chromium and
Playwright's Node driver; the Shammah kernel gets it back from its kernelspec's env.
"""

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser tests are skipped (browser_test)
    expect = sync_playwright = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
WAIT_S = 120  # generous: other test runs share this machine's two cores
PYTHON3 = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
SHAMMAH = {"name": "shammah", "display_name": "Shammah", "language": "markdown"}
TOKEN = "shammah-browser-test"

if expect is not None:
    expect.set_options(timeout=WAIT_S * 1000)

F = TypeVar("F", bound=Callable[..., Any])


def browser_test(timeout: int = 300) -> Callable[[F], F]:
    """Marks a test `browser`, skipped without Chromium or playwright; `timeout` guards a crashed
    browser driver hanging the run."""

    def mark(test: F) -> F:
        for decorator in (
            pytest.mark.browser,
            pytest.mark.timeout(timeout),
            pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"no Chromium at {CHROMIUM}"),
            pytest.mark.skipif(expect is None, reason="the playwright package is missing"),
        ):
            test = decorator(test)
        return test

    return mark


def notebooks(tmp_path: Path) -> Path:
    """The folder Lab serves."""
    root = tmp_path / "notebooks"
    root.mkdir(exist_ok=True)
    return root


def write_notebook(
    tmp_path: Path, name: str, sources: list[str], kernelspec: dict[str, str] = PYTHON3
) -> str:
    """A notebook of code cells (not run yet) in the served folder; returns its Lab path."""
    cells: list[dict[str, Any]] = [
        {"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
        for s in sources
    ]
    notebook = {"cells": cells, "metadata": {"kernelspec": kernelspec}, "nbformat": 4}
    notebook["nbformat_minor"] = 5
    (notebooks(tmp_path) / name).write_text(json.dumps(notebook))
    return f"lab/tree/{name}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_server(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited early with code {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"JupyterLab did not answer {url} in {WAIT_S} s")


@contextmanager
def _lab(tmp_path: Path) -> Iterator[str]:
    """Runs JupyterLab until the block ends; yields its base URL."""
    settings = tmp_path / "lab-settings"
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env.update(JUPYTERLAB_SETTINGS_DIR=str(settings))
    env.update(JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"))
    port = _free_port()
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root"]
    args += ["--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    args += [f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={notebooks(tmp_path)}"]
    args += ["--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True"]
    with (tmp_path / "lab.log").open("wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_for_server(f"{base}/api/status?token={TOKEN}", proc)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@contextmanager
def lab_page(
    tmp_path: Path, path: str = "lab", viewport: tuple[int, int] = (1280, 900)
) -> Iterator[Page]:
    """A Chromium page on `path` (the launcher, or a `write_notebook` path) of a fresh Lab."""
    ARTIFACTS.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as env, _lab(tmp_path) as base:
        env.delenv("LD_PRELOAD", raising=False)  # for Playwright's driver and Chromium
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=CHROMIUM,
                args=CHROMIUM_FLAGS,
                viewport={"width": viewport[0], "height": viewport[1]},
            )
            context.set_default_timeout(WAIT_S * 1000)
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.goto(f"{base}/{path}?reset&token={TOKEN}")
                yield page
            finally:
                context.close()


def wait_for_kernel(page: Page, display_name: str) -> None:
    """The status bar names the kernel as idle: before that, a Shift+Enter may be dropped."""
    expect(page.locator("#jp-main-statusbar")).to_contain_text(f"{display_name} | Idle")


def launcher_card(page: Page, display_name: str) -> Locator:
    card = page.locator(f'.jp-LauncherCard[data-category="Notebook"][title="{display_name}"]')
    card.wait_for()
    return card


def open_notebook(page: Page, display_name: str) -> None:
    """A new notebook from the launcher, on that kernel, ready for its first cell."""
    launcher_card(page, display_name).click()
    wait_for_kernel(page, display_name)
    expect(cell(page, 0).locator(".jp-InputPrompt")).to_contain_text("[ ]:")


def cell(page: Page, index: int) -> Locator:
    return page.locator(".jp-NotebookPanel:visible .jp-Notebook .jp-Cell").nth(index)


def run_cell(page: Page, index: int, text: str = "") -> Locator:
    """Types `text` (if any) into cell `index` and runs it with Shift+Enter; returns the cell."""
    target = cell(page, index)
    target.locator(".cm-content").click()
    if text:
        page.keyboard.insert_text(text)  # typed key by key, lines would be auto-indented
    page.keyboard.press("Shift+Enter")
    return target


def wait_done(target: Locator) -> None:
    """The prompt shows an execution count (not `[*]` or blank) once the kernel replied."""
    expect(target.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[\d+\]:"))


def set_theme(page: Page, theme: str) -> None:
    change = "theme => window.jupyterapp.commands.execute('apputils:change-theme', {theme})"
    page.evaluate(change, theme)
    light = "false" if "Dark" in theme else "true"
    expect(page.locator("body")).to_have_attribute("data-jp-theme-light", light)
    expect(page.locator("#jupyterlab-splash")).to_have_count(0)  # shown while it switches


def shot(page: Page, name: str, around: Locator | None = None) -> None:
    """`test-artifacts/<name>.png`: the page, or `around` with a margin of the page about it."""
    path = str(ARTIFACTS / f"{name}.png")
    if around is None:
        page.screenshot(path=path)
        return
    around.scroll_into_view_if_needed()
    box = around.bounding_box()
    assert box is not None, f"{name}: nothing to photograph"
    x, y, width, height = box["x"] - 16, box["y"] - 12, box["width"] + 32, box["height"] + 24
    page.screenshot(path=path, clip={"x": x, "y": y, "width": width, "height": height})
