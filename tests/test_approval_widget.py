"""The approval widget: decisions and cancel from Python; a Lab cell that waits for a click."""

from __future__ import annotations

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
    wait_for_kernel,
    write_notebook,
)

from shammah_kernel.events import Approval, ApprovalChoice
from shammah_kernel.widgets.approval import (
    CHOICE_LABELS,
    ApprovalWidget,
    outcome_text,
    parse_decision,
)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
COMMAND = "pytest -q tests/test_approval_widget.py"
DIFF = "\n".join(
    [
        "--- a/shammah_kernel/router.py",
        "+++ b/shammah_kernel/router.py",
        "@@ -41,7 +41,8 @@ def choose_route(config: ShammahConfig, status: EngineStatus) -> Route:",
        '     if config.route == "claude":',
        "         return Route.CLAUDE",
        "-    if status.state is not EngineState.READY:",
        "-        return Route.CLAUDE if config.api_key else Route.LOCAL",
        "-    return Route.LOCAL",
        "+    if status.state is EngineState.READY:",
        "+        return Route.LOCAL",
        "+    # Still downloading or loading: Claude answers meanwhile when a key is set.",
        "+    return Route.CLAUDE if config.api_key else Route.LOCAL",
        " ",
        " ",
        " def describe_route(route: Route) -> str:",
        "",
    ]
)


def bash_widget() -> ApprovalWidget:
    return ApprovalWidget("Bash", COMMAND, suggestion="Bash(pytest *)")


def decisions(widget: ApprovalWidget) -> list[Approval]:
    heard: list[Approval] = []
    widget.on_decision(heard.append)
    return heard


def test_constructor_sets_the_traits() -> None:
    widget = bash_widget()
    assert (widget.tool, widget.description, widget.preview) == ("Bash", COMMAND, "")
    assert (widget.suggestion, widget.rule, widget.reason) == (
        "Bash(pytest *)",
        "Bash(pytest *)",
        "",
    )
    assert (widget.preview_kind, widget.state, widget.note) == ("code", "pending", "")
    assert widget.decision == {}
    assert widget.approval is None
    edit = ApprovalWidget("Edit", "Edit shammah_kernel/router.py", preview=DIFF)
    assert (edit.preview_kind, edit.preview, edit.rule) == ("diff", DIFF, "")
    assert ApprovalWidget("Write", "Write notes.md", preview="+hello\n").preview_kind == "diff"


def test_a_pattern_decision_with_an_edited_rule_fires_once() -> None:
    widget = bash_widget()
    heard = decisions(widget)
    widget.rule = "Bash(pytest -q *)"  # as the front end syncs the text input
    widget.decision = {"choice": "session_pattern", "rule": " Bash(pytest -q *) ", "reason": "x"}
    expected = Approval(ApprovalChoice.SESSION_PATTERN, rule="Bash(pytest -q *)")
    assert heard == [expected]
    assert widget.approval == expected
    assert widget.state == "decided"
    assert widget.decision == {
        "choice": "session_pattern",
        "rule": "Bash(pytest -q *)",
        "reason": "",
    }

    widget.decision = {"choice": "deny", "rule": "", "reason": "changed my mind"}
    assert heard == [expected]
    assert widget.approval == expected
    assert widget.decision["choice"] == "session_pattern", "a later click is put back"


def test_a_denial_keeps_its_reason() -> None:
    widget = bash_widget()
    heard = decisions(widget)
    widget.decision = {"choice": "deny", "rule": "Bash(pytest *)", "reason": "  add tests first "}
    assert heard == [Approval(ApprovalChoice.DENY, reason="add tests first")]
    assert not heard[0].approved


@pytest.mark.parametrize(
    ("choice", "rule"),
    [
        (ApprovalChoice.ONCE, ""),
        (ApprovalChoice.SESSION, ""),
        (ApprovalChoice.ALWAYS, ""),
        (ApprovalChoice.ALWAYS_PATTERN, "Bash(pytest *)"),
    ],
)
def test_each_approval_choice(choice: ApprovalChoice, rule: str) -> None:
    widget = bash_widget()
    heard = decisions(widget)
    widget.decision = {"choice": choice.value, "rule": "Bash(pytest *)", "reason": "unused"}
    assert heard == [Approval(choice, rule=rule)]
    assert heard[0].approved


