"""Secrets stay out of tools: no secret variable in a tool's environment, no known secret value in
tool output, stored examples, saved conversations or Claude's error lines."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from claude_server import Behavior, ClaudeServer

from shammah_kernel import secrets
from shammah_kernel.claude_backend import ClaudeBackend
from shammah_kernel.conversation import Conversation
from shammah_kernel.errors import ClaudeError
from shammah_kernel.events import GenerationOptions, Message, Role, ToolCall, Turn
from shammah_kernel.secrets import REMOVED, StreamScrubber, scrub, tool_environment
from shammah_kernel.store import MIGRATIONS, ExampleStore
from shammah_kernel.tools import ToolContext, run_tool

KEY = "sk-ant-api03-FAKEfakeFAKE-0123456789abcdef"
HF = "hf_FakeHuggingFaceToken0123"
CONFIG_KEY = "sk-ant-from-config-0123456789"
SECRET_NAMES = (
    "ANTHROPIC_API_KEY", "OPENAI_API_KEY", "HF_TOKEN", "GITHUB_TOKEN", "my_service_api_key",
    "DB_PASSWORD", "DB_PASSWORD_FILE", "CLIENT_SECRET", "CLIENT_SECRET_ID", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "aws_profile", "SSH_AUTH_SOCK", "Slack_Token",
)  # fmt: skip
PLAIN_NAMES = ("PATH", "HOME", "LANG", "MAX_TOKENS", "TOKENIZERS_PARALLELISM", "KEYBOARD")


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(secrets, "_registered", set())  # registrations of other tests
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("HF_TOKEN", HF)
    yield


def bash(command: str, workspace: Path, **context: object) -> tuple[str, str]:
    """(the result the model sees, what streamed to the cell) of the real Bash tool."""
    shown: list[str] = []
    ctx = ToolContext(workspace, on_output=shown.append, **context)  # type: ignore[arg-type]
    result = run_tool(ToolCall("c1", "Bash", {"command": command}), ctx)
    return result.content, "".join(shown)


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_variables_are_removed_from_tool_environments(name: str) -> None:
    env = tool_environment({name: "value-of-the-secret", **{n: "kept" for n in PLAIN_NAMES}})
    assert name not in env
    assert all(env[n] == "kept" for n in PLAIN_NAMES)


def test_pass_env_keeps_a_named_variable() -> None:
    env = tool_environment({"HF_TOKEN": HF, "GITHUB_TOKEN": "ghp_x" * 4}, pass_env=["HF_TOKEN"])
    assert env == {"HF_TOKEN": HF}


@pytest.mark.parametrize(
    "command",
    [
        "echo $ANTHROPIC_API_KEY",
        "echo ${HF_TOKEN}",
        "env",
        "printenv ANTHROPIC_API_KEY",
        "python3 -c 'import os; print(os.environ.get(\"ANTHROPIC_API_KEY\"))'",
    ],
)
def test_bash_never_sees_the_key(command: str, tmp_path: Path) -> None:
    result, streamed = bash(command, tmp_path)
    for text in (result, streamed):
        assert KEY not in text and HF not in text


@pytest.mark.parametrize(
    "command",
    [
        f"echo {KEY}",  # the model knows the value (a file, a page): it is still scrubbed
        f"echo {KEY} 1>&2",
        f"printf '%s' '{KEY[:10]}'; sleep 0.3; printf '%s\\n' '{KEY[10:]}'",  # split across reads
        f"echo {HF}{HF}",
    ],
)
def test_known_secret_values_are_scrubbed_from_bash_output(command: str, tmp_path: Path) -> None:
    result, streamed = bash(command, tmp_path)
    for text in (result, streamed):
        assert KEY not in text and HF not in text
        assert REMOVED in text


def test_pass_env_variables_reach_the_command_but_not_the_output(tmp_path: Path) -> None:
    env = tool_environment(os.environ, pass_env=["HF_TOKEN"])
    result, _ = bash('test "$HF_TOKEN" && echo present; echo $HF_TOKEN', tmp_path, env=env)
    assert "present" in result and HF not in result


def test_a_registered_config_key_is_scrubbed_from_every_tool_result(tmp_path: Path) -> None:
    secrets.register_secret(CONFIG_KEY)
    secrets.register_secret("short")  # too short to scrub: ordinary words stay
    (tmp_path / "notes.txt").write_text(f"the key is {CONFIG_KEY}; short stays\n")
    result = run_tool(ToolCall("c1", "Read", {"path": "notes.txt"}), ToolContext(tmp_path))
    assert CONFIG_KEY not in result.content and "short stays" in result.content


def test_a_secret_split_at_any_point_of_a_stream_is_scrubbed() -> None:
    text = f"before {KEY} middle {KEY} after"
    for cut in range(1, len(text)):
        scrubber = StreamScrubber((KEY,))
        out = scrubber.feed(text[:cut]) + scrubber.feed(text[cut:]) + scrubber.finish()
        assert out == f"before {REMOVED} middle {REMOVED} after"


def test_ordinary_output_is_not_held_back_while_secrets_are_known(tmp_path: Path) -> None:
    scrubber = StreamScrubber((KEY,))
    assert scrubber.feed("step 1 done\n") == "step 1 done\n"
    assert scrubber.feed("token: sk-ant") == "token: "  # could begin the key: waits
    assert scrubber.feed("-api03-X") + scrubber.finish() == "sk-ant-api03-X"


def test_stored_examples_are_scrubbed_when_written(shammah_home: Path) -> None:
    store = ExampleStore(shammah_home / "examples.db")
    context = [Message(Role.USER, "run it"), Message(Role.TOOL, f"output {KEY}")]
    store.add(context, f"the key is {KEY}", source="rated", rejected=HF, note=KEY)
    store.close()
    raw = (shammah_home / "examples.db").read_bytes()
    db = sqlite3.connect(shammah_home / "examples.db")
    rows = repr(db.execute("SELECT * FROM examples").fetchall())
    db.close()
    assert KEY not in rows and HF not in rows and REMOVED in rows
    assert KEY.encode() not in raw


def test_a_migration_scrubs_rows_stored_before_scrubbing(shammah_home: Path) -> None:
    path = shammah_home / "examples.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    name, sql = MIGRATIONS[0]
    db.execute(str(sql))
    db.execute("INSERT INTO migrations VALUES (?, '2025-01-01')", (name,))
    context = json.dumps([{"role": "tool", "content": f"env: ANTHROPIC_API_KEY={KEY}"}])
    db.execute(
        "INSERT INTO examples (created_at, messages, answer, rejected, weight, note, source)"
        " VALUES ('2025-01-01', ?, ?, ?, 1.0, ?, 'rated')",
        (context, f"it is {KEY}", HF, "note"),
    )
    db.close()
    store = ExampleStore(path)
    (example,) = store.examples()
    store.close()
    db = sqlite3.connect(path)
    rows = repr(db.execute("SELECT * FROM examples").fetchall())
    applied = [row[0] for row in db.execute("SELECT name FROM migrations")]
    db.close()
    assert KEY not in rows and HF not in rows
    assert example.answer == f"it is {REMOVED}" and example.note == "note"
    assert "0002_scrub_secrets" in applied


def test_a_secret_registered_later_is_scrubbed_when_examples_are_read(shammah_home: Path) -> None:
    store = ExampleStore(shammah_home / "examples.db")
    store.add([Message(Role.USER, f"q {CONFIG_KEY}")], f"a {CONFIG_KEY}", source="rated")
    secrets.register_secret(CONFIG_KEY)
    (example,) = store.examples()
    exported = shammah_home / "export.jsonl"
    store.export_jsonl(exported)
    store.close()
    assert CONFIG_KEY not in repr(example) and CONFIG_KEY not in exported.read_text()


def test_saved_conversations_are_scrubbed(tmp_path: Path) -> None:
    call = ToolCall("c1", "Bash", {"command": f"curl -H 'x-api-key: {KEY}' https://x"})
    steps = (
        Message(Role.ASSISTANT, "", tool_calls=(call,)),
        Message(Role.TOOL, f"ANTHROPIC_API_KEY={KEY}\nHF_TOKEN={HF}", tool_call_id="c1"),
    )
    conversation = Conversation()
    conversation.append(Turn(f"my key is {KEY}", f"noted: {KEY}", None, False, "m", steps))
    path = tmp_path / "chat.json"
    conversation.save(path, model="m")
    text = path.read_text(encoding="utf-8")
    assert KEY not in text and HF not in text and REMOVED in text
    assert Conversation().restore(path) == 1


@pytest.mark.parametrize(
    "leak",
    [
        KEY,
        KEY[3:11],  # any 8 characters of the key in a row
        KEY[-8:],
        KEY[12:30],
        f"{KEY[:20]}\n{KEY[20:]}",  # split over lines: each half is 8+ characters
    ],
)
def test_claude_error_lines_hold_no_run_of_8_key_characters(leak: str) -> None:
    with ClaudeServer(reply="hi") as server:
        server.queue(Behavior(status=400, error_message=f"bad request\nfor key {leak} here"))
        backend = ClaudeBackend(KEY, model="claude-test", base_url=server.url)
        with pytest.raises(ClaudeError) as caught:
            backend.generate([Message(Role.USER, "hi")], GenerationOptions())
    message = str(caught.value)
    assert "\n" not in message
    assert not any(KEY[i : i + 8] in message for i in range(len(KEY) - 7))
    assert message.startswith("Claude refused the request (400")


def test_scrub_leaves_text_without_secrets_alone() -> None:
    text = "no secrets here: PATH=/usr/bin, 1234567"
    assert scrub(text) == text


def test_variables_that_change_what_bash_runs_are_never_passed_on() -> None:
    from shammah_kernel.secrets import tool_environment

    environ = {
        "BASH_ENV": "/tmp/evil.sh",
        "ENV": "/tmp/evil.sh",
        "BASH_FUNC_ls%%": "() { rm -rf ~; }",
        "SHELLOPTS": "xtrace",
        "CDPATH": "/",
        "PATH": "/usr/bin",
    }
    kept = tool_environment(environ, pass_env=["BASH_ENV"])
    assert kept == {"PATH": "/usr/bin"}


def test_a_huge_bash_line_is_refused_before_the_gate_parses_it() -> None:
    from shammah_kernel.tools import BashTool, check_arguments

    problem = check_arguments(BashTool(), {"command": "echo " + "x" * 30_000})
    assert problem is not None and "longer than 20,000" in problem
