"""The model worker: the one thread that owns the model and runs every job against it in order."""

from __future__ import annotations

import enum
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from .errors import ModelError

B = TypeVar("B")
T = TypeVar("T")


class WorkerState(enum.Enum):
    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    state: WorkerState
    detail: str


@dataclass(slots=True)
class _Job(Generic[B, T]):
    run: Callable[[B], T]
    future: Future[T]


class ModelWorker(Generic[B]):
    """Loads a backend on its own thread, then serves jobs from a queue, one at a time.

    Callers never touch the backend directly: they `submit` a function and get a Future, so chat
    turns (and later adapter swaps and training steps) never run on the model at the same time.
    """

    def __init__(
        self, load: Callable[[Callable[[str], None]], B], *, name: str = "shammah-model-worker"
    ) -> None:
        self._load = load
        self._jobs: queue.Queue[_Job[B, object] | None] = queue.Queue()
        self._status = WorkerStatus(WorkerState.STARTING, "waiting to start")
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.backend: B | None = None

    def start(self) -> None:
        with self._lock:
            if not self._thread.is_alive() and self._status.state is WorkerState.STARTING:
                self._report(WorkerState.LOADING, "loading the model")
                self._thread.start()

    @property
    def status(self) -> WorkerStatus:
        return self._status

    def submit(self, run: Callable[[B], T]) -> Future[T]:
        self.start()
        future: Future[T] = Future()
        self._jobs.put(_Job(run, future))  # type: ignore[arg-type]
        return future

    def stop(self, timeout: float = 5.0) -> None:
        self._jobs.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _report(self, state: WorkerState, detail: str) -> None:
        self._status = WorkerStatus(state, detail)

    def _run(self) -> None:
        try:
            self.backend = self._load(lambda detail: self._report(WorkerState.LOADING, detail))
            self._report(WorkerState.READY, "ready")
        except Exception as e:  # the thread's top: every failure becomes a visible state
            message = str(e) if isinstance(e, ModelError) else f"{type(e).__name__}: {e}"
            self._report(WorkerState.FAILED, message)
        while (job := self._jobs.get()) is not None:
            self._serve(job)
        self._report(WorkerState.STOPPED, "stopped")

    def _serve(self, job: _Job[B, object]) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        if self.backend is None:
            job.future.set_exception(
                ModelError(f"The model is not available: {self._status.detail}")
            )
            return
        try:
            job.future.set_result(job.run(self.backend))
        except BaseException as e:  # noqa: BLE001 - a job's failure belongs to its caller
            job.future.set_exception(e)
