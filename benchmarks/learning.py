"""Bench measures of the learning loop: LoRA training speed, and applying a new adapter.

- `training`: Shammah's trainer (`training.train_adapter`) against `mlx_lm.lora` run from its
  command line (`python -m mlx_lm lora` calls the same `main`), on the same examples, model and
  LoRA settings. The examples make exactly one batch, so every step of both trainers computes
  the same rows at the same padded width. The figures are the median step after the warm-up, in
  the answer tokens Shammah's progress counts: mlx-lm counts a few more for the same batch (with
  ChatML, the newline after the end of turn, and one pad), so its own tok/s is only a detail.
- `adapter_apply`: `adapters.apply_adapter` on the loaded model against a reload with
  `mlx_lm.load(..., adapter_path=...)`, alternating the first two adapters trained above.

Each side runs in a process of its own with the BLAS the kernel preloads (`bench.run_direct`).
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Mapping
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

from .core import BenchError, Comparison, run_direct

# Fewer than 5 examples hold none out for validation: both trainers train on all four at every
# step, and neither validates. Rows stay under 64 tokens on SmolLM2, one padded width each side.
EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "How do I merge two dicts?",
        "Write `merged = first | second`; keys of `second` win on a clash.",
    ),
    ("How do I join a list of strings?", 'Call `", ".join(words)`; every item must be a string.'),
    ("How do I parse JSON text?", "Call `json.loads(text)`; it returns dicts, lists and numbers."),
    ("How do I write a unit test?", "Write a function named `test_...` that uses `assert`."),
)
TRAIN_STEPS = 4  # per run, the warm-up included
ROUNDS = 2  # runs of each trainer, alternating: Shammah, mlx-lm, mlx-lm, Shammah, ...
WARMUP_STEPS = 1  # the first step also allocates the optimizer state: left out on both sides
APPLY_RUNS = 10
RELOAD_RUNS = 3
SEED = 0
ADAPTER_CONFIG = "adapter_config.json"  # the file mlx-lm's trainer and Shammah's both write
_SHAMMAH_CODE = "from benchmarks.learning import shammah_training_main as m; m()"
_REFERENCE_CODE = "from benchmarks.learning import reference_training_main as m; m()"
_APPLY_CODE = "from benchmarks.learning import adapter_apply_main as m; m()"

Figures = dict[str, Any]  # what one run printed as JSON


def measure_learning(
    model_dir: Path,
    root: Path,
    *,
    steps: int = TRAIN_STEPS,
    rounds: int = ROUNDS,
    apply_runs: int = APPLY_RUNS,
    reload_runs: int = RELOAD_RUNS,
) -> dict[str, Comparison]:
    """Training speed against `mlx_lm.lora`, then adapter apply against reload; files in `root`."""
    shammah, reference = train_both(model_dir, root, steps=steps, rounds=rounds)
    training = training_comparison(shammah, reference)
    adapters = (str(root / "shammah-adapter-0"), str(root / "mlx-lm-adapter-0"))
    runs = (str(apply_runs), str(reload_runs))
    swaps = run_direct(_APPLY_CODE, str(model_dir), *runs, *adapters, name="adapter apply run")
    return {"training": training, "adapter_apply": apply_comparison(swaps)}


def train_both(
    model_dir: Path, root: Path, *, steps: int, rounds: int
) -> tuple[list[Figures], list[Figures]]:
    """Each trainer `rounds` times, `steps` steps a run; the figures of every run, per side.

    The order alternates (Shammah, mlx-lm, mlx-lm, Shammah, ...), so a change in the machine's
    load during the runs weighs on both sides.
    """
    if steps <= WARMUP_STEPS or rounds < 1:
        raise BenchError(f"LoRA training needs a round of more than {WARMUP_STEPS} step(s)")
    root.mkdir(parents=True, exist_ok=True)
    data_dir = root / "lora-data"
    shammah: list[Figures] = []
    reference: list[Figures] = []
    for index in range(rounds):
        for side in ("shammah", "mlx-lm")[:: 1 if index % 2 == 0 else -1]:
            out = root / f"{side}-adapter-{index}"
            if side == "shammah":
                args = (str(model_dir), str(data_dir), str(out), str(steps))
                shammah.append(run_direct(_SHAMMAH_CODE, *args, name="Shammah training run"))
            else:
                argv = reference_argv(model_dir, data_dir, out, shammah[0])
                reference.append(run_direct(_REFERENCE_CODE, *argv, name="mlx_lm.lora run"))
    return shammah, reference


def reference_argv(
    model_dir: Path, data_dir: Path, adapter_dir: Path, shammah: Figures
) -> list[str]:
    """`mlx_lm.lora` options for what Shammah's run did, read from the adapter config it wrote."""
    config = shammah["adapter_config"]
    options = data_dir / "lora.yaml"
    # JSON is YAML; rank, scale, dropout and keys can only be set through -c.
    options.write_text(json.dumps({"lora_parameters": config["lora_parameters"]}), "utf-8")
    settings = {
        "--model": str(model_dir),
        "--data": str(data_dir),
        "--iters": str(config["iters"]),
        "--batch-size": str(config["batch_size"]),
        "--num-layers": str(config["num_layers"]),
        "--learning-rate": repr(shammah["learning_rate"]),
        "--max-seq-length": str(shammah["max_seq_length"]),
        "--steps-per-report": "1",  # Shammah's trainer reports every step too
        "--seed": str(SEED),
        "--adapter-path": str(adapter_dir),
        "-c": str(options),
    }
    # --mask-prompt: the loss covers the answer only, as Shammah's does.
    return ["--train", "--mask-prompt", *(part for item in settings.items() for part in item)]


