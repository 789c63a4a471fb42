"""The kernel's own protocol behaviour, against a real kernel subprocess on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import write_config
from kernel_client import KernelSession


def test_reply_streams_as_markdown_updates(tiny_kernel: KernelSession) -> None:
    run = tiny_kernel.execute("Write a function that adds two numbers.")
    assert run.status == "ok"
    updates = run.of_type("update_display_data")
    assert len(updates) >= 1, "the reply must stream, not arrive as one blob"
    assert run.markdown, "the streamed output ends with the reply text"
    widget, reply = (m["content"] for m in run.of_type("display_data")[:2])
    assert "application/vnd.jupyter.widget-view+json" in widget["data"]  # the status widget
    assert "tiny-qwen2" in widget["data"]["text/plain"]
    assert set(reply["data"]) == {"text/markdown", "text/plain"}
    assert "tiny-qwen2" in run.displayed  # the footer names the model that answered


def test_terminal_clients_get_plain_text_stream(tiny_kernel: KernelSession) -> None:
    run = tiny_kernel.execute("Hello", cell_id=None)
    assert run.status == "ok"
    assert not run.of_type("update_display_data")
    assert len(run.of_type("stream")) > 2
    assert run.stdout.rstrip().endswith("stopped at max_tokens]")


def test_conversation_carries_over_and_reset_clears_it(tiny_kernel: KernelSession) -> None:
    tiny_kernel.execute("first question")
    tiny_kernel.execute("second question")
    history = tiny_kernel.execute("/history")
    assert "first question" in history.displayed and "second question" in history.displayed
    assert tiny_kernel.execute("/reset").status == "ok"
    assert "empty" in tiny_kernel.execute("/history").displayed


def test_rerunning_the_last_cell_replaces_its_turn(tiny_kernel: KernelSession) -> None:
    tiny_kernel.execute("ask once", cell_id="cell-a")
    tiny_kernel.execute("ask again", cell_id="cell-a")
    history = tiny_kernel.execute("/history").displayed
    assert "ask again" in history and "ask once" not in history
    tiny_kernel.execute("another cell", cell_id="cell-b")
    tiny_kernel.execute("ask once more", cell_id="cell-a")  # an earlier cell: appended
    history = tiny_kernel.execute("/history").displayed
    assert history.index("another cell") < history.index("ask once more")


def test_unknown_command_lists_close_matches(tiny_kernel: KernelSession) -> None:
    run = tiny_kernel.execute("/hsitory")
    assert run.status == "error"
    assert run.reply["ename"] == "CommandError"
    assert "/history" in run.reply["evalue"]
    (error,) = run.of_type("error")
    assert "Traceback" not in "".join(error["content"]["traceback"])
    assert tiny_kernel.execute("/help").status == "ok"  # the kernel keeps going


def test_model_status_names_model_reason_and_state(tiny_kernel: KernelSession) -> None:
    tiny_kernel.execute("warm up")
    shown = tiny_kernel.execute("/model status").displayed
    for expected in ("tiny-qwen2", "[model] id", "ready", "device", "memory", "BLAS"):
        assert expected in shown
    assert "conversation" in tiny_kernel.execute("/status").displayed


def test_completion_inspect_and_is_complete(tiny_kernel: KernelSession) -> None:
    reply = tiny_kernel.request("complete", "/hi", 3)
    assert reply["matches"] == ["/history"] and reply["cursor_start"] == 0
    reply = tiny_kernel.request("complete", "/model st", 9)
    assert reply["matches"] == ["status"] and reply["cursor_start"] == 7
    assert tiny_kernel.request("complete", "plain text", 5)["matches"] == []
    inspect = tiny_kernel.request("inspect", "/save x", 2)
    assert inspect["found"] and "PATH" in inspect["data"]["text/plain"]
    assert tiny_kernel.request("is_complete", "hello")["status"] == "complete"
    assert (
        tiny_kernel.request("is_complete", "fix this:\n```python\nx = 1")["status"] == "incomplete"
    )


def test_save_then_restore_in_a_fresh_kernel(tiny_home: Path, tmp_path: Path) -> None:
    saved = tmp_path / "my chat.json"
    first = KernelSession.start()
    try:
        first.execute("remember the number seven")
        assert first.execute(f'/save "{saved}"').status == "ok"
    finally:
        first.stop()
    assert json.loads(saved.read_text())["turns"][0]["user"] == "remember the number seven"
    second = KernelSession.start()
    try:
        assert "1 turn" in second.execute(f'/restore "{saved}"').displayed
        assert "remember the number seven" in second.execute("/history").displayed
        missing = second.execute(f"/restore {tmp_path / 'nope.json'}")
        assert missing.status == "error" and "No saved conversation" in missing.reply["evalue"]
    finally:
        second.stop()


def test_interrupt_stops_generation_and_keeps_the_partial_answer(
    shammah_home: Path, tiny_model: Path
) -> None:
    write_config(shammah_home, f'[model]\nid = "{tiny_model}"\nmax_tokens = 100000\n')
    session = KernelSession.start()
    try:
        run = session.execute(
            "Write a very long essay.",
            interrupt_when=lambda r: len(r.of_type("update_display_data")) >= 3,
            timeout=120,
        )
        assert run.status == "error" and run.reply["ename"] == "KeyboardInterrupt"
        assert run.markdown, "the partial answer stays visible"
        assert "interrupted" in run.displayed
        assert "(interrupted)" in session.execute("/history").displayed
        assert session.execute("/status").status == "ok"  # the kernel is alive
    finally:
        session.stop()


def test_a_model_that_fails_to_load_gives_a_clear_error(shammah_home: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    write_config(shammah_home, f'[model]\nid = "{broken}"\n')
    session = KernelSession.start()
    try:
        run = session.execute("hello")
        assert run.status == "error" and run.reply["ename"] == "ModelError"
        assert "Could not load the model" in run.reply["evalue"]
        assert "failed" in session.execute("/model status").displayed
    finally:
        session.stop()


def test_a_malformed_config_is_reported_and_defaults_are_used(shammah_home: Path) -> None:
    config = write_config(shammah_home, "[model]\ntemperature = -3\n")
    session = KernelSession.start()
    try:
        first = session.execute("/help").displayed
        assert "Settings problems" in first and "model.temperature" in first
        assert "Settings problems" not in session.execute("/help").displayed  # shown once
        shown = session.execute("/status").displayed
        assert "model.temperature" in shown and str(config) in shown
    finally:
        session.stop()
