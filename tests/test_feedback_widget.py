"""The feedback widget: saves, refusals, proposals on their own thread, and the buffer line."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from lab_harness import (
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

from shammah_kernel.feedback import Rating
from shammah_kernel.widgets.feedback import (
    PLAIN_TEXT,
    FeedbackWidget,
    check_form,
    parse_request,
)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WEIGHTS = {Rating.CRITICAL: 10.0, Rating.MEDIUM: 3.0, Rating.GOOD: 1.0}
BETTER = "Use pathlib:\n\n    Path('notes.md').read_text()\n"
WAIT_S = 10


class Store:
    """The caller's save callback: records each call, numbers the examples, or fails."""

    def __init__(self, fail: str = "") -> None:
        self.calls: list[tuple[Rating, str, str]] = []
        self.fail = fail

    def __call__(self, rating: Rating, note: str, better_answer: str) -> str:
        if self.fail:
            raise RuntimeError(self.fail)
        self.calls.append((rating, note, better_answer))
        return f"Saved example #{len(self.calls)}: {rating.value} ({WEIGHTS[rating]:g}x)"


class Proposer:
    """A propose callback that waits until released, so a test sees the card while it runs."""

    def __init__(self, answer: str = BETTER, fail: str = "") -> None:
        self.answer, self.fail = answer, fail
        self.started, self.release = threading.Event(), threading.Event()
        self.threads: list[threading.Thread] = []
        self.notes: list[str] = []

    def __call__(self, note: str) -> str:
        self.threads.append(threading.current_thread())
        self.notes.append(note)
        self.started.set()
        assert self.release.wait(WAIT_S)
        if self.fail:
            raise RuntimeError(self.fail)
        return self.answer


def widget_with(store: Store, proposer: Proposer | None = None, buffer: str = "") -> FeedbackWidget:
    return FeedbackWidget(
        weights=WEIGHTS, save=store, propose=proposer, proposer="Claude", buffer=buffer
    )


def custom(widget: FeedbackWidget, content: dict[str, Any]) -> None:
    """A custom message from the front end, through the comm handler as a click sends it."""
    data = {"method": "custom", "content": content}
    widget._handle_msg({"content": {"data": data}, "buffers": []})


def click(widget: FeedbackWidget, kind: str, rating: str, note: str = "", better: str = "") -> None:
    custom(widget, {"kind": kind, "rating": rating, "note": note, "better_answer": better})


def wait_until_proposed(widget: FeedbackWidget, proposer: Proposer) -> None:
    proposer.release.set()
    for thread in proposer.threads:
        thread.join(WAIT_S)
    assert not widget.proposing


def test_constructor_sets_the_traits() -> None:
    widget = widget_with(Store(), Proposer(), buffer="Training buffer: 0 of 10")
    assert widget.weights == {"critical": 10.0, "medium": 3.0, "good": 1.0}
    assert (widget.proposer, widget.can_propose, widget.proposing) == ("Claude", True, False)
    assert (widget.rating, widget.note, widget.better_answer) == ("", "", "")
    assert (widget.stored, widget.saved, widget.error) == ("", {}, "")
    assert widget.buffer == "Training buffer: 0 of 10"
    plain = FeedbackWidget(weights={Rating.GOOD: 2}, save=Store())
    assert (plain.can_propose, plain.proposer, plain.weights) == (False, "", {"good": 2.0})


def test_good_is_saved_without_a_better_answer() -> None:
    store = Store()
    widget = widget_with(store)
    click(widget, "save", "good", note="  clear and short ", better="typed, then rated good")
    assert store.calls == [(Rating.GOOD, "clear and short", "")]
    assert widget.stored == "Saved example #1: good (1x)"
    assert widget.error == ""
    assert (widget.rating, widget.note) == ("good", "  clear and short ")
    assert widget.saved == {
        "rating": "good",
        "note": "  clear and short ",
        "better_answer": "typed, then rated good",
    }