def training_comparison(shammah: list[Figures], reference: list[Figures]) -> Comparison:
    """Median step after the warm-up, all runs of a side pooled, as Shammah's tokens per second."""
    first = shammah[0]
    tokens = int(first["tokens_per_step"])
    shammah_steps = [[tokens / tps for tps in run["tokens_per_second"]] for run in shammah]
    reference_steps = [
        [1 / r["iterations_per_second"] for r in run["reports"]] for run in reference
    ]
    counts = {len(run) for run in shammah_steps + reference_steps}
    if len(counts) != 1:
        raise BenchError(f"the training runs did different numbers of steps: {sorted(counts)}")
    shammah_step = statistics.median(s for run in shammah_steps for s in run[WARMUP_STEPS:])
    reference_step = statistics.median(s for run in reference_steps for s in run[WARMUP_STEPS:])
    trained = [[0, *(int(r["trained_tokens"]) for r in run["reports"])] for run in reference]
    reference_tokens = {b - a for run in trained for a, b in pairwise(run)}
    config = first["adapter_config"]
    details = {
        "steps_per_run": counts.pop(),
        "runs_per_side": len(shammah),
        "warmup_steps": WARMUP_STEPS,
        "batch_rows": config["batch_size"],
        "batch_width": first["batch_width"],
        "reference_batch_width": first["reference_batch_width"],
        "tokens_per_step": tokens,
        "reference_tokens_per_step": sorted(reference_tokens),  # as mlx-lm counts them
        "reference_reported_tokens_per_second": statistics.median(
            r["tokens_per_second"] for run in reference for r in run["reports"][WARMUP_STEPS:]
        ),
        "shammah_step_seconds": [[round(s, 4) for s in run] for run in shammah_steps],
        "reference_step_seconds": [[round(s, 4) for s in run] for run in reference_steps],
        "first_loss": first["losses"][0],
        "reference_first_loss": reference[0]["reports"][0]["train_loss"],
        "lora": {**config["lora_parameters"], "num_layers": config["num_layers"]},
        "shammah_openblas": all(run["openblas"] for run in shammah),
        "reference_openblas": all(run["openblas"] for run in reference),
    }
    label = "LoRA training, median step, same batch"
    figures = (tokens / shammah_step, tokens / reference_step)
    return Comparison(label, "tok/s", *figures, "mlx_lm.lora", 0.95, False, details)


def apply_comparison(swaps: Mapping[str, Any]) -> Comparison:
    """Median apply on the loaded model against the median reload with the adapter."""
    applies, reloads = swaps["apply_seconds"], swaps["reload_seconds"]
    details = {
        "apply_samples": [round(s, 5) for s in applies],
        "reload_samples": [round(s, 4) for s in reloads],
        "first_apply_seconds": round(swaps["first_apply_seconds"], 5),  # attaches the layers
        "openblas": swaps["openblas"],
    }
    label = "apply a new adapter vs reload the model with it"
    reference_name = "mlx_lm.load with adapter_path"
    median_apply, median_reload = statistics.median(applies), statistics.median(reloads)
    return Comparison(label, "s", median_apply, median_reload, reference_name, 0.05, True, details)