@pytest.mark.parametrize(
    "payload",
    [
        {"choice": "maybe"},
        {"choice": "session_pattern", "rule": "   "},
        {"choice": "always_pattern"},
        {"choice": "once", "rule": 3},
        {"choice": "deny", "reason": None},
        {"choice": None},
        {"rule": "Bash(*)"},
    ],
)
def test_invalid_payloads_are_ignored_and_put_back(payload: dict[str, Any]) -> None:
    widget = bash_widget()
    heard = decisions(widget)
    widget.decision = payload
    assert (heard, widget.approval, widget.state, widget.decision) == ([], None, "pending", {})
    widget.decision = {"choice": "once"}
    assert heard == [Approval(ApprovalChoice.ONCE)]


def test_parse_decision_rejects_what_is_not_a_dict() -> None:
    assert parse_decision(["once"]) is None
    assert parse_decision("once") is None
    assert parse_decision({"choice": "once"}) == Approval(ApprovalChoice.ONCE)


def test_on_decision_after_the_decision_is_called_at_once() -> None:
    widget = bash_widget()
    widget.decision = {"choice": "always"}
    assert decisions(widget) == [Approval(ApprovalChoice.ALWAYS)]


def test_cancel_closes_without_a_decision() -> None:
    widget = bash_widget()
    heard = decisions(widget)
    assert widget.cancel("the turn was stopped")
    assert (widget.state, widget.note, widget.approval) == (
        "cancelled",
        "the turn was stopped",
        None,
    )
    widget.decision = {"choice": "once"}
    assert (heard, widget.approval, widget.decision) == ([], None, {})
    assert not widget.cancel("again")
    assert widget.note == "the turn was stopped"
    assert decisions(widget) == [], "a callback added after cancel() is never called"


def test_cancel_after_a_decision_changes_nothing() -> None:
    widget = bash_widget()
    widget.decision = {"choice": "deny", "reason": "no"}
    assert not widget.cancel("stopped")
    assert (widget.state, widget.note) == ("decided", "")
    assert widget.approval == Approval(ApprovalChoice.DENY, reason="no")


@pytest.mark.parametrize(
    ("approval", "text"),
    [
        (Approval(ApprovalChoice.ONCE), "Approved once"),
        (Approval(ApprovalChoice.SESSION), "Approved for this session"),
        (
            Approval(ApprovalChoice.SESSION_PATTERN, rule="Bash(pytest -q *)"),
            "Allowed for this session: Bash(pytest -q *)",
        ),
        (Approval(ApprovalChoice.ALWAYS), "Always allowed (this exact call)"),
        (
            Approval(ApprovalChoice.ALWAYS_PATTERN, rule="Bash(pytest *)"),
            "Always allowed: Bash(pytest *)",
        ),
        (Approval(ApprovalChoice.DENY, reason="add tests first"), "Denied: add tests first"),
        (Approval(ApprovalChoice.DENY), "Denied"),
    ],
)
def test_outcome_text(approval: Approval, text: str) -> None:
    assert outcome_text(approval) == text


def _plain(widget: ApprovalWidget) -> str:
    bundle = widget._repr_mimebundle_()
    assert bundle is not None
    assert bundle[0][WIDGET_MIME]["model_id"] == widget.model_id
    return str(bundle[0]["text/plain"])


def test_mimebundle_text_plain_lists_the_call_and_the_choices() -> None:
    widget = bash_widget()
    assert _plain(widget) == (
        f"Bash: {COMMAND}\n"
        "Rule for the pattern choices: Bash(pytest *)\n"
        "Choices: Approve once · This session · Pattern for this session · "
        "Always (this exact call) · Always (pattern) · Deny"
    )
    assert all(label in _plain(widget) for label in CHOICE_LABELS.values())
    widget.decision = {"choice": "always_pattern", "rule": "Bash(pytest -q *)"}
    assert _plain(widget) == f"Bash: {COMMAND}\nAlways allowed: Bash(pytest -q *)"

    edit = ApprovalWidget("Edit", "Edit shammah_kernel/router.py", preview=DIFF)
    assert _plain(edit).startswith(f"Edit: Edit shammah_kernel/router.py\n{DIFF}Choices: ")
    edit.cancel("the turn was stopped")
    assert (
        _plain(edit)
        == f"Edit: Edit shammah_kernel/router.py\n{DIFF}Cancelled: the turn was stopped"
    )
    assert _plain(ApprovalWidget("Read", "Read a.txt")).splitlines()[1].startswith("Choices: ")