def test_critical_is_saved_with_its_better_answer_and_a_new_rating_replaces_it() -> None:
    store = Store()
    widget = widget_with(store)
    click(widget, "save", "critical", note="never shell out", better=f"\n{BETTER}\n")
    assert store.calls == [(Rating.CRITICAL, "never shell out", BETTER.strip())]
    assert widget.stored == "Saved example #1: critical (10x)"
    assert widget.better_answer == f"\n{BETTER}\n"  # the form as typed, for every view

    click(widget, "save", "medium", note="works, but", better=BETTER)
    assert store.calls[-1] == (Rating.MEDIUM, "works, but", BETTER.strip())
    assert widget.stored == "Saved example #2: medium (3x)", "the latest save is shown"
    assert widget.saved["rating"] == "medium"


@pytest.mark.parametrize(
    ("rating", "better", "error"),
    [
        ("critical", "", "A critical rating needs the better answer"),
        ("medium", "  \n ", "A medium rating needs the better answer"),
        ("", BETTER, "Choose a rating first"),
        ("excellent", BETTER, "Choose a rating first"),
    ],
)
def test_an_incomplete_form_is_refused_in_python(rating: str, better: str, error: str) -> None:
    store = Store()
    widget = widget_with(store)
    click(widget, "save", rating, better=better)
    assert store.calls == []
    assert widget.error.startswith(error)
    assert (widget.stored, widget.saved) == ("", {})


def test_check_form() -> None:
    feedback = check_form("good", " ok ", BETTER)
    assert (feedback.rating, feedback.note, feedback.better_answer) == (Rating.GOOD, "ok", "")
    with pytest.raises(ValueError, match="critical rating needs the better answer"):
        check_form("critical", "", " ")


def test_a_save_error_is_shown_and_nothing_is_marked_saved() -> None:
    store = Store(fail="database is locked")
    widget = widget_with(store)
    click(widget, "save", "good")
    assert widget.error == "database is locked"
    assert (widget.stored, widget.saved) == ("", {})

    store.fail = ""
    click(widget, "save", "good", note="again")
    assert (widget.error, widget.stored) == ("", "Saved example #1: good (1x)")
    store.fail = "disk full"
    click(widget, "save", "critical", better=BETTER)
    assert widget.error == "disk full"
    assert widget.stored == "Saved example #1: good (1x)", "the earlier example still stands"
    assert widget.saved["rating"] == "good"


def test_propose_runs_on_a_background_thread_and_fills_the_better_answer() -> None:
    store, proposer = Store(), Proposer(answer=f"  {BETTER}  ")
    widget = widget_with(store, proposer)
    click(widget, "propose", "critical", note=" use pathlib ", better="my draft")
    assert widget.proposing
    assert proposer.started.wait(WAIT_S)
    assert (widget.rating, widget.note, widget.better_answer) == (
        "critical",
        " use pathlib ",
        "my draft",
    )
    (thread,) = proposer.threads
    assert thread is not threading.current_thread()
    assert (thread.name, thread.daemon) == ("shammah-propose", True)
    assert proposer.notes == ["use pathlib"]

    # Clicks that cross the proposal: a second Propose is dropped, a Save is refused.
    click(widget, "propose", "critical", note="use pathlib")
    click(widget, "save", "critical", note="use pathlib", better="my draft")
    assert len(proposer.threads) == 1
    assert store.calls == []
    assert widget.error.startswith("A better answer is being proposed")

    wait_until_proposed(widget, proposer)
    assert widget.better_answer == BETTER.strip()
    assert widget.error == ""
    click(widget, "save", "critical", note="use pathlib", better=widget.better_answer)
    assert store.calls == [(Rating.CRITICAL, "use pathlib", BETTER.strip())]


def test_a_proposal_error_is_shown() -> None:
    proposer = Proposer(fail="Claude answered 529: overloaded")
    widget = widget_with(Store(), proposer)
    click(widget, "propose", "medium", better="kept")
    wait_until_proposed(widget, proposer)
    assert widget.error == "Could not propose a better answer: Claude answered 529: overloaded"
    assert widget.better_answer == "kept"


