"""Feedback commands and automatic collection in a real kernel; durable weighted examples."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from kernel_client import KernelSession

from shammah_kernel.events import Message, Role
from shammah_kernel.store import ExampleStore


def rows(home: Path) -> list[tuple[str, float, str, str | None, str]]:
    query = "SELECT source, weight, answer, rejected, note FROM examples ORDER BY id"
    return sqlite3.connect(home / "examples.db").execute(query).fetchall()


def test_every_finished_turn_is_collected_once(tiny_kernel: KernelSession, tiny_home: Path) -> None:
    tiny_kernel.execute("first question")
    tiny_kernel.execute("second question")
    assert [(r[0], r[1]) for r in rows(tiny_home)] == [("auto", 1.0), ("auto", 1.0)]


def test_good_keeps_the_answer_and_replaces_the_automatic_copy(
    tiny_kernel: KernelSession, tiny_home: Path
) -> None:
    answer = tiny_kernel.execute("a question").markdown
    run = tiny_kernel.execute("/good nice pattern")
    assert run.status == "ok" and "Saved example" in run.displayed and "1x" in run.displayed
    (row,) = rows(tiny_home)
    assert (
        row[0] == "feedback:good" and row[2].strip() == answer.strip() and row[4] == "nice pattern"
    )


def test_critical_learns_the_better_answer_below_the_command(
    tiny_kernel: KernelSession, tiny_home: Path
) -> None:
    tiny_kernel.execute("how do I copy a list?")
    missing = tiny_kernel.execute("/critical never do that")
    assert missing.status == "error" and "better answer" in missing.reply["evalue"]
    run = tiny_kernel.execute("/feedback high wrong approach\nUse `new = old.copy()`.")
    assert "10x" in run.displayed and "Training buffer: 1" in run.displayed
    (row,) = rows(tiny_home)
    assert row[:3] == ("feedback:critical", 10.0, "Use `new = old.copy()`.")
    assert row[3] and row[4] == "wrong approach"


def test_a_saved_example_survives_the_kernel_being_killed(tiny_home: Path) -> None:
    kernel = KernelSession.start()
    try:
        kernel.execute("remember this")
        assert kernel.execute("/medium prefer pathlib\nUse pathlib.Path.").status == "ok"
        os.kill(kernel.manager.provisioner.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
    finally:
        kernel.stop()
    assert [r[:3] for r in rows(tiny_home)] == [("feedback:medium", 3.0, "Use pathlib.Path.")]


def test_rating_with_no_answer_yet_is_a_clear_error(tiny_kernel: KernelSession) -> None:
    run = tiny_kernel.execute("/good")
    assert run.status == "error" and "no answer to rate" in run.reply["evalue"]


def test_export_to_mlx_lm_chat_jsonl_with_weights(tmp_path: Path) -> None:
    store = ExampleStore(tmp_path / "examples.db")
    context = [Message(Role.SYSTEM, "sys"), Message(Role.USER, "q")]
    store.add(context, "a", source="feedback:critical", weight=10.0)
    out = tmp_path / "train.jsonl"
    assert store.export_jsonl(out) == 1
    line = json.loads(out.read_text())
    assert line["weight"] == 10.0 and line["messages"][-1] == {"role": "assistant", "content": "a"}
    store.close()


def test_export_examples_from_the_command_line(
    shammah_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shammah_kernel.cli import run_subcommand

    out = tmp_path / "examples.jsonl"
    assert run_subcommand(["export-examples", str(out)]) == 1
    assert "No examples yet" in capsys.readouterr().err
    store = ExampleStore(shammah_home / "examples.db")
    store.add([Message(Role.USER, "q")], "a", source="feedback:medium", weight=3.0)
    store.close()
    assert run_subcommand(["export-examples", str(out)]) == 0
    assert "Wrote 1 example(s)" in capsys.readouterr().out
    assert json.loads(out.read_text())["weight"] == 3.0