def test_a_click_from_the_front_end_and_the_put_back_reach_the_comm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the comm handler, as a click arrives: a second view's late click is answered
    with the decision that stands, so both views show the same outcome."""
    widget = bash_widget()
    heard = decisions(widget)
    sent: list[dict[str, Any]] = []
    monkeypatch.setattr(widget, "_send", lambda msg, buffers=None: sent.append(msg))

    def click(state: dict[str, Any]) -> None:
        data = {"method": "update", "state": state, "buffer_paths": []}
        widget._handle_msg({"content": {"data": data}, "buffers": []})

    click(
        {
            "rule": "Bash(pytest -q *)",
            "decision": {"choice": "session_pattern", "rule": "Bash(pytest -q *)"},
        }
    )
    assert heard == [Approval(ApprovalChoice.SESSION_PATTERN, rule="Bash(pytest -q *)")]
    assert widget.rule == "Bash(pytest -q *)"
    updates = [m["state"] for m in sent if m["method"] == "update"]
    assert updates[-1]["state"] == "decided"

    sent.clear()
    click({"decision": {"choice": "once"}})
    updates = [m["state"] for m in sent if m["method"] == "update"]
    assert updates == [
        {"decision": {"choice": "session_pattern", "rule": "Bash(pytest -q *)", "reason": ""}}
    ]
    assert len(heard) == 1


# -- JupyterLab + Chromium ---------------------------------------------------------------------

# Cell 0 defines `ask`, which waits inside the running cell as the Shammah kernel will.
SETUP_AND_BASH = f"""\
import asyncio
from shammah_kernel.widgets.approval import ApprovalWidget

async def ask(widget):
    decided = asyncio.get_running_loop().create_future()
    widget.on_decision(decided.set_result)
    display(widget)
    while not decided.done():
        await asyncio.sleep(0.1)
    print(decided.result())
    print("typed:", repr(widget.rule), repr(widget.reason))