def test_propose_without_a_callback_is_refused() -> None:
    widget = widget_with(Store())
    click(widget, "propose", "critical")
    assert (widget.proposing, widget.can_propose) == (False, False)
    assert widget.error.startswith("No model can propose")


@pytest.mark.parametrize(
    "content",
    [
        {"kind": "delete"},
        {"rating": "good"},
        {"kind": "save", "rating": 1},
        {"kind": "save", "rating": "good", "note": None},
    ],
)
def test_invalid_messages_are_ignored(content: dict[str, Any]) -> None:
    store = Store()
    widget = widget_with(store)
    custom(widget, content)
    assert (store.calls, widget.rating, widget.error) == ([], "", "")
    assert parse_request(["save"]) is None
    assert parse_request({"kind": "save"}) == (
        "save",
        {"rating": "", "note": "", "better_answer": ""},
    )


def test_the_outcome_reaches_the_front_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """The form applied from the message and the stored line go back as one update."""
    widget = widget_with(Store())
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(widget, "_send", lambda msg, buffers=None: sent.append(msg))
    click(widget, "save", "good", note="nice")
    updates = [m["state"] for m in sent if m["method"] == "update"]
    assert updates[0] == {"rating": "good", "note": "nice"}
    assert updates[-1]["stored"] == "Saved example #1: good (1x)"
    assert updates[-1]["saved"] == {"rating": "good", "note": "nice", "better_answer": ""}


def test_set_buffer_from_another_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    widget = widget_with(Store())
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(widget, "_send", lambda msg, buffers=None: sent.append(msg))
    text = "Training buffer: 3 of 10 new examples before training starts"
    thread = threading.Thread(target=widget.set_buffer, args=(text,))
    thread.start()
    thread.join(WAIT_S)
    assert widget.buffer == text
    assert {"method": "update", "state": {"buffer": text}, "buffer_paths": []} in sent


def test_mimebundle_text_plain_names_the_commands() -> None:
    widget = widget_with(Store())
    bundle = widget._repr_mimebundle_()
    assert bundle is not None
    assert bundle[0][WIDGET_MIME]["model_id"] == widget.model_id
    assert bundle[0]["text/plain"] == PLAIN_TEXT
    assert PLAIN_TEXT == (
        "Rate this answer: /critical, /medium or /good [note]; "
        "put a better answer on the lines after the command."
    )


