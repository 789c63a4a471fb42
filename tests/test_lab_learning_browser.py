"""The learning loop in JupyterLab + Chromium on the Shammah kernel (tiny model): the feedback
card under an answer, a better answer proposed by Claude, /train's live card, the adapter named
under the next answer."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from claude_server import ClaudeServer
from conftest import write_config
from lab_harness import (
    SHAMMAH,
    browser_test,
    expect,
    lab_page,
    run_cell,
    set_theme,
    shot,
    wait_done,
    wait_for_kernel,
    write_notebook,
)

PROPOSAL = "Use sorted(values, reverse=True)."
CONFIG = """
[model]
id = "{model}"
max_tokens = 12
temperature = 0.0

[sampling]
claude_share = 0.0

[lora]
rank = 4
alpha = 8.0
batch_size = 2
epochs = 2
num_layers = 2
auto_train = false
"""


@pytest.fixture
def claude(
    shammah_home: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ClaudeServer]:
    with ClaudeServer(reply=PROPOSAL) as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        write_config(shammah_home, CONFIG.format(model=tiny_model))
        yield server


@browser_test(timeout=400)
def test_rate_an_answer_train_and_see_the_adapter_answer(
    claude: ClaudeServer, shammah_home: Path, tmp_path: Path
) -> None:
    cells = ["/status", "How do I sort a list backwards?", "/train", "How do I sort a list?"]
    notebook = write_notebook(tmp_path, "learn.ipynb", cells, SHAMMAH)
    with lab_page(tmp_path, notebook, viewport=(1100, 1000)) as page:
        wait_for_kernel(page, "Shammah")
        status = run_cell(page, 0).locator(".shammah-status")
        expect(status).to_have_attribute("data-state", "ready", timeout=120_000)

        answer = run_cell(page, 1)
        wait_done(answer)
        card = answer.locator(".shammah-feedback")
        expect(card.locator("button[data-rating]")).to_have_count(3)
        card.locator('button[data-rating="critical"]').click()
        # Typed key by key: notebook shortcuts (d d deletes a cell, a and b add one) stay out.
        card.locator(".shammah-feedback-note").press_sequentially("odd: add a b, use reverse")
        expect(page.locator(".jp-NotebookPanel:visible .jp-Cell")).to_have_count(len(cells))
        card.locator(".shammah-feedback-propose").click()
        better = card.locator("textarea.shammah-feedback-better")
        expect(better).to_have_value(PROPOSAL)
        card.locator(".shammah-feedback-save").click()
        stored = card.locator(".shammah-feedback-stored")
        expect(stored).to_contain_text("critical (10x), learning the better answer")
        expect(card.locator(".shammah-feedback-buffer")).to_contain_text("Training buffer: 1")
        page.mouse.move(0, 0)
        shot(page, "learning-feedback-saved", card)

        with sqlite3.connect(shammah_home / "examples.db") as db:
            rows = db.execute("SELECT answer, weight, source FROM examples").fetchall()
        assert rows == [(PROPOSAL, 10.0, "feedback:critical")]  # it replaced the 1x copy

        train = run_cell(page, 2)
        wait_done(train)
        expect(train.locator(".jp-RenderedMarkdown")).to_contain_text("Training adapter")
        training = train.locator(".shammah-status")
        expect(training).to_contain_text("answers now", timeout=120_000)
        expect(training).to_contain_text("Adapter: adapter-1")
        shot(page, "learning-train-done", training)

        again = run_cell(page, 3)
        wait_done(again)
        expect(again.locator(".jp-RenderedMarkdown").last).to_contain_text("adapter adapter-1")
        set_theme(page, "JupyterLab Dark")
        page.wait_for_timeout(300)
        shot(page, "learning-train-done-dark", training)
