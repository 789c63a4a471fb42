"""JupyterLab in a real Chromium, used as a person would: launcher, /help, reply, stop button."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import write_config
from lab_harness import (
    browser_test,
    expect,
    lab_page,
    launcher_card,
    open_notebook,
    run_cell,
    shot,
    wait_done,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

HELLO = '```python\nprint("hello")\n```'
# Reply text has streamed into the cell: a rendered Markdown output other than a notice
# (notices such as "Waiting for the model" are one italic paragraph).
STREAMED_TEXT = """cell => [...cell.querySelectorAll('.jp-OutputArea .jp-RenderedMarkdown')].some(
    out => out.innerText.trim() && !out.matches(':has(> p:only-child > em:only-child)'))"""


@pytest.fixture
def page(tiny_home: Path, tmp_path: Path) -> Iterator[Page]:
    """A Chromium page on a fresh JupyterLab whose kernels use the tiny model's home."""
    with lab_page(tmp_path) as page:
        yield page


def open_shammah_notebook(page: Page) -> None:
    icon = launcher_card(page, "Shammah").locator("img")
    expect(icon).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=icon.element_handle())
    shot(page, "lab-launcher")
    open_notebook(page, "Shammah")


@browser_test()
def test_launcher_help_reply_and_model_status(page: Page) -> None:
    open_shammah_notebook(page)

    help_cell = run_cell(page, 0, "/help")
    wait_done(help_cell)
    table = help_cell.locator(".jp-OutputArea .jp-RenderedMarkdown table")
    expect(table).to_contain_text("/history")
    shot(page, "lab-help")
    assert "`" not in table.inner_text(), "raw Markdown in the /help table (an unescaped '|'?)"

    reply_cell = run_cell(page, 1, f"Write hello world in Python, like:\n\n{HELLO}")
    wait_done(reply_cell)
    outputs = reply_cell.locator(".jp-OutputArea .jp-RenderedMarkdown")
    expect(outputs.last).to_contain_text("tok/s")  # the footer closes the reply
    shot(page, "lab-reply")
    *_, reply, footer = outputs.all_inner_texts()
    assert reply.strip(), "the streamed reply rendered empty"
    assert "tokens" in footer, footer

    status_cell = run_cell(page, 2, "/model status")
    wait_done(status_cell)
    expect(status_cell.locator(".jp-OutputArea")).to_contain_text("tiny-qwen2")
    shot(page, "lab-model-status")

    history_cell = run_cell(page, 3, "/history")
    wait_done(history_cell)
    code = history_cell.locator(".jp-RenderedMarkdown pre")
    expect(code).to_contain_text('print("hello")')
    expect(code.locator("span").first).to_be_visible()  # highlighted tokens
    shot(page, "lab-history")


@browser_test()
def test_stop_button_interrupts_a_long_reply(page: Page, tiny_home: Path) -> None:
    config = (tiny_home / "config.toml").read_text()
    write_config(tiny_home, config.replace("max_tokens = 24", "max_tokens = 100000"))
    open_shammah_notebook(page)  # the kernel starts now, so it reads the new config

    long_cell = run_cell(page, 0, "Write a very long story")
    page.wait_for_function(STREAMED_TEXT, arg=long_cell.element_handle())
    expect(long_cell.locator(".jp-InputPrompt")).to_have_text("[*]:")
    shot(page, "lab-streaming")
    page.locator('.jp-NotebookPanel:visible [data-jp-item-name="interrupt"]').click()
    wait_done(long_cell)
    expect(long_cell.locator(".jp-OutputArea")).to_contain_text("interrupted")
    shot(page, "lab-interrupted")

    status_cell = run_cell(page, 1, "/status")
    wait_done(status_cell)
    expect(status_cell.locator(".jp-OutputArea")).to_contain_text("conversation")
    shot(page, "lab-after-interrupt")