@pytest.mark.skipif(not shutil.which("node"), reason="no node to check the ESM file")
def test_the_esm_file_parses() -> None:
    esm = Path(__file__).parents[1] / "shammah_kernel" / "widgets" / "feedback.js"
    result = subprocess.run(
        ["node", "--check", "--input-type=module"],
        input=esm.read_text(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# -- JupyterLab + Chromium ---------------------------------------------------------------------

# Cell 0: a card whose proposal waits for cell 1; cell 3 a card whose store fails.
SETUP = """\
import threading
from shammah_kernel.feedback import Rating
from shammah_kernel.widgets.feedback import FeedbackWidget

WEIGHTS = {Rating.CRITICAL: 10.0, Rating.MEDIUM: 3.0, Rating.GOOD: 1.0}
stored = []
release = threading.Event()

def save(rating, note, better):
    stored.append((rating.value, note, better))
    return f"Saved example #{len(stored)}: {rating.value} ({WEIGHTS[rating]:g}x) {note}"

def propose(note):
    release.wait(120)
    return "Use pathlib:\\n    Path('notes.md').read_text()"

card = FeedbackWidget(weights=WEIGHTS, save=save, propose=propose, proposer="Claude")
card
"""
RELEASE = "release.set()"
BUFFER = """\
card.set_buffer("Training buffer: 1 of 10 new examples before training starts")
for example in stored:
    print(example)
"""
FAILING = """\
def locked(rating, note, better):
    raise RuntimeError("database is locked")

FeedbackWidget(weights=WEIGHTS, save=locked)
"""
PROPOSAL = "Use pathlib:\n    Path('notes.md').read_text()"
NOTE = "prefer pathlib"  # no "dd" or other Lab command keys, were they to escape the input


@browser_test(timeout=400)
def test_rate_propose_edit_and_save_in_lab(tmp_path: Path) -> None:
    notebook = write_notebook(tmp_path, "feedback.ipynb", [SETUP, RELEASE, BUFFER, FAILING])
    with lab_page(tmp_path, notebook, viewport=(1100, 900)) as page:
        wait_for_kernel(page, "Python 3 (ipykernel)")
        cell = run_cell(page, 0)
        card = cell.locator(".shammah-feedback")
        labels = ["Critical (10x)", "Medium (3x)", "Good (1x)"]
        expect(card.locator("button[data-rating]")).to_have_text(labels)
        save = card.locator(".shammah-feedback-save")
        better = card.locator("textarea.shammah-feedback-better")
        expect(save).to_be_disabled()
        expect(better).to_be_hidden()
        shot(page, "feedback-new", card)

        # Critical: a better answer is needed; Claude proposes one, the user edits it.
        card.locator('button[data-rating="critical"]').click()
        expect(card).to_have_attribute("data-rating", "critical")
        expect(better).to_be_visible()
        expect(save).to_be_disabled()
        card.locator(".shammah-feedback-note").press_sequentially(NOTE)
        card.locator(".shammah-feedback-propose").click()
        busy = card.locator(".shammah-feedback-busy")
        expect(busy).to_have_text("Proposing with Claude…")
        expect(card.locator(".shammah-feedback-propose")).to_be_disabled()
        expect(save).to_be_disabled()
        shot(page, "feedback-proposing", card)
        wait_done(run_cell(page, 1))
        expect(better).to_have_value(PROPOSAL)
        expect(busy).to_be_hidden()
        better.fill(PROPOSAL + "  # edited")
        expect(save).to_be_enabled()
        save.click()
        stored = card.locator(".shammah-feedback-stored")
        expect(stored).to_have_text(f"Saved example #1: critical (10x) {NOTE}")
        expect(card).to_have_attribute("data-state", "saved")
        expect(save).to_have_text("Saved")
        expect(save).to_be_disabled()

        output = run_cell(page, 2)
        expect(card.locator(".shammah-feedback-buffer")).to_have_text(
            "Training buffer: 1 of 10 new examples before training starts"
        )
        stdout = output.locator('[data-mime-type="application/vnd.jupyter.stdout"]')
        expect(stdout).to_have_text(f"{('critical', NOTE, PROPOSAL + '  # edited')!r}")
        page.mouse.move(0, 0)
        shot(page, "feedback-saved-critical", card)

        # Changed to good: no better answer; saving again replaces the example.
        card.locator('button[data-rating="good"]').click()
        expect(better).to_be_hidden()
        expect(save).to_have_text("Update")
        save.click()
        expect(stored).to_have_text(f"Saved example #2: good (1x) {NOTE}")

        failing = run_cell(page, 3).locator(".shammah-feedback")
        expect(failing.locator(".shammah-feedback-propose")).to_be_hidden()
        failing.locator('button[data-rating="medium"]').click()
        expect(failing.locator(".shammah-feedback-propose")).to_be_hidden()
        failing.locator("textarea.shammah-feedback-better").fill("A better answer")
        failing.locator(".shammah-feedback-save").click()
        expect(failing.locator(".shammah-feedback-error")).to_have_text("database is locked")
        expect(failing.locator(".shammah-feedback-stored")).to_be_hidden()
        page.mouse.move(0, 0)
        shot(page, "feedback-error", failing)
        set_theme(page, "JupyterLab Dark")
        page.wait_for_timeout(300)  # let the theme's stylesheet settle before the picture
        shot(page, "feedback-saved-good-dark", card)
        shot(page, "feedback-error-dark", failing)
