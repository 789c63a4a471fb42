"""One assistant per kernel (or per magics session): config, model choice, worker and chat session.

The kernel and the magics are thin adapters over this object; it holds no Jupyter code.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .adapter_library import AdapterLibrary
from .claude_link import ClaudeLink, resolve_api_key
from .collector import ExampleCollector
from .config import (
    ConfigProblem,
    ShammahConfig,
    config_path,
    load_config,
    models_dir,
    shammah_home,
)
from .consent import ConsentGate
from .crisis import CrisisDetector
from .engine import FetchedModel, Report, fetch_model, generation_options, load_backend, loader
from .errors import CommandError, ShammahError
from .events import EngineState, EngineStatus, Message, Role, Turn
from .feedback import Feedback
from .learning import Learner
from .model_choice import ModelChoice, ModelSource, choose_model, embedded_choice, resolve
from .permissions import PermissionPolicy
from .rule_store import RuleStore
from .secrets import register_secret, tool_environment
from .session import ChatSession
from .worker import ModelWorker

if TYPE_CHECKING:
    from .mlx_backend import MlxBackend
    from .store import ExampleStore


class Assistant:
    def __init__(self) -> None:
        self.config_file = config_path()
        self.config: ShammahConfig
        self.problems: list[ConfigProblem]
        self.config, self.problems = load_config(self.config_file)
        register_secret(self.config.api_key)  # scrubbed from tool output and records from now on
        self.choice = self._initial_choice()
        # Kernels start in the notebook's folder: the workspace tools read and search freely.
        self.workspace = Path.cwd()
        self.rules = RuleStore(workspace=self.workspace)
        self.problems += self.rules.problems()
        self.answering = self.choice  # what actually answers (the embedded model after a fallback)
        load = loader(self.choice, models_dir(), self.device, self._fetched)
        self.worker: ModelWorker[MlxBackend] = ModelWorker(
            lambda report: self.learner.attach(load(report)), self.choice.name
        )
        self.session = ChatSession(
            self.worker,
            generation_options(self.config.model),
            system_prompt=self.config.model.system_prompt,
            route=str(self.config.model.route),
            claude=self._claude(),
            crisis=self._crisis(),
            claude_share=self.config.sampling.claude_share,
            store=None,
            gate=ConsentGate(
                self.workspace,
                PermissionPolicy(store=self.rules),
                env=tool_environment(os.environ, self.config.tools.pass_env),
            ),
        )
        self._store: ExampleStore | None = None
        self._store_lock = threading.Lock()
        self.collector = ExampleCollector(self.store, self.config.lora)
        self.learner = Learner(
            self.worker,
            self.store,
            AdapterLibrary(shammah_home() / "adapters"),
            self.config.lora,
            self.session.system_prompt,
        )
        self.session.on_finished = self._collect

    @property
    def device(self) -> str:
        return str(self.config.model.device)

    def _initial_choice(self) -> ModelChoice:
        model = self.config.model
        try:
            return choose_model(model.id, str(model.size), self.config_file)
        except ShammahError as e:
            self.problems.append(ConfigProblem(self.config_file, "model.id", str(e)))
            return embedded_choice(f"{e}; the embedded offline model answers instead")

    def _claude(self) -> ClaudeLink | None:
        key = resolve_api_key(self.config.api_key)
        return ClaudeLink(key, model=self.config.claude_model) if key else None

    def _crisis(self) -> CrisisDetector:
        try:
            return CrisisDetector.from_file(self.config.crisis_keywords_path)
        except ShammahError as e:
            self.problems.append(ConfigProblem(self.config_file, "crisis_keywords_path", str(e)))
            return CrisisDetector()

    def store(self) -> ExampleStore:
        """The example store, opened on first use (the kernel's start need not touch SQLite)."""
        with self._store_lock:  # the kernel, turn, comm and worker threads all get here
            if self._store is None:
                from .store import ExampleStore

                self._store = ExampleStore(shammah_home() / "examples.db")
                self.session.store = self._store
            return self._store

    def take_notices(self) -> list[str]:
        """One-time messages for the next cell (a broken examples.db was moved aside...)."""
        notices = self.rules.notices()  # an untrusted project rule file, a rule migration
        if self._store is not None and (notice := self._store.take_notice()):
            notices.append(notice)
        return notices

    def _collect(self, turn: Turn, context: list[Message]) -> None:
        self.collector.collect(turn, context)
        self.learner.maybe_auto_train()

    def rate(self, turn: Turn, feedback: Feedback) -> str:
        """Store a rated answer as a weighted example; returns what was stored, for the user."""
        example, weight = self.collector.rate(turn, feedback)
        kept = "the better answer" if feedback.better_answer else "the answer as it is"
        text = f"Saved example #{example}: {feedback.rating.value} ({weight:g}x), learning {kept}."
        if started := self.learner.maybe_auto_train():
            text += f" Training adapter {started} started in the background."
        return text

    def give_feedback(self, feedback: Feedback) -> str:
        """Rate the last answer (the feedback commands)."""
        turns = self.session.conversation.turns
        if not turns:
            raise CommandError("There is no answer to rate yet: ask something first.")
        return f"{self.rate(turns[-1], feedback)} {self.collector.buffer_text()}"

    def propose_better(self, turn: Turn, note: str) -> str:
        """A better answer to ``turn``, by Claude when a key is set, else by the local model."""
        request = (
            "Your answer above needs improving"
            + (f": {note.strip()}" if note.strip() else ".")
            + " Write the better answer to my previous message. Reply with that answer only."
        )
        messages = [
            *self.collector.context_of(turn),
            Message(Role.ASSISTANT, turn.assistant),
            Message(Role.USER, request),
        ]
        options = self.session.options
        if self.session.claude is not None:
            return self.session.claude.generate(messages, options).text.strip()
        future = self.worker.submit(lambda backend: backend.generate(messages, options).text)
        return future.result().strip()

    @property
    def proposer(self) -> str:
        return "Claude" if self.session.claude is not None else "the local model"

    def _fetched(self, fetched: FetchedModel) -> None:
        self.answering = fetched.choice
        if fetched.fallback:
            self.session.fallback_notice = f"{fetched.fallback}. The embedded model answers."

    def start(self) -> None:
        """Begin fetching and loading the model in the background (idempotent)."""
        if self.session.claude is not None and self.session.claude_share > 0:
            self.store()
        self.worker.start()

    def select(self, spec: str) -> ModelChoice:
        """Switch to another model without a restart: fetch it in the background, then swap.

        The current model keeps answering until the new one is loaded.
        """
        choice = resolve(
            spec, ModelSource.SELECTED, f"selected with /model select {spec}", metal=_metal()
        )
        threading.Thread(
            target=self._switch, args=(choice,), name="shammah-model-select", daemon=True
        ).start()
        return choice

    def _switch(self, choice: ModelChoice) -> None:
        report = self.worker.report
        try:
            fetched = fetch_model(choice, models_dir(), report)
        except Exception as e:  # the thread's top: surface the failure in the status
            report(EngineStatus(EngineState.FAILED, choice.name, f"{type(e).__name__}: {e}"))
            return

        def load(report: Report) -> MlxBackend:
            backend = self.learner.attach(load_backend(fetched, self.device, report))
            self.choice = choice
            self._fetched(fetched)
            return backend

        self.worker.swap(load)

    def shutdown(self) -> None:
        self.worker.stop()
        if self._store is not None:
            self._store.close()


def _metal() -> bool:
    from .model_choice import apple_silicon

    return apple_silicon()
