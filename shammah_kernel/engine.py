"""Assembles the engine for a session: the model choice, its loader, and the model worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ModelSettings
from .events import GenerationOptions
from .model_choice import ModelChoice

if TYPE_CHECKING:
    from .mlx_backend import MlxBackend


def generation_options(model: ModelSettings) -> GenerationOptions:
    """The generation options derived from the config's [model] section."""
    return GenerationOptions(
        max_tokens=model.max_tokens,
        temperature=model.temperature,
        top_p=model.top_p,
        repetition_penalty=model.repetition_penalty,
        context_length=model.context_length,
    )


def backend_loader(
    choice: ModelChoice, models_dir: Path, device: str
) -> Callable[[Callable[[str], None]], MlxBackend]:
    """A function the worker runs on its own thread to make the backend (imports MLX there)."""

    def load(progress: Callable[[str], None]) -> MlxBackend:
        from .mlx_backend import MlxBackend, set_device

        progress("starting MLX")
        active_device = set_device(device)
        path = choice.path
        if path is None:
            from .embedded import ensure_embedded_model

            progress("preparing the embedded model (converted once, then reused)")
            path = ensure_embedded_model(models_dir, progress=progress)
        progress(f"loading {choice.name} on the {active_device.upper()}")
        return MlxBackend(path, choice.name)

    return load
