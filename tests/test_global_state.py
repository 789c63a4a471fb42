"""A download and a training run leave the process's libraries as they found them: the magics run
Shammah inside the user's own Python, so no constant, logger, variable or patch may change."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import cast

import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.file_download
import mlx.core as mx
import mlx_lm.cli_ui
import mlx_lm.tuner.trainer
import mlx_lm.utils
import pytest
from hub_server import HubServer, serve_hub
from mlx_lm import load

from shammah_kernel import download
from shammah_kernel.config import LoraSettings
from shammah_kernel.download import DownloadProgress, download_model
from shammah_kernel.events import Message, Role
from shammah_kernel.training import TrainingProgress, train_adapter
from shammah_kernel.training_data import TrainingExample

State = dict[str, object]
PATCHABLE: tuple[ModuleType, ...] = (
    huggingface_hub,
    huggingface_hub.file_download,
    mlx_lm.tuner.trainer,
    mlx_lm.cli_ui,
    mlx_lm.utils,
    logging,
    sys,
)


def global_state() -> State:
    """What a library call could change for the whole process, as comparable values."""
    constants = vars(huggingface_hub.constants)
    state: State = {f"hf.{k}": repr(v) for k, v in constants.items() if k.isupper()}
    state |= {f"env.{k}": v for k, v in os.environ.items()}
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    for logger in loggers:
        if isinstance(logger, logging.Logger):
            handlers = tuple(id(h) for h in logger.handlers)
            state[f"log.{logger.name}"] = (
                logger.level,
                logger.disabled,
                logger.propagate,
                handlers,
            )
    for module in PATCHABLE:  # a monkeypatch replaces a module attribute
        names = (k for k in vars(module) if not k.startswith("__") and k != "last_value")
        state |= {f"{module.__name__}.{k}": id(getattr(module, k)) for k in names}
    state["sys.stdout"], state["sys.stderr"] = id(sys.stdout), id(sys.stderr)
    return state


def changes(before: State, now: State) -> dict[str, tuple[object, object]]:
    """The entries that differ; a logger first made meanwhile, with no level, is no change."""
    fresh_logger = (logging.NOTSET, False, True, ())
    return {
        key: (before.get(key), now.get(key))
        for key in before.keys() | now.keys()
        if before.get(key) != now.get(key)
        and not (key.startswith("log.") and key not in before and now[key] == fresh_logger)
    }


def random_key() -> list[int]:
    key: mx.array = mx.random.state[0]  # type: ignore[index]
    return cast("list[int]", key.tolist())


@pytest.fixture
def hub(tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """The test hub, and a Hugging Face home for the download (set before the snapshot)."""
    hf_home = tmp_path / "hf"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    constants = huggingface_hub.constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(download, "PROGRESS_INTERVAL_S", 0.0)
    with serve_hub() as server:
        server.add_repo("tiny/qwen2", tiny_model)
        yield server


def test_a_download_changes_no_global_state(hub: HubServer, tmp_path: Path) -> None:
    before = global_state()
    during: list[dict[str, tuple[object, object]]] = []

    def progress(_: DownloadProgress) -> None:
        during.append(changes(before, global_state()))

    path = download_model("tiny/qwen2", endpoint=hub.url, progress=progress)

    assert (path / "config.json").is_file() and len(during) > 2
    assert [c for c in during if c] == []
    assert changes(before, global_state()) == {}


def _examples() -> list[TrainingExample]:
    system = Message(Role.SYSTEM, "Be brief.")
    return [
        TrainingExample((system, Message(Role.USER, f"Question {i}?")), f"Answer {i}.", 1.0, i)
        for i in range(4)
    ]


def test_a_training_run_changes_no_global_state(tiny_model: Path, tmp_path: Path) -> None:
    model, tokenizer = load(str(tiny_model))[:2]
    settings = LoraSettings(rank=4, alpha=8.0, dropout=0.0, learning_rate=1e-2, batch_size=2)
    settings.epochs, settings.num_layers = 1, 2
    mx.random.seed(1234)  # the caller's random sequence goes on after training
    key = random_key()
    before = global_state()
    during: list[dict[str, tuple[object, object]]] = []

    def progress(_: TrainingProgress) -> None:
        during.append(changes(before, global_state()))

    result = train_adapter(
        model,
        tokenizer,
        _examples(),
        settings,
        replay=[],
        out_dir=tmp_path / "adapter",
        base_model=str(tiny_model),
        on_progress=progress,
        should_stop=lambda: False,
    )

    assert result.adapter_dir is not None and len(during) == result.iterations > 0
    assert [c for c in during if c] == []  # mlx-lm's TrainUI was patched while it ran
    assert changes(before, global_state()) == {}
    assert random_key() == key


def test_a_training_run_prints_nothing(
    tiny_model: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Without the patch, nothing of mlx-lm's progress display reaches stdout either."""
    model, tokenizer = load(str(tiny_model))[:2]
    settings = LoraSettings(rank=4, alpha=8.0, dropout=0.0, learning_rate=1e-2, batch_size=2)
    settings.epochs, settings.num_layers = 1, 2
    capfd.readouterr()
    train_adapter(
        model,
        tokenizer,
        _examples(),
        settings,
        replay=[],
        out_dir=tmp_path / "adapter",
        base_model=str(tiny_model),
        on_progress=lambda _: None,
        should_stop=lambda: False,
    )
    out, _err = capfd.readouterr()
    assert out == ""
