"""The learning-loop bench measures on the tiny model: both trainers run, figures come out."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.core import BenchError, Comparison, run_direct
from benchmarks.learning import (
    _APPLY_CODE,
    EXAMPLES,
    Figures,
    measure_learning,
    reference_argv,
    train_both,
    training_comparison,
)

LORA = {"rank": 4, "scale": 2.0, "dropout": 0.0, "keys": ["self_attn.q_proj"]}


@pytest.fixture(scope="module")
def learning(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Comparison]]:
    """One run of the measures, few steps and samples: (their folder, the comparisons)."""
    root = tmp_path_factory.mktemp("learning")
    measures = measure_learning(tiny_model, root, steps=2, rounds=2, apply_runs=4, reload_runs=2)
    return root, measures


def test_training_is_timed_against_mlx_lm_lora_on_the_same_batch(
    learning: tuple[Path, dict[str, Comparison]], tiny_model: Path
) -> None:
    root, measures = learning
    assert set(measures) == {"training", "adapter_apply"}
    training: dict[str, Any] = measures["training"].to_json()
    json.dumps(training)  # the bench's JSON file holds it
    assert training["shammah"] > 0 and training["reference"] > 0 and training["ratio"] > 0
    assert isinstance(training["met"], bool)  # speed is reported, never asserted here
    assert training["runs_per_side"] == 2 and training["steps_per_run"] == 2
    for side in ("shammah_step_seconds", "reference_step_seconds"):
        assert len(training[side]) == 2 and all(s > 0 for run in training[side] for s in run)
    assert training["batch_rows"] == len(EXAMPLES)
    assert training["batch_width"] > 0 and training["reference_batch_width"] > 0
    assert training["tokens_per_step"] > 0
    # One batch every step; mlx-lm also counts the newline after the end of turn, and a pad.
    (reference_tokens,) = training["reference_tokens_per_step"]
    assert reference_tokens >= training["tokens_per_step"]
    assert math.isfinite(training["first_loss"]) and math.isfinite(training["reference_first_loss"])
    # The reference really ran: mlx_lm.lora wrote its own adapters, with Shammah's LoRA layout.
    for index in (0, 1):
        written = root / f"mlx-lm-adapter-{index}"
        assert (written / "adapters.safetensors").stat().st_size > 0
        config = json.loads((written / "adapter_config.json").read_text())
        assert config["model"] == str(tiny_model) and config["iters"] == 2
        shammah = json.loads(
            (root / f"shammah-adapter-{index}" / "adapter_config.json").read_text()
        )
        assert config["lora_parameters"] == shammah["lora_parameters"]
        assert config["num_layers"] == shammah["num_layers"] == training["lora"]["num_layers"]
    chats = (root / "lora-data" / "train.jsonl").read_text().splitlines()
    assert [json.loads(line)["messages"][0]["content"] for line in chats] == [
        q for q, _ in EXAMPLES
    ]


def test_applying_an_adapter_is_timed_against_a_reload(
    learning: tuple[Path, dict[str, Comparison]],
) -> None:
    swap: dict[str, Any] = learning[1]["adapter_apply"].to_json()
    assert swap["shammah"] > 0 and swap["reference"] > 0 and isinstance(swap["met"], bool)
    assert len(swap["apply_samples"]) == 4 and len(swap["reload_samples"]) == 2
    assert all(s > 0 for s in [*swap["apply_samples"], *swap["reload_samples"]])
    assert swap["first_apply_seconds"] > 0


def test_two_copies_of_one_adapter_are_refused(
    learning: tuple[Path, dict[str, Comparison]], tiny_model: Path
) -> None:
    # Applying the same weights again would time an apply that changes nothing.
    adapter = str(learning[0] / "shammah-adapter-0")
    with pytest.raises(
        BenchError, match="the adapter apply run failed:\nthe two adapters hold the same weights"
    ):
        run_direct(
            _APPLY_CODE, str(tiny_model), "2", "1", adapter, adapter, name="adapter apply run"
        )


def test_a_failing_run_is_a_bench_error(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')  # no weights, no tokenizer
    with pytest.raises(BenchError, match="the Shammah training run failed"):
        measure_learning(model, tmp_path / "bench", steps=2, rounds=1)


def test_a_run_needs_a_step_after_the_warm_up(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="more than 1 step"):
        train_both(tiny_model, tmp_path, steps=1, rounds=1)
    with pytest.raises(BenchError, match="more than 1 step"):
        train_both(tiny_model, tmp_path, steps=3, rounds=0)


def _shammah_run(tokens_per_second: list[float]) -> Figures:
    config = {"iters": 3, "batch_size": 4, "num_layers": 2, "lora_parameters": LORA}
    return {
        "tokens_per_second": tokens_per_second,
        "losses": [3.0] * len(tokens_per_second),
        "tokens_per_step": 100,
        "batch_width": 65,
        "reference_batch_width": 65,
        "adapter_config": config,
        "learning_rate": 1e-4,
        "max_seq_length": 2048,
        "openblas": True,
    }


def _reference_run(step_seconds: list[float], tokens: int = 108) -> Figures:
    reports: list[dict[str, Any]] = [
        {
            "iteration": i + 1,
            "train_loss": 3.1,
            "iterations_per_second": 1 / s,
            "tokens_per_second": tokens / s,
            "trained_tokens": tokens * (i + 1),
        }
        for i, s in enumerate(step_seconds)
    ]
    return {"reports": reports, "openblas": True}


def test_steps_compare_in_shammahs_tokens_after_the_warm_up() -> None:
    # 100 tokens a step: Shammah's 50/100/200 tok/s are 2/1/0.5 s steps; the first is left out.
    shammah = [_shammah_run([50, 100, 200]), _shammah_run([10, 50, 100])]
    reference = [_reference_run([9, 1, 1]), _reference_run([9, 2, 4])]
    comparison = training_comparison(shammah, reference)
    assert comparison.shammah == pytest.approx(100 / 1.0)  # median of 1, 0.5, 2, 1 s
    assert comparison.reference == pytest.approx(100 / 1.5)  # median of 1, 1, 2, 4 s
    assert comparison.ratio == pytest.approx(1.5)
    assert comparison.details["reference_tokens_per_step"] == [108]
    assert comparison.details["shammah_step_seconds"] == [[2, 1, 0.5], [10, 2, 1]]
    assert comparison.at_most is False and comparison.limit == 0.95


def test_runs_of_different_lengths_are_refused() -> None:
    with pytest.raises(BenchError, match="different numbers of steps"):
        training_comparison([_shammah_run([50, 100, 200])], [_reference_run([1, 1])])


def test_the_reference_runs_with_shammahs_settings(tmp_path: Path) -> None:
    argv = reference_argv(tmp_path / "model", tmp_path, tmp_path / "out", _shammah_run([1.0]))
    options = dict(zip(argv[2::2], argv[3::2], strict=True))
    assert argv[:2] == ["--train", "--mask-prompt"]
    assert options["--iters"] == "3" and options["--batch-size"] == "4"
    assert options["--num-layers"] == "2" and float(options["--learning-rate"]) == 1e-4
    assert options["--steps-per-report"] == "1" and options["--data"] == str(tmp_path)
    assert json.loads(Path(options["-c"]).read_text()) == {"lora_parameters": LORA}
