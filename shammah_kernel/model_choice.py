"""Which local model answers, and why: the decision `/model status` explains to the user."""

from __future__ import annotations

import enum
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import CommandError

EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
SIZES = ("0.5B", "1.5B", "3B", "7B", "14B")
MODEL_VARIABLE = "SHAMMAH_MODEL"
GIB = 1024**3

# Total RAM (GiB) from which each size is the default. Machines sold as "8 GB" report a little
# less than 8 GiB, hence the slack below each round figure.
_RAM_STEPS = ((60.0, "14B"), (30.0, "7B"), (15.0, "3B"), (7.5, "1.5B"), (0.0, "0.5B"))


class ModelSource(enum.Enum):
    CONFIGURED = "configured"  # [model] id or size in config.toml
    ENVIRONMENT = "environment"  # SHAMMAH_MODEL
    SELECTED = "selected"  # /model select
    BY_RAM = "by RAM"
    EMBEDDED = "embedded"


@dataclass(frozen=True, slots=True)
class ModelChoice:
    name: str
    source: ModelSource
    reason: str
    repo_id: str | None = None  # a Hugging Face repo to use from the cache or download
    path: Path | None = None  # a local folder; None with a repo, or for the embedded model

    @property
    def embedded(self) -> bool:
        return self.repo_id is None and self.path is None


def apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def total_ram() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def size_for_ram(ram_bytes: int) -> str:
    gib = ram_bytes / GIB
    return next(size for floor, size in _RAM_STEPS if gib >= floor)


def repo_for_size(size: str, *, metal: bool) -> str:
    """MLX 4-bit weights on Apple silicon; elsewhere the official weights (dense, CPU-friendly)."""
    if size not in SIZES:
        raise CommandError(f"Unknown model size {size!r}; choose one of {', '.join(SIZES)}")
    if metal:
        return f"mlx-community/Qwen2.5-{size}-Instruct-4bit"
    return f"Qwen/Qwen2.5-{size}-Instruct"


def embedded_choice(reason: str) -> ModelChoice:
    return ModelChoice(EMBEDDED_MODEL_NAME, ModelSource.EMBEDDED, reason)


def resolve(spec: str, source: ModelSource, reason: str, *, metal: bool) -> ModelChoice:
    """A choice from `SIZE`, a local folder, `embedded`, or a Hugging Face repo id."""
    spec = spec.strip()
    if spec.lower() == "embedded":
        return embedded_choice(reason)
    if spec.upper() in SIZES or spec in SIZES:
        repo = repo_for_size(spec.upper(), metal=metal)
        return ModelChoice(repo.split("/")[-1], source, reason, repo_id=repo)
    folder = Path(spec).expanduser()
    if folder.is_dir():
        return ModelChoice(folder.name, source, reason, path=folder)
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return ModelChoice(spec.split("/")[-1], source, reason, repo_id=spec)
    raise CommandError(
        f"{spec!r} is neither a size ({', '.join(SIZES)}), a local model folder, "
        "nor a Hugging Face repo id like Qwen/Qwen2.5-1.5B-Instruct"
    )


def choose_model(
    model_id: str,
    size: str,
    config_file: Path,
    *,
    environ: Mapping[str, str] = os.environ,
    ram_bytes: int | None = None,
    metal: bool | None = None,
) -> ModelChoice:
    """SHAMMAH_MODEL beats `[model] id`, which beats `[model] size`; else the size fits the RAM."""
    metal = apple_silicon() if metal is None else metal
    if environ.get(MODEL_VARIABLE):
        spec = environ[MODEL_VARIABLE]
        return resolve(
            spec, ModelSource.ENVIRONMENT, f"set by {MODEL_VARIABLE}={spec}", metal=metal
        )
    if model_id:
        reason = f"set by [model] id in {config_file}"
        return resolve(model_id, ModelSource.CONFIGURED, reason, metal=metal)
    if size:
        reason = f"set by [model] size = {size!r} in {config_file}"
        return resolve(size, ModelSource.CONFIGURED, reason, metal=metal)
    ram = total_ram() if ram_bytes is None else ram_bytes
    chosen = size_for_ram(ram)
    reason = f"the largest default that fits this machine's {ram / GIB:.0f} GiB of RAM"
    return resolve(chosen, ModelSource.BY_RAM, reason, metal=metal)