await ask(ApprovalWidget("Bash", {COMMAND!r}, suggestion="Bash(pytest *)"))
"""
WEBFETCH = """\
await ask(ApprovalWidget(
    "WebFetch",
    "GET https://docs.python.org/3/library/asyncio-task.html",
    suggestion="WebFetch(domain:docs.python.org)",
))
"""
EDIT = f"""\
edit = ApprovalWidget("Edit", "Edit shammah_kernel/router.py (+4 -3)", preview={DIFF!r})
edit
"""
SCRIPT = """\
ApprovalWidget(
    "Bash",
    "Run a 3-line shell script in /work/main",
    preview="cmake -S . -B build\\ncmake --build build -j2\\n"
    "ctest --test-dir build --output-on-failure",
    suggestion="Bash(cmake *)",
)
"""
CANCEL = 'edit.cancel("the turn was stopped")'
REASON = "not now, add tests first"  # "dd" deletes a cell, were the keys to reach Lab's shortcuts


def _shot(page: Any, card: Any, name: str) -> None:
    shot(page, f"approval-{name}", card)


@browser_test(timeout=400)
def test_a_running_cell_waits_for_the_click(tmp_path: Path) -> None:
    sources = [SETUP_AND_BASH, WEBFETCH, EDIT, SCRIPT, CANCEL]
    notebook = write_notebook(tmp_path, "approval.ipynb", sources)
    pattern = Approval(ApprovalChoice.SESSION_PATTERN, rule="Bash(pytest -q *)")
    denial = Approval(ApprovalChoice.DENY, reason=REASON)

    with lab_page(tmp_path, notebook, viewport=(1100, 900)) as page:
        wait_for_kernel(page, "Python 3 (ipykernel)")
        cells = page.locator(".jp-Notebook .jp-Cell")

        # A pattern for this session, its rule edited key by key, while the cell waits.
        cell = run_cell(page, 0)
        card = cell.locator(".shammah-approval")
        expect(card).to_have_attribute("data-state", "pending")
        expect(cell.locator(".jp-InputPrompt")).to_contain_text("[*]:")
        expect(card.locator(".shammah-approval-preview")).to_be_hidden()
        rule = card.locator(".shammah-approval-rule")
        expect(rule).to_have_value("Bash(pytest *)")
        _shot(page, card, "bash-pending")
        rule.fill("")
        for_session = card.get_by_role("button", name="Pattern for this session")
        expect(for_session).to_be_disabled()  # no rule, no pattern
        rule.press_sequentially("Bash(pytest -q *)")
        expect(for_session).to_be_enabled()
        for_session.click()
        expect(card).to_have_attribute("data-state", "decided")
        outcome = card.locator(".shammah-approval-outcome")
        expect(outcome).to_have_text("Allowed for this session: Bash(pytest -q *)")
        # The controls are hidden now, so no longer in the accessibility tree.
        expect(card.locator("button[data-choice=session_pattern]")).to_be_disabled()
        stdout = cell.locator('[data-mime-type="application/vnd.jupyter.stdout"]')
        # The typed rule reached the synced trait too, in the same message as the decision.
        expect(stdout).to_have_text(f"{pattern!r}\ntyped: 'Bash(pytest -q *)' ''")
        expect(cell.locator(".jp-InputPrompt")).to_contain_text("[1]:")
        _shot(page, card, "bash-decided")

        # Deny, with a reason typed key by key.
        cell = run_cell(page, 1)
        card = cell.locator(".shammah-approval")
        expect(card).to_have_attribute("data-state", "pending")
        reason = card.locator(".shammah-approval-reason")
        reason.press_sequentially(REASON)
        expect(cells).to_have_count(5)  # the keys stayed in the input
        _shot(page, card, "webfetch-reason")
        card.get_by_role("button", name="Deny").click()
        expect(card.locator(".shammah-approval-outcome")).to_have_text(f"Denied: {REASON}")
        expect(card.locator("button:enabled")).to_have_count(0)
        stdout = cell.locator('[data-mime-type="application/vnd.jupyter.stdout"]')
        typed = f"typed: 'WebFetch(domain:docs.python.org)' '{REASON}'"
        expect(stdout).to_have_text(f"{denial!r}\n{typed}")
        expect(cell.locator(".jp-InputPrompt")).to_contain_text("[2]:")
        _shot(page, card, "webfetch-denied")

        # An Edit's diff, reached by keyboard; then cancelled from Python.
        cell = run_cell(page, 2)
        card = cell.locator(".shammah-approval")
        expect(card.locator(".shammah-approval-add")).to_have_count(4)
        expect(card.locator(".shammah-approval-del")).to_have_count(3)
        expect(card.locator(".shammah-approval-hunk")).to_have_count(1)
        card.locator(".shammah-approval-rule").focus()
        page.keyboard.press("Tab")
        expect(card.get_by_role("button", name="Pattern for this session")).to_be_disabled()
        expect(card.locator(".shammah-approval-reason")).to_be_focused()  # disabled skipped
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Shift+Tab")
        expect(card.get_by_role("button", name="Always (this exact call)")).to_be_focused()
        page.mouse.move(0, 0)
        _shot(page, card, "edit-diff")
        script = run_cell(page, 3).locator(".shammah-approval")
        expect(script.locator(".shammah-approval-code")).to_contain_text("ctest --test-dir")
        page.mouse.move(0, 0)
        _shot(page, script, "bash-script")
        set_theme(page, "JupyterLab Dark")
        page.wait_for_timeout(300)  # let the theme's stylesheet settle before the picture
        _shot(page, card, "edit-diff-dark")
        _shot(page, cells.nth(0).locator(".shammah-approval"), "bash-decided-dark")
        _shot(page, script, "bash-script-dark")

        run_cell(page, 4)
        expect(card).to_have_attribute("data-state", "cancelled")
        expect(card.locator(".shammah-approval-outcome")).to_have_text(
            "Cancelled: the turn was stopped"
        )
        expect(card.locator("button:enabled")).to_have_count(0)
        _shot(page, card, "edit-cancelled-dark")
