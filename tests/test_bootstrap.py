"""Progressive bootstrap in a real kernel: download with progress, Claude meanwhile, fallbacks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from claude_server import ClaudeServer
from conftest import write_config
from hub_server import HubServer, serve_hub
from kernel_client import KernelSession
from model_factory import make_tiny_qwen

REPO = "test-org/tiny-qwen2"


@pytest.fixture
def hub(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A hub on 127.0.0.1 and an empty HF cache, as the kernel subprocess will see them."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    with serve_hub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        server.add_repo(REPO, tiny_model)
        yield server


def test_claude_answers_while_the_model_downloads_then_local_takes_over(
    shammah_home: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.drip = 0.1  # about 6 s for the tiny model's weights
    monkeypatch.setenv("SHAMMAH_MODEL", REPO)
    write_config(shammah_home, "[model]\nmax_tokens = 16\n")
    with ClaudeServer(reply="Claude here.") as claude:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        kernel = KernelSession.start()
        try:
            first = kernel.execute("hello")
            assert "Claude here." in first.markdown and "Claude (" in first.displayed
            assert "downloading" in kernel.execute("/model status").displayed
            kernel.wait_until_ready()
            second = kernel.execute("and now?")
            assert "tiny-qwen2 ·" in second.displayed and len(claude.requests) == 1
            history = kernel.execute("/history").displayed
            assert "Claude here." in history and "and now?" in history
            assert REPO in kernel.execute("/model cache").displayed
        finally:
            kernel.stop()
    assert any(r is None for _, r in hub.ranges)  # the weights came from our hub


def test_without_a_key_the_cell_waits_for_the_download(
    shammah_home: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.drip = 0.02
    monkeypatch.setenv("SHAMMAH_MODEL", REPO)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    write_config(shammah_home, "[model]\nmax_tokens = 8\n")
    kernel = KernelSession.start()
    try:
        run = kernel.execute("hello")
        assert run.status == "ok" and "Waiting for tiny-qwen2" in run.displayed
        assert "tiny-qwen2 ·" in run.displayed
    finally:
        kernel.stop()


@pytest.mark.real_model
def test_a_failed_download_falls_back_to_the_embedded_model_and_says_so_once(
    embedded_home: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHAMMAH_MODEL", "test-org/no-such-model")
    write_config(embedded_home, "[model]\nmax_tokens = 8\n")
    kernel = KernelSession.start()
    try:
        first = kernel.execute("hello")
        assert "could not be downloaded" in first.displayed
        assert "SmolLM2-135M-Instruct ·" in first.displayed
        assert "could not be downloaded" not in kernel.execute("hello again").displayed
        status = kernel.execute("/model status").displayed
        assert "offline" in status and "what to do" in status
    finally:
        kernel.stop()


def test_model_select_switches_without_a_restart(
    shammah_home: Path, hub: HubServer, tiny_model: Path, tmp_path: Path
) -> None:
    hub.add_repo("test-org/tiny-two", make_tiny_qwen(tmp_path / "tiny-two", seed=1))
    write_config(shammah_home, f'[model]\nid = "{tiny_model}"\nmax_tokens = 8\n')
    kernel = KernelSession.start()
    try:
        kernel.wait_until_ready()
        selected = kernel.execute("/model select test-org/tiny-two")
        assert selected.status == "ok" and "Switching to **tiny-two**" in selected.displayed
        kernel.wait_until_ready()
        for _ in range(100):  # the swap is queued behind nothing; poll the status briefly
            if "| model | tiny-two |" in kernel.execute("/model status").displayed:
                break
        run = kernel.execute("hello")
        assert "tiny-two ·" in run.displayed
        unknown = kernel.execute("/model select ./nowhere/model")
        assert unknown.status == "error" and "neither a size" in unknown.reply["evalue"]
    finally:
        kernel.stop()


def test_the_stop_button_ends_the_wait_for_a_downloading_model(
    shammah_home: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.drip = 0.2  # a download far longer than the test waits
    monkeypatch.setenv("SHAMMAH_MODEL", REPO)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    write_config(shammah_home, "[model]\nmax_tokens = 8\n")
    kernel = KernelSession.start()
    try:
        run = kernel.execute(
            "hello",
            interrupt_when=lambda r: "Waiting for tiny-qwen2" in r.displayed,
            timeout=60,
        )
        assert run.reply["ename"] == "KeyboardInterrupt"
        assert "before any answer" in run.reply["evalue"]
        assert "downloading" in kernel.execute("/model status").displayed  # still on its way
    finally:
        kernel.stop()