def shammah_training_main() -> None:
    """Run by `measure_learning`: `train_adapter` on EXAMPLES, one batch a step.

    Also writes the examples it trains on as mlx-lm chat JSONL (`train.jsonl`) for the reference.
    """
    from mlx_lm import load

    from shammah_kernel.blas import openblas_loaded
    from shammah_kernel.config import LoraSettings
    from shammah_kernel.events import Message, Role
    from shammah_kernel.training import MAX_SEQ_LENGTH, TrainingProgress, train_adapter
    from shammah_kernel.training_data import (
        TrainingExample,
        iterate_weighted_batches,
        split_validation,
        tokenize,
    )

    model_dir, data_dir, adapter_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    model, tokenizer = load(model_dir)[:2]
    examples = [TrainingExample((Message(Role.USER, q),), a) for q, a in EXAMPLES]
    trained, _ = split_validation(examples, seed=SEED)
    data_dir.mkdir(parents=True, exist_ok=True)  # the same file each run
    chats = [_chat(e.messages[0].content, e.answer) for e in trained]
    (data_dir / "train.jsonl").write_text("".join(json.dumps(c) + "\n" for c in chats), "utf-8")
    settings = LoraSettings(batch_size=len(trained), epochs=int(sys.argv[4]))
    rows = [tokenize(tokenizer, e, MAX_SEQ_LENGTH) for e in trained]
    batch, lengths, _ = next(iterate_weighted_batches(rows, len(rows), MAX_SEQ_LENGTH))
    progress: list[TrainingProgress] = []
    train_adapter(
        model,
        tokenizer,
        examples,
        settings,
        replay=[],
        out_dir=adapter_dir,
        base_model=model_dir,
        on_progress=progress.append,
        should_stop=lambda: False,
        seed=SEED,
    )
    figures = {
        "tokens_per_second": [p.tokens_per_second for p in progress],
        "losses": [p.train_loss for p in progress],
        # The rows' (offset, last index) pairs: the tokens the loss counts in each step.
        "tokens_per_step": sum(b - a + 1 for a, b in cast("list[list[int]]", lengths.tolist())),
        "batch_width": batch.shape[1],
        "reference_batch_width": _mlx_lm_batch_width(tokenizer, chats, MAX_SEQ_LENGTH),
        "adapter_config": json.loads((adapter_dir / ADAPTER_CONFIG).read_text("utf-8")),
        "learning_rate": settings.learning_rate,
        "max_seq_length": MAX_SEQ_LENGTH,
        "openblas": openblas_loaded(),
    }
    print(json.dumps(figures))


def _chat(question: str, answer: str) -> dict[str, Any]:
    """One example in mlx-lm's chat JSONL, as `ExampleStore.export_jsonl` writes it."""
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "weight": 1.0}


def _mlx_lm_batch_width(tokenizer: Any, chats: list[dict[str, Any]], max_length: int) -> int:
    """The padded width of mlx-lm's batch of `chats`, tokenized as its `--mask-prompt` run does."""
    from mlx_lm.tuner.datasets import ChatDataset

    dataset = ChatDataset(chats, tokenizer, mask_prompt=True)
    longest = max(len(dataset.process(chat)[0]) for chat in chats)
    return min(1 + 32 * math.ceil(longest / 32), max_length)  # as mlx-lm's iterate_batches pads


def reference_training_main() -> None:
    """Run by `measure_learning`: `mlx_lm.lora`'s command line, its per-step reports recorded."""
    from mlx_lm import lora
    from mlx_lm.tuner.callbacks import TrainingCallback

    from shammah_kernel.blas import openblas_loaded

    class Recorder(TrainingCallback):
        def __init__(self) -> None:
            self.reports: list[dict[str, float]] = []

        def on_train_loss_report(self, train_info: dict[str, Any]) -> None:
            self.reports.append({k: float(v) for k, v in train_info.items()})

    recorder = Recorder()
    # run() takes its callback from --report-to (wandb, swanlab); the recorder takes that place
    # to read the exact figures, which the console rounds (tok/s) or shows in thousands (tokens).
    setattr(lora, "get_reporting_callbacks", lambda *args, **kwargs: recorder)  # noqa: B010
    sys.argv = ["mlx_lm.lora", *sys.argv[1:]]
    lora.main()
    print(json.dumps({"reports": recorder.reports, "openblas": openblas_loaded()}))


def adapter_apply_main() -> None:
    """Run by `measure_learning`: apply the two adapters in turn, then reload with each in turn."""
    import mlx.core as mx
    from mlx_lm import load

    from shammah_kernel.blas import openblas_loaded

    model_dir, apply_runs, reload_runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    adapters = [Path(path) for path in sys.argv[4:6]]
    model = load(model_dir)[0]
    first_apply, _ = _timed_apply(model, adapters[1], model_dir)
    applies, fingerprints = [], []
    for run in range(apply_runs):
        seconds, fingerprint = _timed_apply(model, adapters[run % 2], model_dir)
        applies.append(seconds)
        fingerprints.append(fingerprint)
    if len(set(fingerprints)) < min(apply_runs, 2):
        sys.exit("the two adapters hold the same weights: an apply would change nothing")
    reloads = []
    for run in range(reload_runs):
        start = time.perf_counter()
        reloaded = load(model_dir, adapter_path=str(adapters[run % 2]))[0]
        mx.eval(reloaded.parameters())  # the adapter's tensors load lazily
        reloads.append(time.perf_counter() - start)
        del reloaded
    figures = {"apply_seconds": applies, "reload_seconds": reloads, "openblas": openblas_loaded()}
    print(json.dumps({**figures, "first_apply_seconds": first_apply}))


def _timed_apply(model: Any, adapter_dir: Path, model_dir: str) -> tuple[float, float]:
    """Seconds `apply_adapter` took, and a fingerprint of the LoRA weights it left on the model."""
    import mlx.core as mx

    from shammah_kernel.adapters import apply_adapter, lora_modules

    start = time.perf_counter()
    apply_adapter(model, adapter_dir, base_model=model_dir)  # evaluates the new weights
    seconds = time.perf_counter() - start
    lora_b = lora_modules(model)[0][1].lora_b
    return seconds, float(cast(float, mx.abs(lora_b).sum().item()))
