"""LoRA fine-tuning: train an adapter on weighted examples, written as an ``adapters`` folder.

Training runs mlx-lm's training step and ``evaluate`` with the weighted loss and batches of
``training_data``, in a loop of ours (``_train_loop``) that calls a ``TrainingCallback`` for
progress, cancellation and ``step_hook``. Not ``mlx_lm.tuner.trainer.train`` itself: it always
draws mlx-lm's TrainUI on stdout and sets Metal's wired limit for the whole process, and the
magics run Shammah in the user's own process. Only the model-worker thread calls these functions.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten
from mlx_lm.tuner import trainer
from mlx_lm.tuner.callbacks import TrainingCallback
from mlx_lm.tuner.trainer import TrainingArgs
from mlx_lm.tuner.utils import linear_to_lora_layers, remove_lora_layers

from .adapters import (
    ADAPTER_FILE,
    Modules,
    adapter_config,
    install_modules,
    lora_modules,
    publish_adapter,
)
from .errors import ModelError
from .training_data import (
    TokenizedExample,
    TrainingExample,
    iterate_weighted_batches,
    split_validation,
    tokenize,
    weighted_loss,
)

MAX_SEQ_LENGTH = 2048


class LoraOptions(Protocol):
    """The ``[lora]`` settings training reads (``config.LoraSettings`` has them)."""

    rank: int
    alpha: float
    dropout: float
    learning_rate: float
    batch_size: int
    epochs: int
    target_modules: list[str]
    num_layers: int


@dataclass(frozen=True, slots=True)
class TrainingProgress:
    iteration: int
    total: int
    train_loss: float  # weighted loss of this step
    val_loss: float | None  # the latest validation loss, None without a validation set
    tokens_per_second: float
    eta_seconds: float


@dataclass(frozen=True, slots=True)
class TrainingResult:
    adapter_dir: Path | None  # None when cancelled
    cancelled: bool
    iterations: int  # steps done
    train_loss: float | None  # mean weighted loss over the last epoch's steps
    val_loss: float | None  # after training
    initial_val_loss: float | None  # the base model's, before the first step
    seconds: float


class _Cancelled(Exception):
    """Raised from the training callback when ``should_stop()`` says so."""


def training_args(settings: LoraOptions, train_count: int, adapter_file: Path) -> TrainingArgs:
    """mlx-lm's TrainingArgs for ``train_count`` examples: every derived number is set here.

    A batch never exceeds the examples; each epoch is one pass in ceil(n / batch) batches.
    ``steps_per_report=1``: the callback runs after every step (progress, stop, step_hook).
    """
    batch_size = min(settings.batch_size, train_count)
    per_epoch = math.ceil(train_count / batch_size)
    iters = settings.epochs * per_epoch
    return TrainingArgs(
        batch_size=batch_size,
        iters=iters,
        val_batches=-1,
        steps_per_report=1,
        steps_per_eval=per_epoch,
        steps_per_save=iters + 1,  # no mid-run checkpoints: only the final file
        max_seq_length=MAX_SEQ_LENGTH,
        adapter_file=str(adapter_file),
    )


def lora_parameters(model: nn.Module, settings: LoraOptions) -> tuple[int, dict[str, Any]]:
    """(num_layers, mlx-lm ``lora_parameters``); target names become paths inside a block."""
    layers = model.layers
    block = dict(layers[-1].named_modules())
    keys = []
    for target in settings.target_modules:
        found = [p for p in block if p == target or p.endswith("." + target)]
        if not found or not all(
            isinstance(block[p], nn.Linear | nn.QuantizedLinear) for p in found
        ):
            raise ModelError(f"[lora] target_modules: the model has no linear layer {target!r}")
        keys += found
    scale = settings.alpha / settings.rank
    params = {"rank": settings.rank, "scale": scale, "dropout": settings.dropout, "keys": keys}
    return min(settings.num_layers, len(layers)), params


def train_adapter(
    model: nn.Module,
    tokenizer: Any,
    examples: Sequence[TrainingExample],
    settings: LoraOptions,
    *,
    replay: Sequence[TrainingExample],
    out_dir: Path,
    base_model: str,
    on_progress: Callable[[TrainingProgress], None],
    should_stop: Callable[[], bool],
    step_hook: Callable[[], object] | None = None,
    seed: int = 0,
) -> TrainingResult:
    """Train a LoRA adapter on ``examples`` (+ ``replay``, train-only) and write it to ``out_dir``.

    The files appear at once (written in a hidden sibling, then renamed) or not at all: a cancel
    or an error leaves no folder. The model comes back as it came (an applied adapter included),
    bit for bit. ``step_hook`` runs between steps with the model in that original state.
    """
    if not examples:
        raise ModelError("There are no examples to train on.")
    if out_dir.exists():
        raise ModelError(f"The adapter folder {out_dir} already exists.")
    train_set, val_set = split_validation(examples, seed=seed)
    train_rows = [tokenize(tokenizer, e, MAX_SEQ_LENGTH) for e in [*train_set, *replay]]
    val_rows = [tokenize(tokenizer, e, MAX_SEQ_LENGTH) for e in val_set]
    partial = out_dir.parent / f".{out_dir.name}.partial"
    args = training_args(settings, len(train_rows), partial / ADAPTER_FILE)
    reporter = _Reporter(model, args.iters, on_progress, should_stop, step_hook)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        with _training_layout(model) as reporter.applied, _seeded(seed):
            num_layers, lora = lora_parameters(model, settings)
            linear_to_lora_layers(model, num_layers, lora)
            val_loss = _run_trainer(model, settings, train_rows, val_rows, args, reporter)
        train_loss = statistics.fmean(reporter.train_losses[-args.steps_per_eval :])
        if not math.isfinite(train_loss):
            raise ModelError("Training diverged; a lower [lora] learning_rate may help.")
        seconds = time.monotonic() - reporter.started
        result = TrainingResult(
            out_dir, False, args.iters, train_loss, val_loss, reporter.initial_val_loss, seconds
        )
        config = adapter_config(base_model, num_layers, lora, args.batch_size, args.iters)
        metadata = _metadata(base_model, train_set, val_set, replay, result, settings)
        publish_adapter(partial, out_dir, config, metadata)
        return result
    except _Cancelled:
        seconds = time.monotonic() - reporter.started
        return TrainingResult(None, True, len(reporter.train_losses), None, None, None, seconds)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _run_trainer(
    model: nn.Module,
    settings: LoraOptions,
    train_rows: Sequence[TokenizedExample],
    val_rows: Sequence[TokenizedExample],
    args: TrainingArgs,
    reporter: _Reporter,
) -> float | None:
    """The training loop with the weighted seams; the validation loss after the last step."""
    _train_loop(
        model,
        optim.Adam(learning_rate=settings.learning_rate),
        train_rows,
        val_rows,
        args,
        reporter,
    )
    if not val_rows:
        return None
    return _validation_loss(model, val_rows, args)


def _validation_loss(
    model: nn.Module, val_rows: Sequence[TokenizedExample], args: TrainingArgs
) -> float:
    loss = trainer.evaluate(
        model,
        val_rows,
        args.batch_size,
        num_batches=-1,
        max_seq_length=args.max_seq_length,
        loss=weighted_loss,
        iterate_batches=iterate_weighted_batches,
    )
    return float(loss)


def _train_loop(
    model: nn.Module,
    optimizer: optim.Optimizer,
    train_rows: Sequence[TokenizedExample],
    val_rows: Sequence[TokenizedExample],
    args: TrainingArgs,
    callback: TrainingCallback,
) -> None:
    """mlx-lm 0.32's ``trainer.train`` on one device without gradient accumulation, step for
    step, minus its TrainUI and wired limit; it saves ``args.adapter_file`` at the end."""
    loss_value_and_grad = nn.value_and_grad(model, weighted_loss)
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(batch: tuple[mx.array, ...]) -> tuple[mx.array, mx.array]:
        (value, tokens), grad = loss_value_and_grad(model, *batch)
        optimizer.update(model, grad)
        return value, tokens

    model.train()
    batches = iterate_weighted_batches(train_rows, args.batch_size, args.max_seq_length, loop=True)
    trained_tokens = 0
    for it, batch in zip(range(1, args.iters + 1), batches, strict=False):
        if val_rows and (it == 1 or it % args.steps_per_eval == 0 or it == args.iters):
            started = time.perf_counter()
            val_loss = _validation_loss(model, val_rows, args)
            model.train()
            info = {"iteration": it - 1, "val_loss": val_loss}
            callback.on_val_loss_report(info | {"val_time": time.perf_counter() - started})
        started = time.perf_counter()
        value, tokens = step(batch)
        mx.eval(state, value, tokens)
        if mx.get_cache_memory() > 0:  # as the trainer does (clear_cache_threshold = 0)
            mx.clear_cache()
        seconds = time.perf_counter() - started
        step_tokens = cast("int", tokens.item())
        trained_tokens += step_tokens
        callback.on_train_loss_report(
            {
                "iteration": it,
                "train_loss": value.item(),
                "learning_rate": optimizer.learning_rate.item(),
                "iterations_per_second": 1 / seconds,
                "tokens_per_second": step_tokens / seconds,
                "trained_tokens": trained_tokens,
                "peak_memory": mx.get_peak_memory() / 1e9,
            }
        )
    weights = dict(tree_flatten(model.trainable_parameters()))
    mx.save_safetensors(str(args.adapter_file), weights)


class _Reporter(TrainingCallback):
    """Progress after every step; raises ``_Cancelled`` on stop; serves ``step_hook``."""

    def __init__(
        self,
        model: nn.Module,
        total: int,
        on_progress: Callable[[TrainingProgress], None],
        should_stop: Callable[[], bool],
        step_hook: Callable[[], object] | None,
    ) -> None:
        self.model, self.total = model, total
        self.applied: Modules = []  # the adapter the model came with, served to step_hook
        self.on_progress, self.should_stop, self.step_hook = on_progress, should_stop, step_hook
        self.started = time.monotonic()
        self.train_losses: list[float] = []
        self.val_loss: float | None = None
        self.initial_val_loss: float | None = None

    def on_val_loss_report(self, val_info: dict[str, Any]) -> None:
        self.val_loss = float(val_info["val_loss"])
        if val_info["iteration"] == 0:
            self.initial_val_loss = self.val_loss
        if self.should_stop():
            raise _Cancelled

    def on_train_loss_report(self, train_info: dict[str, Any]) -> None:
        # The loop calls this after each step's mx.eval and before it draws the next batch, and
        # times its steps without it: a natural point between steps.
        iteration = int(train_info["iteration"])
        self.train_losses.append(float(train_info["train_loss"]))
        elapsed = time.monotonic() - self.started
        self.on_progress(
            TrainingProgress(
                iteration,
                self.total,
                self.train_losses[-1],
                self.val_loss,
                float(train_info["tokens_per_second"]),
                elapsed / iteration * (self.total - iteration),
            )
        )
        if self.should_stop():
            raise _Cancelled
        if self.step_hook is not None and iteration < self.total:
            with _serving(self.model, self.applied):
                self.step_hook()


@contextlib.contextmanager
def _training_layout(model: nn.Module) -> Iterator[Modules]:
    """Detach an applied adapter and freeze the base for training; restore both afterwards."""
    applied = lora_modules(model)
    was_training = model.training
    was_trainable = bool(tree_flatten(model.trainable_parameters()))
    remove_lora_layers(model)
    model.freeze()
    try:
        yield applied
    finally:
        remove_lora_layers(model)
        install_modules(model, applied)
        if was_trainable:  # mlx-lm loads models all-trainable; generation ignores the flags
            model.unfreeze()
        model.train(was_training)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """MLX's process-wide random key set to ``seed``, then put back: mlx-lm's LoRA layers draw
    their initial values from that key (no key parameter), and the caller's sequence must go on
    after training as if it had not run."""
    key: mx.array = mx.random.state[0]  # type: ignore[index]
    high, low = cast("list[int]", key.tolist())
    mx.random.seed(seed)
    try:
        yield
    finally:
        mx.random.seed(high << 32 | low)


@contextlib.contextmanager
def _serving(model: nn.Module, applied: Modules) -> Iterator[None]:
    """The model as it was before training (eval mode), for the duration of a step_hook."""
    trained = lora_modules(model)
    remove_lora_layers(model)
    install_modules(model, applied)
    model.eval()
    try:
        yield
    finally:
        remove_lora_layers(model)
        install_modules(model, trained)
        model.train()


def _metadata(
    base_model: str,
    train_set: Sequence[TrainingExample],
    val_set: Sequence[TrainingExample],
    replay: Sequence[TrainingExample],
    result: TrainingResult,
    settings: LoraOptions,
) -> dict[str, Any]:
    return {
        "format": 1,
        "base_model": base_model,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "examples": [{"id": e.example_id, "weight": e.weight} for e in train_set],
        "validation_examples": [{"id": e.example_id, "weight": e.weight} for e in val_set],
        "replay_examples": len(replay),
        "iterations": result.iterations,
        "train_loss": result.train_loss,
        "val_loss": result.val_loss,
        "initial_val_loss": result.initial_val_loss,
        "seconds": round(result.seconds, 3),
        "settings": {name: getattr(settings, name) for name in LoraOptions.__annotations__},
    }
