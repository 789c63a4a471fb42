"""Bad files and bad input give one clear line, never an escaped exception or a hang: a broken
examples.db, /save and /restore paths and files, adapter metadata, a second call in one block."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from shammah_kernel.adapter_library import AdapterLibrary
from shammah_kernel.conversation import Conversation
from shammah_kernel.errors import CommandError, ConversationFileError
from shammah_kernel.events import Message, Role, Turn
from shammah_kernel.store import ExampleStore
from shammah_kernel.tool_calls import parse_tool_calls


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(5000))


def _truncated(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    db.execute("CREATE TABLE big (x TEXT)")
    db.executemany("INSERT INTO big VALUES (?)", [("x" * 500,) for _ in range(500)])
    db.commit()
    db.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def _folder(path: Path) -> None:
    path.mkdir()
    (path / "inside").write_text("x")


def _other_schema(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE songs (title TEXT)")
    db.commit()
    db.close()


def _other_examples_table(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    db.execute("INSERT INTO migrations VALUES ('0001_examples', 'then')")
    db.execute("CREATE TABLE examples (id INTEGER PRIMARY KEY, text TEXT)")
    db.commit()
    db.close()


def _broken_migrations(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE migrations (wrong INTEGER)")
    db.commit()
    db.close()


BROKEN_STORES: dict[str, Callable[[Path], None]] = {
    "random bytes": _garbage,
    "truncated": _truncated,
    "a folder": _folder,
    "another schema": _other_schema,
    "another examples table": _other_examples_table,
    "a broken migrations table": _broken_migrations,
    "a header and garbage": lambda p: p.write_bytes(b"SQLite format 3\0" + os.urandom(4000)),
}


@pytest.mark.parametrize("make", BROKEN_STORES.values(), ids=BROKEN_STORES.keys())
def test_a_broken_example_store_is_moved_aside_once(
    make: Callable[[Path], None], shammah_home: Path
) -> None:
    path = shammah_home / "examples.db"
    make(path)
    store = ExampleStore(path)
    notice = store.take_notice()
    assert "moved to examples.db.broken-" in notice and "\n" not in notice
    assert store.take_notice() == ""  # said once
    store.add([Message(Role.USER, "q")], "a", source="rated")
    assert [e.answer for e in store.examples()] == ["a"]
    store.close()
    (moved,) = shammah_home.glob("examples.db.broken-*")
    assert moved.exists()
    again = ExampleStore(path)  # the new store is whole: no second notice
    assert again.take_notice() == "" and len(again.examples()) == 1
    again.close()


def test_a_new_or_empty_store_has_no_notice(shammah_home: Path) -> None:
    (shammah_home / "examples.db").write_bytes(b"")
    store = ExampleStore(shammah_home / "examples.db")
    assert store.take_notice() == ""
    store.close()


def _conversation() -> Conversation:
    conversation = Conversation()
    conversation.append(Turn("q", "a", None, False, "m", ()))
    return conversation


@pytest.mark.parametrize("raw", ["~nosuchuser-shammah/x.json", "chat\0.json", "dir\0/x.json"])
def test_save_to_an_unusable_path_is_one_clear_error(
    raw: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(ConversationFileError) as caught:
        _conversation().save(Path(raw), model="m")
    assert "\n" not in str(caught.value) and "\0" not in str(caught.value)
    assert list((tmp_path / "cwd").iterdir()) == []  # no folder named "~nosuchuser..." made


@pytest.mark.parametrize("raw", ["~nosuchuser-shammah/x.json", "chat\0.json"])
def test_restore_from_an_unusable_path_is_one_clear_error(raw: str) -> None:
    with pytest.raises(ConversationFileError):
        Conversation().restore(Path(raw))


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


DEEP_FILES = {
    "a deep list": _deep(100_000),
    "a deep object": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "deep inside a turn": json.dumps({"format": "shammah-conversation", "turns": []})[:-2]
    + '[{"user": '
    + _deep(50_000)
    + ', "assistant": "a"}]}',
    "a deep step": '{"format": "shammah-conversation", "turns": [{"user": "q", "assistant": "a",'
    ' "steps": [{"role": "user", "content": "x", "tool_calls": [{"id": "1", "name": "n",'
    ' "arguments": ' + _deep(900) + "}]}]}]}",
}


@pytest.mark.parametrize("text", DEEP_FILES.values(), ids=DEEP_FILES.keys())
def test_restore_of_a_deeply_nested_file_is_one_clear_error(text: str, tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text(text)
    with pytest.raises(ConversationFileError) as caught:
        Conversation().restore(path)
    assert "\n" not in str(caught.value)


def _restore_within(path: Path, seconds: float = 5.0) -> BaseException | None:
    """What restore raised, on a thread; fails the test if it is still reading after `seconds`."""
    raised: list[BaseException | None] = []

    def target() -> None:
        try:
            Conversation().restore(path)
            raised.append(None)
        except BaseException as error:
            raised.append(error)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert raised, f"restore of {path} hung"
    return raised[0]


def test_restore_of_a_fifo_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "chat.json"
    os.mkfifo(fifo)
    error = _restore_within(fifo)
    assert isinstance(error, ConversationFileError) and "not a regular file" in str(error)


@pytest.mark.parametrize("target", ["/dev/zero", "/dev/urandom"])
def test_restore_of_a_device_or_a_link_to_one_is_refused(target: str, tmp_path: Path) -> None:
    link = tmp_path / "chat.json"
    link.symlink_to(target)
    for path in (Path(target), link):
        error = _restore_within(path)
        assert isinstance(error, ConversationFileError) and "not a regular file" in str(error)


def test_restore_of_a_folder_is_refused(tmp_path: Path) -> None:
    assert isinstance(_restore_within(tmp_path), ConversationFileError)


def _adapter(library: AdapterLibrary, name: str, meta: str | None) -> Path:
    folder = library.path(name)
    folder.mkdir(parents=True)
    (folder / "adapters.safetensors").write_text("weights")
    (folder / "adapter_config.json").write_text(json.dumps({"model": "base", "num_layers": 2}))
    if meta is not None:
        (folder / "shammah.json").write_text(meta)
    return folder


BAD_METADATA = {
    "not JSON": "{not json",
    "a list": '[{"base_model": "base"}]',
    "a string": '"base"',
    "wrong types": json.dumps(
        {
            "base_model": {"x": 1},
            "created_at": 5,
            "examples": 7,
            "validation_examples": "abc",
            "train_loss": "low",
            "val_loss": True,
            "seconds": [1],
        }
    ),
    "huge numbers": '{"train_loss": 1e999, "seconds": ' + "9" * 5000 + "}",
    "deep nesting": '{"examples": ' + _deep(100_000) + "}",
    "binary": "\udcff\0\1",
}


@pytest.mark.parametrize("meta", BAD_METADATA.values(), ids=BAD_METADATA.keys())
def test_malformed_adapter_metadata_is_listed_without_failing(meta: str, tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    folder = _adapter(library, "a", None)
    (folder / "shammah.json").write_bytes(meta.encode("utf-8", "surrogateescape"))
    (info,) = library.list()
    assert info.name == "a" and info.base_model == "base"  # from adapter_config.json
    assert isinstance(info.examples, int) and isinstance(info.created_at, str)
    assert info.train_loss is None or isinstance(info.train_loss, float)
    if meta != BAD_METADATA["wrong types"]:  # unreadable: said; wrong types: just ignored
        assert "shammah.json" in info.problem


def test_adapter_metadata_that_is_a_fifo_or_device_does_not_hang(tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    os.mkfifo(_adapter(library, "a", None) / "shammah.json")
    (_adapter(library, "b", None) / "shammah.json").symlink_to("/dev/zero")
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(len(library.list())), daemon=True)
    worker.start()
    worker.join(5)
    assert done == [2]


@pytest.mark.parametrize(
    "current",
    ['["a"]', '{"base": ["a"]}', '{"base": ' + _deep(100_000) + "}", "garbage"],
)
def test_a_malformed_current_file_means_no_current_adapter(current: str, tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    _adapter(library, "a", "{}")
    (library.root / "current.json").write_text(current)
    assert library.current("base") is None
    assert library.next_name() == "adapter-1"


@pytest.mark.parametrize("meta", BAD_METADATA.values(), ids=BAD_METADATA.keys())
def test_importing_an_adapter_with_malformed_metadata_fails_clearly_or_works(
    meta: str, tmp_path: Path
) -> None:
    source = _adapter(AdapterLibrary(tmp_path / "elsewhere"), "incoming", None)
    (source / "shammah.json").write_bytes(meta.encode("utf-8", "surrogateescape"))
    library = AdapterLibrary(tmp_path / "adapters")
    try:
        assert library.import_(source) == "incoming"
    except CommandError as error:
        assert "\n" not in str(error)


SECOND_CALLS = {
    "two objects": '{"name": "Read", "arguments": {"path": "a"}}\n'
    '{"name": "Bash", "arguments": {"command": "rm -rf ~"}}',
    "two objects, no space": '{"name": "Read", "arguments": {}}{"name": "Bash", "arguments": {}}',
    "trailing text": '{"name": "Read", "arguments": {"path": "a"}} and then Bash rm -rf ~',
    "a trailing list": '{"name": "Read", "arguments": {}} [{"name": "Bash"}]',
    "a brace then a call": '{"name": "Read", "arguments": {}}} {"name": "Bash", "arguments": {}}',
}


@pytest.mark.parametrize("body", SECOND_CALLS.values(), ids=SECOND_CALLS.keys())
def test_a_second_call_in_one_block_is_reported_not_dropped(body: str) -> None:
    parsed = parse_tool_calls(f"Let me look.\n<tool_call>\n{body}\n</tool_call>")
    assert parsed.calls == []
    (problem,) = parsed.problems
    assert "follows the call's JSON object" in problem and "one call per block" in problem


def test_a_stray_closing_brace_is_still_forgiven() -> None:
    parsed = parse_tool_calls(
        '<tool_call>{"name": "Read", "arguments": {"path": "a"}}}}</tool_call>'
    )
    assert [c.name for c in parsed.calls] == ["Read"] and parsed.problems == []


def test_an_adapter_path_with_a_nul_byte_is_one_clear_error(tmp_path: Path) -> None:
    library = AdapterLibrary(tmp_path / "adapters")
    _adapter(library, "a", "{}")
    for attempt in (
        lambda: library.export("a", tmp_path / "out\0put"),
        lambda: library.import_(tmp_path / "in\0put"),
    ):
        with pytest.raises(CommandError) as caught:
            attempt()
        assert "\0" not in str(caught.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("broken", ["fifo-config", "list-metadata", "not-json-config"])
def test_loading_a_damaged_adapter_is_one_clear_error(tmp_path: Path, broken: str) -> None:
    from shammah_kernel.adapters import apply_adapter
    from shammah_kernel.errors import ModelError

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"num_layers": 2, "lora_parameters": {"rank": 2, "scale": 1.0, "dropout": 0.0}}
    if broken == "fifo-config":
        os.mkfifo(adapter / "adapter_config.json")  # would block a plain read forever
    elif broken == "not-json-config":
        (adapter / "adapter_config.json").write_text("{not json")
    else:
        (adapter / "adapter_config.json").write_text(json.dumps(config))
        (adapter / "shammah.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match="missing or damaged|does not say"):
        apply_adapter(object(), adapter, base_model="m")  # type: ignore[arg-type]
