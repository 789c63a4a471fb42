"""Bench measure: time to first token of a chat turn while an adapter trains, against idle.

One process (with the BLAS the kernel preloads) loads the model on a model worker, as the
kernel does, and asks the same short turns idle and then while a `Learner` run trains in the
background; the clock runs from the moment a turn is queued to its first text, so a turn that
waits for the training step in progress pays for that wait. The turns arrive spread over one
step, as a user's would. The issue sets no figure for it; the goal here is the design's bound:
a turn waits at most for the step in progress, so it takes no longer than idle plus one step.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from .core import Comparison, run_direct

TURNS = 5  # per side, after one warm-up turn
EXAMPLES = 12  # enough rows for batches of two and steps of a steady size
_CODE = "from benchmarks.chat_training import chat_during_training_main as m; m()"


def measure_chat_during_training(model_dir: Path, turns: int = TURNS) -> Comparison:
    figures = run_direct(_CODE, str(model_dir), str(turns), name="chat during training run")
    idle = statistics.median(figures["idle_seconds"])
    training = statistics.median(figures["training_seconds"])
    step = statistics.median(figures["step_seconds"])
    details = {
        "idle_samples": [round(s, 4) for s in figures["idle_seconds"]],
        "training_samples": [round(s, 4) for s in figures["training_seconds"]],
        "median_step_seconds": round(step, 4),
        "steps_during_turns": figures["steps_during_turns"],
        "openblas": figures["openblas"],
    }
    label = "time to first token while training, vs idle"
    limit = round((idle + step) / idle, 2)  # idle plus one training step
    return Comparison(label, "s", training, idle, "the same turn, idle", limit, True, details)


def chat_during_training_main() -> None:
    """Child process: prints {idle_seconds, training_seconds, step_seconds, ...} as JSON."""
    import json

    from shammah_kernel.adapter_library import AdapterLibrary
    from shammah_kernel.blas import openblas_loaded
    from shammah_kernel.config import LoraSettings
    from shammah_kernel.events import GenerationOptions, Message, Role, TrainingState
    from shammah_kernel.learning import Learner
    from shammah_kernel.mlx_backend import MlxBackend
    from shammah_kernel.session import DEFAULT_SYSTEM_PROMPT
    from shammah_kernel.store import ExampleStore
    from shammah_kernel.worker import ModelWorker

    model_dir, turns = Path(sys.argv[1]), int(sys.argv[2])
    root = Path(tempfile.mkdtemp(prefix="shammah-bench-training-"))
    store = ExampleStore(root / "examples.db")
    system = Message(Role.SYSTEM, DEFAULT_SYSTEM_PROMPT)
    for i in range(EXAMPLES):
        question = Message(Role.USER, f"What is {i} squared, in Python?")
        store.add([system, question], f"`{i} ** 2`, which is {i * i}.", source="bench")
    worker: ModelWorker[MlxBackend] = ModelWorker(lambda _: MlxBackend(model_dir, "bench"), "bench")
    settings = LoraSettings(rank=8, alpha=16.0, dropout=0.0, batch_size=2, num_layers=8)
    settings.epochs = 1000  # longer than the turns take: cancelled once they are done
    # No replay questions: this measures turns between training steps, not replay answers.
    library = AdapterLibrary(root / "adapters")
    prompt = DEFAULT_SYSTEM_PROMPT
    learner = Learner(worker, lambda: store, library, settings, prompt, replay_questions=())
    step_times: list[float] = []
    learner.subscribe(lambda s: step_times.append(time.perf_counter()) if s.iteration else None)
    options = GenerationOptions(max_tokens=4, temperature=0.0)

    def first_token_seconds(i: int) -> float:
        messages = [system, Message(Role.USER, f"Name a Python builtin, #{i}.")]
        first = threading.Event()
        queued = time.perf_counter()
        stamp: list[float] = []

        def on_text(text: str) -> None:
            if text and not first.is_set():
                stamp.append(time.perf_counter())
                first.set()

        worker.submit(lambda b: b.generate(messages, options, on_text=on_text)).result(600)
        return stamp[0] - queued

    first_token_seconds(-1)  # load and warm up
    idle = [first_token_seconds(i) for i in range(turns)]
    learner.train()
    while learner.status.state is not TrainingState.TRAINING or learner.status.iteration < 5:
        time.sleep(0.05)
    before = len(step_times)
    # steps 2-5, before any turn: the first one also allocates the optimizer state
    steps = [b - a for a, b in zip(step_times[1:before], step_times[2:before], strict=False)]
    training = []
    for i in range(turns):
        # A user's turn arrives at any point of a step: spread the arrivals over one step.
        time.sleep(statistics.median(steps) * i / turns)
        training.append(first_token_seconds(turns + i))
    steps_during = len(step_times) - before
    learner.cancel()
    while learner.running:
        time.sleep(0.05)
    worker.stop()
    store.close()
    shutil.rmtree(root, ignore_errors=True)
    figures: dict[str, Any] = {
        "idle_seconds": idle,
        "training_seconds": training,
        "step_seconds": steps or [0.0],
        "steps_during_turns": steps_during,
        "openblas": openblas_loaded(),
    }
    print(json.dumps(figures))
