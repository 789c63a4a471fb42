"""The model worker: the one thread that owns the model and runs every job against it in order."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from .errors import ModelError
from .events import EngineState, EngineStatus

B = TypeVar("B")
T = TypeVar("T")
V = TypeVar("V")

StatusListener = Callable[[EngineStatus], object]
Loader = Callable[[Callable[[EngineStatus], None]], B]
Unsubscribe = Callable[[], None]


class Listeners(Generic[V]):
    """The callbacks told of each new value (a status); `subscribe` returns the unsubscribe.

    Any thread may subscribe, unsubscribe or notify. A listener that raises (a closed widget)
    is dropped, so a broken front end never stops the model or a training run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[object, Callable[[V], object]] = {}  # by token: one per subscribe

    def subscribe(self, listener: Callable[[V], object]) -> Unsubscribe:
        token = object()
        with self._lock:
            self._entries[token] = listener

        def unsubscribe() -> None:
            with self._lock:
                self._entries.pop(token, None)

        return unsubscribe

    def notify(self, value: V) -> None:
        with self._lock:
            entries = list(self._entries.items())
        for token, listener in entries:
            try:
                listener(value)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the sender
                with self._lock:
                    self._entries.pop(token, None)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(slots=True)
class _Job(Generic[B, T]):
    run: Callable[[B], T]
    future: Future[T]
    needs_backend: bool = True
    between_steps: bool = True  # may run between the steps of a long job (a chat turn may)


class ModelWorker(Generic[B]):
    """Loads a backend on its own thread, then serves jobs from a queue, one at a time.

    Callers never touch the backend directly: they `submit` a function and get a Future, so chat
    turns (and later adapter swaps and training steps) never run on the model at the same time.
    The loader reports its progress as `EngineStatus` snapshots; listeners see every one.
    """

    def __init__(self, load: Loader[B], model: str, *, name: str = "shammah-model-worker") -> None:
        self._load = load
        self._jobs: queue.Queue[_Job[B, object] | None] = queue.Queue()
        self._deferred: list[_Job[B, object] | None] = []  # held back by `serve_pending`
        self._status = EngineStatus(EngineState.INITIALIZING, model, "waiting to start")
        self.listeners: Listeners[EngineStatus] = Listeners()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.backend: B | None = None

    def start(self) -> None:
        with self._lock:
            if not self._thread.is_alive() and self._status.detail == "waiting to start":
                self.report(replace(self._status, detail="starting"))
                self._thread.start()

    @property
    def status(self) -> EngineStatus:
        return self._status

    @property
    def answering(self) -> bool:
        """Whether a local model is loaded and can take turns now."""
        return self.backend is not None

    def subscribe(self, listener: StatusListener) -> Unsubscribe:
        """Tell `listener` every new status until the returned function is called."""
        return self.listeners.subscribe(listener)

    def report(self, status: EngineStatus) -> None:
        """Record a new status (from any thread) and tell the listeners."""
        self._status = status
        self.listeners.notify(status)

    def submit(self, run: Callable[[B], T], *, between_steps: bool = True) -> Future[T]:
        """Queue ``run(backend)``. ``between_steps=False`` for jobs that change the model (an
        adapter swap, training): they never run inside another job's ``serve_pending``."""
        self.start()
        future: Future[T] = Future()
        self._jobs.put(_Job(run, future, between_steps=between_steps))  # type: ignore[arg-type]
        return future

    def has_pending(self) -> bool:
        return not self._jobs.empty()

    def serve_pending(self) -> int:
        """Run the queued jobs that may run between steps, now, on the worker thread.

        A long job (training) calls this between its steps so chat turns keep working; jobs
        that change the model wait until the long job has finished. Returns how many ran.
        """
        if threading.current_thread() is not self._thread:
            raise RuntimeError("serve_pending runs only on the model-worker thread")
        served = 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return served
            if job is None or not job.between_steps:
                self._deferred.append(job)
                continue
            self._serve(job)
            served += 1

    def swap(self, load: Loader[B]) -> Future[None]:
        """Load another backend on the worker thread, after the jobs already queued."""

        def run(_: B | None) -> None:
            self.backend = None  # release the old model's memory before loading the new one
            self.backend = load(self.report)

        future: Future[None] = Future()
        job = _Job(run, future, needs_backend=False, between_steps=False)
        self._jobs.put(job)  # type: ignore[arg-type]
        self.start()
        return future

    def stop(self, timeout: float = 5.0) -> None:
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self.backend = self._load(self.report)
        except Exception as e:  # the thread's top: every failure becomes a visible state
            self._fail(e)
        while (job := self._next_job()) is not None:
            self._serve(job)

    def _next_job(self) -> _Job[B, object] | None:
        return self._deferred.pop(0) if self._deferred else self._jobs.get()

    def _fail(self, error: BaseException) -> None:
        message = (
            str(error) if isinstance(error, ModelError) else f"{type(error).__name__}: {error}"
        )
        self.report(EngineStatus(EngineState.FAILED, self._status.model, message))

    def _serve(self, job: _Job[B, object]) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        if self.backend is None and job.needs_backend:
            job.future.set_exception(
                ModelError(f"The model is not available: {self._status.detail}")
            )
            return
        try:
            job.future.set_result(job.run(self.backend))  # type: ignore[arg-type]
        except BaseException as e:  # noqa: BLE001 - a job's failure belongs to its caller
            if not job.needs_backend:  # a failed swap leaves no model: say so
                self._fail(e)
            job.future.set_exception(e)
