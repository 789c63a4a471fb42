"""The learning loop's engine side: background LoRA training and which adapter answers.

Training is one job on the model worker. Between its steps it serves the chat turns queued
behind it (``ModelWorker.serve_pending``), with the model as it was before training, so the
assistant keeps answering. A finished run is applied to the loaded model (no reload) and then
published under ``adapters/<name>/``; a cancel or a failure leaves the previous adapter
answering and no folder behind.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import TYPE_CHECKING

from .adapter_library import AdapterLibrary
from .config import LoraSettings
from .errors import CommandError, ModelError
from .events import Message, Role, TrainingState, TrainingStatus
from .worker import Listeners, ModelWorker, Unsubscribe

if TYPE_CHECKING:
    from .mlx_backend import MlxBackend
    from .store import ExampleStore
    from .training import TrainingProgress
    from .training_data import TrainingExample

TrainingListener = Callable[[TrainingStatus], object]
_RUNNING = (TrainingState.PREPARING, TrainingState.TRAINING)
SWAP_TIMEOUT = 120.0  # seconds an adapter load/unload may wait for the turn ahead of it


class _Stopped(Exception):
    """A cancel seen while the replay answers are generated."""


class Learner:
    def __init__(
        self,
        worker: ModelWorker[MlxBackend],
        store: Callable[[], ExampleStore],
        library: AdapterLibrary,
        settings: LoraSettings,
        system_prompt: str,
        *,
        replay_questions: Sequence[str] | None = None,  # None: training_data's general ones
    ) -> None:
        self.worker = worker
        self.store = store
        self.library = library
        self.settings = settings
        self.system_prompt = system_prompt
        self.replay_questions = replay_questions
        self._status = TrainingStatus()
        self.listeners: Listeners[TrainingStatus] = Listeners()
        self._cancel = threading.Event()
        self._lock = threading.Lock()  # one train() at a time
        self._status_lock = threading.RLock()
        self._auto_paused_at: int | None = None  # buffer size when a run was cancelled or failed
        self.attach_problem = ""  # why the remembered adapter could not be applied at load

    # -- status ----------------------------------------------------------------------------------

    @property
    def status(self) -> TrainingStatus:
        return self._status

    @property
    def running(self) -> bool:
        return self._status.state in _RUNNING

    def subscribe(self, listener: TrainingListener) -> Unsubscribe:
        """Tell `listener` every new training status until the returned function is called."""
        return self.listeners.subscribe(listener)

    def _report(self, status: TrainingStatus | None = None, /, **changes: object) -> TrainingStatus:
        """Set the status (or change some of its fields) and tell the listeners.

        The kernel thread (refresh) and the worker (progress) both update it: the change and its
        delivery happen under one lock, so listeners see the updates in order and a refresh never
        puts back a state the worker has already left. Listeners only set widget traits.
        """
        with self._status_lock:
            base = self._status if status is None else status
            self._status = status = replace(base, **changes)  # type: ignore[arg-type]
            self.listeners.notify(status)
        return status

    def refresh(self, **changes: object) -> TrainingStatus:
        """Report the current status with the buffer and active adapter read afresh."""
        backend = self.worker.backend
        buffer = self.store().untrained_count()
        if backend is not None:
            changes.setdefault("active", backend.adapter)
        return self._report(buffer=buffer, **changes)

    # -- the adapter the model answers with ------------------------------------------------------

    def base_model(self) -> str:
        backend = self.worker.backend
        return backend.name if backend is not None else self.worker.status.model

    def attach(self, backend: MlxBackend) -> MlxBackend:
        """On the worker, right after a model loads: apply the adapter it last answered with."""
        self.library.recover()
        name = self.library.current(backend.name)
        self.attach_problem = ""
        if name and self.library.exists(name):
            try:
                backend.use_adapter(self.library.path(name), name)
            except ModelError as e:
                self.attach_problem = f"{e} The base model answers."
        elif name and self.library.path(name).exists():
            self.attach_problem = (
                f"The adapter {name} this model last used has no weights file; the base model "
                "answers (see /adapters list)."
            )
        self._settled(active=backend.adapter, buffer=self.store().untrained_count())
        return backend

    def _settled(self, **changes: object) -> None:
        """Report a change of the adapter in use; a finished run's outcome is no longer news."""
        if not self.running:
            changes.update(state=TrainingState.IDLE, detail="")
        self._report(**changes)

    def use(self, name: str | None) -> str:
        """Apply adapter ``name`` (None: the base model) to the loaded model, and remember it."""
        path = None if name is None else self.library.path(name)
        if path is not None and not path.is_dir():
            raise CommandError(f"There is no adapter named {name!r}; see /adapters list")
        with self._lock:
            if self.running:
                raise CommandError(
                    "Training is running: wait for it, or stop it with /train cancel, first."
                )
            if not self.worker.answering:
                raise CommandError(
                    "The local model is not loaded yet: switch adapters once it is (/status)."
                )

            def swap(backend: MlxBackend) -> str:  # on the worker: the model and the record agree
                backend.use_adapter(path, name or "")
                self.library.set_current(backend.name, name)
                return backend.name

            future = self.worker.submit(swap, between_steps=False)
        try:
            base = future.result(timeout=SWAP_TIMEOUT)  # a ModelError (wrong base...) propagates
        except FutureTimeout:
            raise CommandError(
                "The model is busy with a long turn: the switch happens as soon as it is done."
            ) from None
        self._settled(active=name or "", buffer=self.store().untrained_count())
        return base

    def start_new(self, name: str) -> None:
        """Make ``name`` the adapter the next run trains (from the buffer alone); base answers."""
        if self.library.path(name).exists():
            raise CommandError(f"An adapter named {name!r} exists already: /adapters load it.")
        self.use(None)
        self.library.set_current(self.base_model(), name)

    # -- training --------------------------------------------------------------------------------

    def train(self) -> str:
        """Queue a training run on the worker; returns which adapter it trains."""
        with self._lock:
            if self.running:
                raise CommandError("Training is already running: see /train status.")
            self._auto_paused_at = None
            name = self._adapter_for(self.base_model())
            count = len(self.store().for_adapter(name))
            if not count:
                raise CommandError(
                    "There are no examples to train on yet: rate answers with the feedback "
                    "widget, or /critical, /medium, /good."
                )
            self._cancel.clear()
            self._report(
                TrainingStatus(
                    TrainingState.PREPARING,
                    adapter=name,
                    active=self._status.active,
                    detail="waiting for the model",
                    examples=count,
                    buffer=self.store().untrained_count(),
                )
            )
        future: Future[None] = self.worker.submit(self._run, between_steps=False)
        future.add_done_callback(self._ended)
        return name

    def maybe_auto_train(self) -> str:
        """Start a run when ``[lora] auto_train`` is on and the buffer reached the threshold."""
        settings = self.settings
        if not settings.auto_train or self.running or not self.worker.answering:
            return ""
        buffer = self.store().untrained_count()
        if buffer < settings.auto_train_threshold:
            return ""
        if self._auto_paused_at is not None and buffer <= self._auto_paused_at:
            return ""  # after a cancel or a failure: only once new examples come in
        self._auto_paused_at = None
        try:
            return self.train()
        except CommandError:
            return ""

    def cancel(self) -> bool:
        """Stop the run between two steps; False when none runs."""
        if not self.running:
            return False
        self._cancel.set()
        return True

    def _ended(self, future: Future[None]) -> None:
        error = future.exception()
        if error is not None:
            message = str(error) if isinstance(error, ModelError | CommandError) else repr(error)
            self._auto_paused_at = self.store().untrained_count()
            self.refresh(state=TrainingState.FAILED, detail=f"Training failed: {message}")

    def _adapter_for(self, base_model: str) -> str:
        """The adapter a run for ``base_model`` trains: its current one, else a new name."""
        name = self.library.current(base_model)
        if name and self.library.exists(name) and self.library.info(name).base_model != base_model:
            name = None  # never overwrite an adapter of another model
        return name or self.library.next_name()

    def _cancelled(self, backend: MlxBackend, when: str) -> None:
        self._auto_paused_at = self.store().untrained_count()
        previous = backend.adapter or "the base model"
        self.refresh(
            state=TrainingState.CANCELLED, detail=f"Cancelled {when}; {previous} still answers."
        )

    def _run(self, backend: MlxBackend) -> None:
        from .training import train_adapter
        from .training_data import training_examples

        name = self._adapter_for(backend.name)  # the model loaded now, not the one asked about
        examples = training_examples(self.store().for_adapter(name))
        self.refresh(adapter=name, detail="the base model answers general questions (replay)")
        replay = [] if self._cancel.is_set() else self._replay(backend)
        if self._cancel.is_set():
            return self._cancelled(backend, "before training")
        self.refresh(state=TrainingState.TRAINING, detail="training", examples=len(examples))
        staged = self.library.staging_dir(name)
        result = train_adapter(
            backend.model,
            backend.tokenizer,
            examples,
            self.settings,
            replay=replay,
            out_dir=staged,
            base_model=backend.name,
            on_progress=self._progress,
            should_stop=self._cancel.is_set,
            step_hook=self.worker.serve_pending,
        )
        if result.cancelled or self._cancel.is_set():  # also a cancel during the last evaluation
            shutil.rmtree(staged, ignore_errors=True)
            return self._cancelled(backend, f"after {result.iterations} step(s)")
        try:
            backend.use_adapter(staged, name)  # in memory first: a failure changes nothing
        except ModelError:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        self.library.publish(name, staged)
        self.library.set_current(backend.name, name)
        self.store().mark_trained([e.example_id for e in examples if e.example_id], name)
        losses = f"loss {result.train_loss:.3f}"
        if result.val_loss is not None and result.initial_val_loss is not None:
            losses += f", validation {result.initial_val_loss:.3f} → {result.val_loss:.3f}"
        self.refresh(
            state=TrainingState.DONE,
            eta_seconds=0.0,
            detail=(
                f"Adapter {name} answers now: {len(examples)} example(s), "
                f"{result.iterations} steps in {result.seconds:.1f}s, {losses}."
            ),
        )

    def _progress(self, progress: TrainingProgress) -> None:
        self._report(
            state=TrainingState.TRAINING,
            iteration=progress.iteration,
            total=progress.total,
            train_loss=progress.train_loss,
            val_loss=progress.val_loss,
            tokens_per_second=progress.tokens_per_second,
            eta_seconds=progress.eta_seconds,
            detail="training",
        )

    def _replay(self, backend: MlxBackend) -> list[TrainingExample]:
        """The base model's own answers to general questions, made once per model and prompt."""
        from .adapters import install_modules, lora_modules, remove_adapter
        from .training_data import GENERAL_QUESTIONS, TrainingExample, make_replay_examples

        questions = GENERAL_QUESTIONS if self.replay_questions is None else self.replay_questions
        if not questions:
            return []
        context = (Message(Role.SYSTEM, self.system_prompt),)
        identity = "\n".join([backend.name, self.system_prompt, *questions])
        key = hashlib.sha256(identity.encode()).hexdigest()[:16]
        cache = self.library.root / ".replay" / f"{key}.json"
        try:
            saved = json.loads(cache.read_text(encoding="utf-8"))
            return [TrainingExample((*context, Message(Role.USER, q)), a, 1.0) for q, a in saved]
        except (OSError, ValueError, TypeError):
            pass
        model = backend.model
        applied = lora_modules(model)

        def serve_turns() -> None:  # with the adapter the turns expect back on the model
            if self.worker.has_pending():
                install_modules(model, applied)
                try:
                    self.worker.serve_pending()
                finally:
                    remove_adapter(model)
            if self._cancel.is_set():
                raise _Stopped

        remove_adapter(model)  # the base model's own answers
        try:
            replay = make_replay_examples(
                model, backend.tokenizer, questions, context=context, between_tokens=serve_turns
            )
        except _Stopped:
            return []
        finally:
            install_modules(model, applied)
        cache.parent.mkdir(parents=True, exist_ok=True)
        pairs = [[e.messages[-1].content, e.answer] for e in replay]
        cache.write_text(json.dumps(pairs), encoding="utf-8")
        return replay
