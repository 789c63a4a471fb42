"""The engine status card: what the model is doing (downloading, loading, ready, failed), and the
background training of a LoRA adapter."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anywidget
import traitlets

from ..events import EngineState, EngineStatus, TrainingState, TrainingStatus

_TROUBLE = (EngineState.FAILED, EngineState.OFFLINE)
V = TypeVar("V", covariant=True)


class StatusSource(Protocol[V]):
    """What a card follows: the model worker (EngineStatus) or the learner (TrainingStatus)."""

    @property
    def status(self) -> V: ...

    def subscribe(self, listener: Callable[[V], None], /) -> Callable[[], None]: ...


def format_bytes(n: float) -> str:
    """Decimal units, as Hugging Face shows download sizes: `512 B`, `412.0 MB`, `1.6 GB`."""
    if n < 1000:
        return f"{max(n, 0):.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def format_duration(seconds: float) -> str:
    """`45s`, `1m38s`, `2h05m`: whole seconds, rounded up so a nearly done ETA never reads 0s."""
    total = max(math.ceil(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _progress(status: EngineStatus) -> str:
    done, total = status.downloaded_bytes, status.total_bytes
    parts = [format_bytes(done)]
    if total > 0:
        parts[0] += f" / {format_bytes(total)} ({min(100 * done // total, 100)}%)"
    if status.bytes_per_second > 0:
        parts.append(f"{format_bytes(status.bytes_per_second)}/s")
    if status.eta_seconds is not None and status.eta_seconds >= 0:
        parts.append(f"ETA {format_duration(status.eta_seconds)}")
    return ", ".join(parts)


def status_text(status: EngineStatus) -> str:
    """The plain-text card, for terminals and front ends that cannot render widgets."""
    line = f"{status.model or 'Shammah'}: {status.state.value}"
    if status.state is EngineState.DOWNLOADING:
        line += f" {_progress(status)}"
    if status.detail:
        line += f" ({status.detail})"
    if status.hint and status.state in _TROUBLE:
        line += f"\n{status.hint}"
    return line


def _training_numbers(status: TrainingStatus) -> str:
    parts = [
        f"iter {status.iteration}/{status.total}" if status.total else f"iter {status.iteration}"
    ]
    if status.train_loss is not None:
        parts.append(f"loss {status.train_loss:.3f}")
        if status.val_loss is not None:
            parts[-1] += f" (val {status.val_loss:.3f})"
    elif status.val_loss is not None:
        parts.append(f"val loss {status.val_loss:.3f}")
    if status.tokens_per_second > 0:
        parts.append(f"{status.tokens_per_second:.0f} tok/s")
    if status.eta_seconds is not None and status.eta_seconds >= 0:
        parts.append(f"ETA {format_duration(status.eta_seconds)}")
    return ", ".join(parts)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def training_text(status: TrainingStatus) -> str:
    """The adapter in use and the training run, in one or two plain lines; "" when idle with no
    adapter and no new examples."""
    if status.state is TrainingState.IDLE and not (status.active or status.buffer):
        return ""
    active = status.active or "none (base model)"
    lines = [f"Adapter: {active}, buffer: {_plural(status.buffer, 'new example')}"]
    if status.state is not TrainingState.IDLE:
        run = f"Training adapter {status.adapter}" if status.adapter else "Training"
        if status.examples:
            run += f" ({_plural(status.examples, 'example')})"
        if status.state is TrainingState.TRAINING:
            run += f": {_training_numbers(status)}"
        else:
            run += f": {status.state.value}"
        if status.detail:
            run += f" ({status.detail})"
        lines.append(run)
    return "\n".join(lines)


class StatusWidget(anywidget.AnyWidget):
    """A card with the engine's state and the adapter training; `show()` and `show_training()`
    may be called from any thread."""

    _esm = Path(__file__).with_name("status.js")
    _css = Path(__file__).with_name("status.css")

    state = traitlets.Unicode(
        EngineState.INITIALIZING.value, help="One of the EngineState values."
    ).tag(sync=True)
    model = traitlets.Unicode("", help="The model's name, as the user chose it.").tag(sync=True)
    detail = traitlets.Unicode("", help="The current step, or what went wrong.").tag(sync=True)
    hint = traitlets.Unicode("", help="What the user can do about a failure.").tag(sync=True)
    downloaded_bytes = traitlets.Int(0, help="Bytes downloaded so far.").tag(sync=True)
    total_bytes = traitlets.Int(0, help="Bytes to download in all; 0 = unknown.").tag(sync=True)
    bytes_per_second = traitlets.Float(0.0, help="Download rate in bytes/s.").tag(sync=True)
    eta_seconds = traitlets.Float(-1.0, help="Seconds left to download; -1 = unknown.").tag(
        sync=True
    )
    # Training traits; a float that may be unknown (None in TrainingStatus) is -1 here, as
    # eta_seconds above: losses, rates and durations are never negative, and JSON has no NaN.
    training_state = traitlets.Unicode(
        TrainingState.IDLE.value, help="One of the TrainingState values."
    ).tag(sync=True)
    training_adapter = traitlets.Unicode(
        "", help="The adapter being trained, or the one just finished."
    ).tag(sync=True)
    active_adapter = traitlets.Unicode(
        "", help="The adapter answering now; empty = the base model."
    ).tag(sync=True)
    training_detail = traitlets.Unicode(
        "", help="The training step, its outcome, or what went wrong."
    ).tag(sync=True)
    iteration = traitlets.Int(0, help="Training iterations done.").tag(sync=True)
    total_iterations = traitlets.Int(0, help="Training iterations in all; 0 = unknown.").tag(
        sync=True
    )
    train_loss = traitlets.Float(-1.0, help="The latest training loss; -1 = none yet.").tag(
        sync=True
    )
    val_loss = traitlets.Float(-1.0, help="The latest validation loss; -1 = none yet.").tag(
        sync=True
    )
    training_tokens_per_second = traitlets.Float(
        0.0, help="Training throughput in tokens/s; 0 = unknown."
    ).tag(sync=True)
    training_eta_seconds = traitlets.Float(-1.0, help="Seconds left to train; -1 = unknown.").tag(
        sync=True
    )
    training_examples = traitlets.Int(0, help="Examples in this run (train + validation).").tag(
        sync=True
    )
    training_buffer = traitlets.Int(0, help="Stored examples no adapter has trained on yet.").tag(
        sync=True
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # hold_sync keeps its pending keys on the instance: two threads must not interleave there.
        self._show_lock = threading.Lock()
        self._on_close: list[Callable[[], None]] = []
        if self.comm is not None:  # the front end closing the comm closes the widget
            self.comm.on_close(lambda _message: self.close())

    def on_close(self, callback: Callable[[], None]) -> None:
        """Run `callback` once when the widget is closed, from Python or by the front end."""
        self._on_close.append(callback)

    def close(self) -> None:
        super().close()
        self.layout.close()  # its own comm, made for this widget alone
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback()

    def show(self, status: EngineStatus) -> None:
        """Set every trait from `status`; the front end gets one update message."""
        with self._show_lock, self.hold_sync():
            self.state = status.state.value
            self.model = status.model
            self.detail = status.detail
            self.hint = status.hint
            self.downloaded_bytes = status.downloaded_bytes
            self.total_bytes = status.total_bytes
            self.bytes_per_second = float(status.bytes_per_second)
            self.eta_seconds = _or_unknown(status.eta_seconds)

    @property
    def status(self) -> EngineStatus:
        """The snapshot the widget shows now."""
        return EngineStatus(
            state=EngineState(self.state),
            model=self.model,
            detail=self.detail,
            hint=self.hint,
            downloaded_bytes=self.downloaded_bytes,
            total_bytes=self.total_bytes,
            bytes_per_second=self.bytes_per_second,
            eta_seconds=_known(self.eta_seconds),
        )

    def show_training(self, status: TrainingStatus) -> None:
        """Set every training trait from `status`, in one update message; any thread may call it."""
        with self._show_lock, self.hold_sync():
            self.training_state = status.state.value
            self.training_adapter = status.adapter
            self.active_adapter = status.active
            self.training_detail = status.detail
            self.iteration = status.iteration
            self.total_iterations = status.total
            self.train_loss = _or_unknown(status.train_loss)
            self.val_loss = _or_unknown(status.val_loss)
            self.training_tokens_per_second = float(status.tokens_per_second)
            self.training_eta_seconds = _or_unknown(status.eta_seconds)
            self.training_examples = status.examples
            self.training_buffer = status.buffer

    @property
    def training(self) -> TrainingStatus:
        """The training snapshot the widget shows now."""
        return TrainingStatus(
            state=TrainingState(self.training_state),
            adapter=self.training_adapter,
            active=self.active_adapter,
            detail=self.training_detail,
            iteration=self.iteration,
            total=self.total_iterations,
            train_loss=_known(self.train_loss),
            val_loss=_known(self.val_loss),
            tokens_per_second=self.training_tokens_per_second,
            eta_seconds=_known(self.training_eta_seconds),
            examples=self.training_examples,
            buffer=self.training_buffer,
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            text, training = status_text(self.status), training_text(self.training)
            bundle[0]["text/plain"] = f"{text}\n{training}" if training else text
        return bundle


class StatusCard:
    """A status widget that follows the engine and the training until it is closed.

    Closing it (`close`, the front end closing its comm, or an update that fails to send)
    drops both subscriptions, so a card nobody sees costs nothing.
    """

    def __init__(
        self, engine: StatusSource[EngineStatus], training: StatusSource[TrainingStatus]
    ) -> None:
        self.widget = widget = StatusWidget()
        widget.show(engine.status)
        widget.show_training(training.status)
        self._unsubscribe = [
            engine.subscribe(self._guarded(widget.show)),
            training.subscribe(self._guarded(widget.show_training)),
        ]
        widget.on_close(self._drop_subscriptions)

    @property
    def closed(self) -> bool:
        return not self._unsubscribe

    def close(self) -> None:
        self.widget.close()  # its on_close drops the subscriptions
        self._drop_subscriptions()

    def bundle(self) -> dict[str, Any] | None:
        """The display data that shows the card in a cell; None once closed."""
        shown = None if self.closed else self.widget._repr_mimebundle_()
        return None if shown is None else shown[0]

    def _drop_subscriptions(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, []
        for drop in unsubscribe:
            drop()

    def _guarded(self, show: Callable[[Any], None]) -> Callable[[Any], None]:
        def deliver(status: Any) -> None:
            try:
                show(status)
            except Exception:  # noqa: BLE001 - the front end is gone: stop following
                self.close()

        return deliver


class StatusCards:
    """At most one live status card per cell: a newer card in a cell closes the one before it.

    `cell` is the front end's cell id (None for a terminal, where one card stands for all);
    `run` tells one execution of a cell from the next, so one run shows one card however many
    times it asks.
    """

    def __init__(
        self, engine: StatusSource[EngineStatus], training: StatusSource[TrainingStatus]
    ) -> None:
        self._engine, self._training = engine, training
        self._cards: dict[str | None, tuple[Hashable, StatusCard]] = {}
        self._lock = threading.Lock()

    def open(self, cell: str | None, run: Hashable) -> dict[str, Any] | None:
        """A new card for `cell`, as display data; None when this run already shows one."""
        with self._lock:
            shown = self._cards.get(cell)
            if shown is not None and shown[0] == run and not shown[1].closed:
                return None
            card = StatusCard(self._engine, self._training)
            self._cards[cell] = (run, card)
        if shown is not None:
            shown[1].close()
        return card.bundle()

    def close_all(self) -> None:
        with self._lock:
            cards, self._cards = list(self._cards.values()), {}
        for _run, card in cards:
            card.close()

    @property
    def live(self) -> int:
        """How many cards still follow the status."""
        return sum(not card.closed for _run, card in list(self._cards.values()))


def _or_unknown(value: float | None) -> float:
    return -1.0 if value is None else float(value)


def _known(value: float) -> float | None:
    return None if value < 0 else value
