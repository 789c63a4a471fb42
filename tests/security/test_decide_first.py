"""Decide first: a refused call's answer depends on its arguments and the rules, never on a file.

Before the fix, Edit's diff preview ran before the decision, so "old_string was not found" told
a headless model, call by call, whether a guess was in a denied file; Write's description said
Create or Overwrite. Each test makes many calls and checks that every answer is the same.
"""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from gate_turns import Answering, rules_gate

from shammah_kernel.consent import ConsentGate
from shammah_kernel.events import (
    Approval,
    ApprovalChoice,
    Message,
    ToolCall,
)
from shammah_kernel.permissions import Decision
from shammah_kernel.turn import TurnHandle

gate = rules_gate
SECRET = "API_TOKEN=hunter2-correct-horse\n"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "secret.txt").write_text(SECRET)
    (tmp_path / "outside.txt").write_text(SECRET)
    return folder


def call(gate: ConsentGate, name: str, handle: TurnHandle | None = None, **args: object) -> Message:
    return gate.run(ToolCall("c1", name, args), handle or Answering())


def guesses() -> list[str]:
    """Prefixes an attacker would try, right and wrong: every next character of the secret."""
    tried = [SECRET[:n] for n in range(1, len(SECRET))]
    tried += [SECRET[:5] + c for c in string.ascii_letters + string.digits + "=-_"]
    return tried + ["not in any file", "hunter2", "\n"]


@pytest.mark.parametrize(
    ("path", "rules"),
    [
        ("secret.txt", [(Decision.DENY, "Read(secret.txt)")]),  # headless: asked, denied
        ("secret.txt", [(Decision.DENY, "Read(secret.txt)"), (Decision.ALLOW, "Edit(./**)")]),
        ("../outside.txt", []),  # outside the workspace: asked, nobody there
    ],
)
def test_edit_old_string_guesses_learn_nothing(
    workspace: Path, path: str, rules: list[tuple[Decision, str]]
) -> None:
    gated = gate(workspace, *rules)
    answers = set()
    for guess in guesses():
        message = call(gated, "Edit", path=path, old_string=guess, new_string="X")
        answers.add((message.content, message.is_error))
    assert len(answers) == 1, answers  # one fixed answer, whatever the file holds
    ((content, is_error),) = answers
    assert is_error and "not found" not in content and "hunter2" not in content
    assert (workspace / "secret.txt").read_text() == SECRET
    assert (workspace.parent / "outside.txt").read_text() == SECRET


def test_a_preview_is_made_only_for_a_call_shown_to_the_user(workspace: Path) -> None:
    handle = Answering(lambda event: Approval(ApprovalChoice.DENY))
    gated = gate(workspace)
    message = call(gated, "Edit", handle, path="secret.txt", old_string="nope", new_string="X")
    (proposed,) = handle.proposed  # the user sees that the call would fail; the model does not
    assert "old_string was not found" in proposed.preview
    assert message.content == "The user denied this call."


def test_write_says_nothing_of_whether_a_file_exists(workspace: Path) -> None:
    gated = gate(workspace)
    (workspace / "exists.txt").write_text("x\n")
    answers, descriptions = set(), set()
    for name in ("exists.txt", "absent.txt", "secret.txt", "nowhere/deep.txt"):
        handle = Answering()
        message = call(gated, "Write", handle, path=name, content="y\n")
        answers.add(message.content.replace(name, "NAME"))
        (proposed,) = handle.proposed
        descriptions.add(proposed.description.replace(name, "NAME"))
    assert len(descriptions) == 1 and "Create" not in descriptions.pop()
    suggestions = {a.replace("nowhere/**", "./**") for a in answers}
    assert len(suggestions) == 1  # the headless answer names a rule, from the path alone
    assert not (workspace / "absent.txt").exists()


@pytest.mark.parametrize("tool", ["Read", "Grep", "Edit", "Write"])
def test_refused_calls_outside_the_workspace_are_alike_for_files_that_are_and_are_not(
    workspace: Path, tool: str
) -> None:
    gated = gate(workspace)
    (workspace.parent / "folder").mkdir()
    extra = {"Grep": {"pattern": "TOKEN"}, "Edit": {"old_string": "A", "new_string": "B"}}
    extra["Write"] = {"content": "z\n"}
    answers = set()
    for name in ("outside.txt", "missing.txt", "folder"):
        path = str(workspace.parent / name)
        message = call(gated, tool, **{"path": path, **extra.get(tool, {})})
        answers.add(message.content.replace(name, "NAME"))
    assert len(answers) == 1, answers


def test_a_nul_byte_in_a_path_is_one_line_to_the_model_and_asks_no_one(workspace: Path) -> None:
    gated = gate(workspace)
    for tool in ("Read", "Edit", "Write", "Grep", "Glob"):
        args = {"path": "a\0b", "old_string": "x", "new_string": "y", "content": "", "pattern": "x"}
        wanted = {"Read": ["path"], "Grep": ["path", "pattern"], "Glob": ["path", "pattern"]}
        keys = wanted.get(tool, ["path", "content"] if tool == "Write" else list(args)[:3])
        handle = Answering(lambda event: pytest.fail("a malformed call asks no one"))
        message = call(gated, tool, handle, **{k: args[k] for k in keys})
        assert message.is_error and "\n" not in message.content.strip()
