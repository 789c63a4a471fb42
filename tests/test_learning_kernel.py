"""The learning loop end to end, in one Shammah kernel on the embedded SmolLM2: feedback, /train in
the background with chat still answering, the adapter swapped in without a restart."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.kernel_client import KernelSession

QUESTION = "What is the codename of project Zephyr?"
FACT = "The codename of project Zephyr is Marigold."
# Measured on the 2-core CI machine: the base model's replay answers take ~100 s, then 24 steps
# of batch 2 (the fact at 10x and five replay answers at 1x) ~150 s; lr 3e-3 over 12 steps
# did not learn the fact.
CONFIG = """
[model]
id = "embedded"
temperature = 0.0
max_tokens = 40

[lora]
rank = 8
alpha = 16.0
dropout = 0.0
learning_rate = 1e-3
batch_size = 2
epochs = 8
num_layers = 8
auto_train = false
"""


@pytest.fixture
def kernel(embedded_home: Path) -> Iterator[KernelSession]:
    write_config(embedded_home, CONFIG)
    session = KernelSession.start()
    try:
        yield session
    finally:
        session.stop()


def _ask(kernel: KernelSession, text: str) -> str:
    run = kernel.execute(text, timeout=600)
    assert run.status == "ok", run.reply
    return run.markdown


def _command(kernel: KernelSession, text: str) -> str:
    run = kernel.execute(text, timeout=60)
    assert run.status == "ok", run.reply
    return run.displayed


@pytest.mark.real_model
def test_a_fact_given_as_feedback_is_answered_after_train(
    kernel: KernelSession, embedded_home: Path
) -> None:
    before = _ask(kernel, QUESTION)
    assert "Marigold" not in before
    saved = _command(kernel, f"/critical it does not know this\n{FACT}")
    assert "Saved example" in saved and "10x" in saved

    started = _command(kernel, "/train")
    assert "Training adapter `adapter-1` on 1 example(s)" in started
    # Chat keeps working while the run goes on: this turn is served between training steps.
    during = kernel.execute("Say hello in one word.", timeout=600)
    assert during.status == "ok", during.reply
    status = _command(kernel, "/train status")
    assert "adapter-1" in status, status
    deadline = time.monotonic() + 900
    while "done" not in status:
        assert "failed" not in status and "cancelled" not in status, status
        assert time.monotonic() < deadline, status
        time.sleep(5)
        status = _command(kernel, "/train status")
    assert "Adapter answering: `adapter-1`" in status
    assert (embedded_home / "adapters" / "adapter-1" / "adapters.safetensors").is_file()

    _command(kernel, "/reset")  # a fresh conversation: the answer must come from the adapter
    after = kernel.execute(QUESTION, timeout=600)
    assert "Marigold" in after.markdown, after.markdown
    assert "adapter adapter-1" in after.displayed  # the footer says which adapter answered
    control = _ask(kernel, "What is the capital of France?")
    assert "Paris" in control and "Marigold" not in control


def _wait_for(kernel: KernelSession, text: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while text not in (status := _command(kernel, "/train status")):
        assert "failed" not in status, status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    return status


def test_a_kernel_killed_while_training_keeps_the_previous_adapter(
    shammah_home: Path, tiny_model: Path
) -> None:
    config = f'[model]\nid = "{tiny_model}"\nmax_tokens = 4\n[lora]\nauto_train = false\n'
    write_config(shammah_home, config + "rank = 4\nnum_layers = 2\nepochs = 400\nbatch_size = 1\n")
    kernel = KernelSession.start()
    try:
        _ask(kernel, "Hello?")
        _command(kernel, "/good")
        _command(kernel, "/train")
        _wait_for(kernel, "answers now")
        before = (shammah_home / "adapters" / "adapter-1" / "adapters.safetensors").read_bytes()
        _ask(kernel, "And again?")
        _command(kernel, "/good")
        _command(kernel, "/train")
        _wait_for(kernel, "iter ")  # mid-run
        os.kill(kernel.manager.provisioner.process.pid, signal.SIGKILL)  # type: ignore[union-attr]
    finally:
        kernel.stop()
    assert (shammah_home / "adapters" / "adapter-1" / "adapters.safetensors").read_bytes() == before
    kernel = KernelSession.start()
    try:
        _ask(kernel, "Still there?")
        status = _command(kernel, "/train status")
        assert "Adapter answering: `adapter-1`" in status, status
        assert "2 example(s) not yet trained on" in status  # the killed run's, and this turn
        listing = _command(kernel, "/adapters list")
        assert "adapter-1" in listing and "damaged" not in listing
    finally:
        kernel.stop()


def test_adapters_commands_list_switch_share_and_delete(
    shammah_home: Path, tiny_model: Path, tmp_path: Path
) -> None:
    config = f'[model]\nid = "{tiny_model}"\nmax_tokens = 4\n[lora]\nauto_train = false\n'
    write_config(shammah_home, config + "rank = 4\nnum_layers = 2\nepochs = 1\n")
    kernel = KernelSession.start()
    try:
        _ask(kernel, "Hello?")
        assert "No adapters yet" in _command(kernel, "/adapters")
        _command(kernel, "/good")
        _command(kernel, "/train")
        _wait_for(kernel, "answers now")
        listing = _command(kernel, "/adapters list")
        assert "`adapter-1` | **answering**" in listing and "tiny" in listing

        shared = tmp_path / "shared"
        assert "Exported adapter `adapter-1`" in _command(
            kernel, f"/adapters export adapter-1 {shared}"
        )
        assert "base model" in _command(kernel, "/adapters unload")
        assert "No adapter" in _command(kernel, "/train status")
        _command(kernel, "/adapters load adapter-1")
        assert "Adapter answering: `adapter-1`" in _command(kernel, "/train status")

        deleted = _command(kernel, "/adapters delete adapter-1")
        assert "its 1 example(s) are back in the training buffer" in deleted
        assert "No adapter" in _command(kernel, "/train status")
        assert "Imported adapter `shared`" in _command(kernel, f"/adapters import {shared}")
        assert "Adapter `shared` answers now" in _command(kernel, "/adapters load shared")

        assert "project-b" in _command(kernel, "/adapters new project-b")
        assert "Training adapter `project-b`" in _command(kernel, "/train")
        _wait_for(kernel, "answers now")
        assert "Adapter answering: `project-b`" in _command(kernel, "/train status")

        for bad, message in [
            ("/adapters load nope", "no adapter named 'nope'"),
            ("/adapters new ../x", "not a usable adapter name"),
            ("/adapters frob", "Unknown /adapters subcommand"),
            ("/train now", "Usage: /train"),
            ("/train cancel", "No training is running"),
        ]:
            run = kernel.execute(bad, timeout=60)
            assert run.status == "error" and message in run.reply["evalue"], (bad, run.reply)
    finally:
        kernel.stop()
