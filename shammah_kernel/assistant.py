"""One assistant per kernel (or per magics session): config, model choice, worker and chat session.

The kernel and the magics are thin adapters over this object; it holds no Jupyter code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ConfigProblem, ShammahConfig, config_path, load_config, models_dir
from .engine import backend_loader, generation_options
from .model_choice import ModelChoice, choose_model
from .session import ChatSession
from .worker import ModelWorker

if TYPE_CHECKING:
    from .mlx_backend import MlxBackend


class Assistant:
    def __init__(self) -> None:
        self.config_file = config_path()
        self.config: ShammahConfig
        self.problems: list[ConfigProblem]
        self.config, self.problems = load_config(self.config_file)
        self.choice: ModelChoice = choose_model(self.config.model.id, self.config_file)
        loader = backend_loader(self.choice, models_dir(), str(self.config.model.device))
        self.worker: ModelWorker[MlxBackend] = ModelWorker(loader)
        self.session = ChatSession(
            self.worker,
            generation_options(self.config.model),
            system_prompt=self.config.model.system_prompt,
        )

    def start(self) -> None:
        """Begin loading the model in the background (idempotent)."""
        self.worker.start()

    def shutdown(self) -> None:
        self.worker.stop()
