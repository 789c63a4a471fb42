"""The benchmark end to end on the tiny model: every measure comes out as positive figures."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from benchmarks.core import run_bench


def test_bench_measures_startup_decode_ttft_download_select_and_learning(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environment = dict(os.environ)
    out = tmp_path / "bench.json"
    code = run_bench(
        json_path=out, model=str(tiny_model), tokens=16, startup_runs=2, download_seconds=2.0
    )
    assert code == 0
    figures = json.loads(out.read_text())
    assert set(figures["measures"]) == {
        "startup",
        "decode",
        "ttft",
        "download_start",
        "download_first_cell",
        "select",
        "training",
        "adapter_apply",
        "chat_during_training",
    }
    for measure in figures["measures"].values():
        assert measure["shammah"] > 0 and measure["reference"] > 0 and measure["ratio"] > 0
        assert isinstance(measure["met"], bool)  # speed is reported, never asserted here
    decode = figures["measures"]["decode"]
    assert decode["shammah_tokens"] > 1 and decode["reference_tokens"] > 1
    assert len(figures["measures"]["startup"]["shammah_samples"]) == 2
    assert len(figures["measures"]["ttft"]["turn_seconds"]) == 10
    first_cell = figures["measures"]["download_first_cell"]
    assert len(first_cell["shammah_samples"]) == 2 and len(first_cell["reference_samples"]) == 2
    assert all(s.startswith("downloading") for s in first_cell["states_after_first_cell"])
    assert first_cell["download_seconds"] > 0 and first_cell["download_bytes"] > 0
    select = figures["measures"]["select"]
    assert len(select["shammah_samples"]) == 2 and len(select["reference_samples"]) == 2
    assert all(s > 0 for s in select["ready_seconds"] + select["reference_load_seconds"])
    assert figures["measures"]["training"]["reference_name"] == "mlx_lm.lora"
    chat = figures["measures"]["chat_during_training"]
    assert chat["steps_during_turns"] >= 1  # the turns really ran while it trained
    table = capsys.readouterr().out
    assert "| ratio |" in table and "python3 ipykernel" in table and "model cached" in table
    assert dict(os.environ) == environment  # the temporary homes are undone
    assert not any(Path(os.environ["SHAMMAH_HOME"]).iterdir())  # the test's home is untouched


def test_bench_refuses_a_folder_without_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_bench(json_path=None, model=str(tmp_path), tokens=16) == 1
    assert "not an mlx-lm model folder" in capsys.readouterr().err
