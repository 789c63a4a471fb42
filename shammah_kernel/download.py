"""Download mlx-lm model repos into the standard Hugging Face cache, with progress and cancellation.

Files are fetched one at a time with `hf_hub_download`, so progress can name the current file and
cancellation takes effect at the next received chunk; a final `snapshot_download` records the tree
listing that lets `find_cached` tell a complete snapshot from a partial one, offline.

The transfers run in a child Python process (`python -m shammah_kernel.download`): they need
huggingface_hub settings that exist only as process-wide constants (a smaller chunk, no Xet), and
the magics load Shammah into the user's own process, whose libraries must stay as they were.
The child prints one JSON line per event and, after a new file or chunk, waits for the parent's
"go" or "stop" on its stdin: a cancel lands at the next chunk, as it would in this process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

import httpx2
from huggingface_hub import HfApi, constants, hf_hub_download, scan_cache_dir, snapshot_download
from huggingface_hub.errors import (
    CacheNotFound,
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RevisionResolutionError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import filter_repo_objects

from shammah_kernel.errors import DownloadError

if TYPE_CHECKING:
    from tqdm.auto import tqdm

# What mlx-lm needs to load a model: config, weights, tokenizer and chat template files.
MODEL_FILE_PATTERNS = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja")
PROGRESS_INTERVAL_S = 0.25
# huggingface_hub reads 10 MiB per chunk: progress and cancellation would move in 10 MiB steps.
_CHUNK_BYTES = 1024 * 1024
_NETWORK_ERRORS = (httpx2.TransportError, LocalEntryNotFoundError, OfflineModeIsEnabled)
_HUB_ERRORS = (OSError, ValueError, httpx2.HTTPError, EntryNotFoundError, RevisionResolutionError)


class DownloadFailure(StrEnum):
    """Why a download failed; `DownloadError.reason` holds one of these."""

    OFFLINE = "offline"
    UNAUTHORIZED = "unauthorized"
    NOT_FOUND = "not_found"
    DISK_FULL = "disk_full"
    CANCELLED = "cancelled"
    OTHER = "other"


class DownloadCancelled(DownloadError):
    """The cancel event was set; finished files stay in the cache, the partial one is deleted."""

    def __init__(self, repo_id: str) -> None:
        super().__init__(f"download of {repo_id} cancelled", DownloadFailure.CANCELLED)


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """One progress report: bytes are summed over all files of the repo, rate since the start."""

    repo_id: str
    downloaded_bytes: int
    total_bytes: int
    bytes_per_second: float
    eta_seconds: float | None
    current_file: str

    @property
    def fraction(self) -> float:
        return self.downloaded_bytes / self.total_bytes if self.total_bytes else 1.0


@dataclass(frozen=True, slots=True)
class CachedModel:
    """A model repo in the Hugging Face cache; `path` is its current snapshot folder."""

    repo_id: str
    size_bytes: int
    path: Path
    last_used: float


def download_model(
    repo_id: str,
    *,
    revision: str | None = None,
    progress: Callable[[DownloadProgress], None] = lambda _: None,
    cancel: threading.Event | None = None,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
) -> Path:
    """Download the model files of `repo_id` into the Hugging Face cache; return its snapshot.

    Files already cached are kept; a dropped connection resumes with a Range request (inside
    huggingface_hub, up to 5 times). The token comes from HF_TOKEN or `hf auth login`.
    Raises `DownloadError` whose `reason` is a `DownloadFailure`.
    """
    meter = _Meter(repo_id, progress, cancel or threading.Event())
    try:
        return _download(repo_id, revision, meter, endpoint, cache_dir)
    except DownloadError:
        raise
    except _HUB_ERRORS as error:
        raise _download_error(error, repo_id, endpoint or constants.ENDPOINT) from error


def find_cached(
    repo_id: str, *, revision: str | None = None, cache_dir: Path | None = None
) -> Path | None:
    """The snapshot folder if the model is completely in the local cache, else None; no network."""
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=True,
            allow_patterns=list(MODEL_FILE_PATTERNS),
        )
    except (OSError, ValueError):  # not cached, incomplete, or not a repo id
        return None
    path = Path(folder)
    loadable = (path / "config.json").is_file() and any(path.glob("*.safetensors"))
    return path if loadable else None


def cached_models(*, cache_dir: Path | None = None) -> list[CachedModel]:
    """The model repos in the Hugging Face cache, by name; empty when there is no cache yet."""
    try:
        cache = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    models = []
    for repo in cache.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        current = repo.refs.get("main") or max(repo.revisions, key=lambda r: r.last_modified)
        models.append(
            CachedModel(repo.repo_id, repo.size_on_disk, current.snapshot_path, repo.last_accessed)
        )
    return sorted(models, key=lambda model: model.repo_id)


def _download(
    repo_id: str, revision: str | None, meter: _Meter, endpoint: str | None, cache_dir: Path | None
) -> Path:
    meter.raise_if_cancelled()
    api = HfApi(endpoint=endpoint)
    resolved = api.resolve_revision(repo_id, revision=revision, cache_dir=cache_dir)
    files = _model_files(api, repo_id, resolved.resolved)
    root = Path(cache_dir or constants.HF_HUB_CACHE)
    snapshot = root / repo_folder_name(repo_id=repo_id, repo_type="model") / "snapshots"
    missing = [f for f in files if not (snapshot / resolved.resolved / f.path).exists()]
    _check_disk_space(repo_id, root, sum(f.size for f in missing))
    meter.total = sum(f.size for f in files)
    listed = [(f.path, f.size) for f in files]
    chunk = min(constants.DOWNLOAD_CHUNK_SIZE, _CHUNK_BYTES)
    job = _Job(repo_id, resolved.resolved, listed, endpoint, cache_dir, chunk)
    _transfer_in_child(job, meter)
    # All files are cached now: this only lists the tree and records it next to the snapshot.
    folder = snapshot_download(
        repo_id,
        revision=resolved,
        cache_dir=cache_dir,
        endpoint=endpoint,
        allow_patterns=list(MODEL_FILE_PATTERNS),
        tqdm_class=cast("type[tqdm]", _SilentBar),
    )
    meter.report(force=True)
    return Path(folder)


def _model_files(api: HfApi, repo_id: str, commit: str) -> list[RepoFile]:
    tree = api.list_repo_tree(repo_id, revision=commit, recursive=True)
    files = {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}
    names = list(filter_repo_objects(list(files), allow_patterns=list(MODEL_FILE_PATTERNS)))
    if "config.json" not in names or not any(name.endswith(".safetensors") for name in names):
        raise DownloadError(
            f"{repo_id} is not an mlx-lm model: it lacks config.json or *.safetensors weights",
            DownloadFailure.NOT_FOUND,
        )
    return [files[name] for name in names]


def _check_disk_space(repo_id: str, root: Path, needed: int) -> None:
    existing = next(folder for folder in (root, *root.parents) if folder.exists())
    free = shutil.disk_usage(existing).free
    if free < needed:
        raise DownloadError(
            f"not enough disk space for {repo_id}: it needs {needed / 1e9:.1f} GB, "
            f"{free / 1e9:.1f} GB are free in {root}; free some space and try again",
            DownloadFailure.DISK_FULL,
        )


@dataclass(frozen=True, slots=True)
class _Job:
    """What the child fetches: files (path, size) of one commit."""

    repo_id: str
    commit: str
    files: list[tuple[str, int]]
    endpoint: str | None
    cache_dir: Path | None
    chunk_bytes: int  # set as huggingface_hub's chunk size in the child only

    def to_json(self) -> str:
        cache = None if self.cache_dir is None else str(self.cache_dir)
        fields = [self.repo_id, self.commit, self.files, self.endpoint, cache, self.chunk_bytes]
        return json.dumps(fields)

    @classmethod
    def from_json(cls, text: str) -> _Job:
        repo_id, commit, files, endpoint, cache, chunk_bytes = json.loads(text)
        files = [(str(name), int(size)) for name, size in files]
        cache_dir = None if cache is None else Path(cache)
        return cls(repo_id, commit, files, endpoint, cache_dir, int(chunk_bytes))


def _child_environment() -> dict[str, str]:
    # Plain HTTP even for Xet-stored files: hf_xet 1.8 logs and drops exceptions raised in progress
    # callbacks, so a cancel would only land after the current (maybe multi-GB) file.
    return {**os.environ, "HF_HUB_DISABLE_XET": "1"}


def _transfer_in_child(job: _Job, meter: _Meter) -> None:
    """Fetch the job's files in a child process, feeding its progress lines to `meter`."""
    meter.raise_if_cancelled()
    command = [sys.executable, "-m", "shammah_kernel.download", job.to_json()]
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env=_child_environment(),
            text=True,
        ) as child,
    ):
        assert child.stdin is not None and child.stdout is not None
        try:
            ended = _follow(child.stdout, child.stdin, meter)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
        if isinstance(ended, DownloadError):
            raise ended
        if not ended:  # it died without a word: its last stderr line says why
            errors.seek(0)
            lines = errors.read().decode(errors="replace").strip().splitlines()
            last = lines[-1] if lines else f"exit status {child.returncode}"
            raise DownloadError(f"cannot download {job.repo_id}: {last}", DownloadFailure.OTHER)


def _follow(lines: IO[str], answers: IO[str], meter: _Meter) -> bool | DownloadError:
    """Apply the child's events: True when it finished, its error when it failed, False when it
    ended without saying either."""
    for line in lines:
        try:
            event, *values = json.loads(line)
        except ValueError:  # not ours: a library printed something
            continue
        if event in ("file", "bytes"):
            if event == "file":
                meter.start_file(values[0])
            else:
                meter.add(int(values[0]))
            _answer(answers, "stop" if meter.cancelled else "go")
        elif event == "done":
            meter.finish_file(int(values[0]))
        elif event == "ok":
            return True
        elif event == "error":
            reason = DownloadFailure(values[1])
            if reason is DownloadFailure.CANCELLED:
                return DownloadCancelled(meter.repo_id)
            return DownloadError(str(values[0]), reason)
    return False


def _answer(answers: IO[str], word: str) -> None:
    try:
        answers.write(word + "\n")
        answers.flush()
    except OSError:  # it has just ended: its last line says how
        pass


def _child_main(argv: list[str]) -> None:
    """The child: fetch the files, one JSON line per event on stdout."""
    from huggingface_hub.utils import logging as hf_logging

    job = _Job.from_json(argv[0])
    constants.DOWNLOAD_CHUNK_SIZE = job.chunk_bytes  # this process is ours alone
    # Its retry warnings would only reach our stderr; the progress says enough.
    hf_logging.set_verbosity_error()
    try:
        _fetch(job)
    except DownloadError as error:
        _say("error", str(error), str(error.reason))
    except _HUB_ERRORS as error:
        failed = _download_error(error, job.repo_id, job.endpoint or constants.ENDPOINT)
        _say("error", str(failed), str(failed.reason))
    else:
        _say("ok")


def _fetch(job: _Job) -> None:
    def go_on(event: str, value: object) -> None:
        """Say `event`; raise (inside huggingface_hub: it deletes the partial file) on "stop"."""
        _say(event, value)
        if sys.stdin.readline().strip() != "go":  # "stop", or the parent is gone
            raise DownloadCancelled(job.repo_id)

    class _ChildBar(_SilentBar):
        def update(self, n: float | None = 1) -> None:
            go_on("bytes", int(n or 0))

    for name, size in job.files:
        go_on("file", name)
        hf_hub_download(
            job.repo_id,
            name,
            revision=job.commit,
            cache_dir=job.cache_dir,
            endpoint=job.endpoint,
            tqdm_class=cast("type[tqdm]", _ChildBar),
        )
        _say("done", size)


def _say(event: str, *values: object) -> None:
    sys.stdout.write(json.dumps([event, *values]) + "\n")
    sys.stdout.flush()


class _Meter:
    """Adds up bytes over the files of one download and reports a few times a second."""

    def __init__(
        self, repo_id: str, report: Callable[[DownloadProgress], None], cancel: threading.Event
    ) -> None:
        self.repo_id, self.total = repo_id, 0
        self._callback, self._cancel = report, cancel
        self._lock = threading.Lock()
        self._done = self._fetched = self._file_start = 0
        self._file = ""
        self._started = time.monotonic()
        self._last_report: float | None = None

    def raise_if_cancelled(self) -> None:
        if self._cancel.is_set():
            raise DownloadCancelled(self.repo_id)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def start_file(self, name: str) -> None:
        with self._lock:
            self._file, self._file_start = name, self._done
        self.report(force=self._last_report is None)

    def add(self, received: int) -> None:
        with self._lock:
            self._done += received
            self._fetched += received
        self.report()

    def finish_file(self, size: int) -> None:
        with self._lock:  # a cached file reports no bytes
            self._done = self._file_start + size
        self.report()

    def report(self, *, force: bool = False) -> None:
        now = time.monotonic()
        last = self._last_report
        if not force and last is not None and now - last < PROGRESS_INTERVAL_S:
            return
        self._last_report = now
        with self._lock:
            rate = self._fetched / max(now - self._started, 1e-6)
            left = max(self.total - self._done, 0)
            eta = left / rate if rate > 0 else (0.0 if left == 0 else None)
            state = DownloadProgress(self.repo_id, self._done, self.total, rate, eta, self._file)
        self._callback(state)


def _ignore(*_: object, **__: object) -> None:
    pass


class _SilentBar:
    """Stands in for tqdm: huggingface_hub calls `update` with each chunk it writes to disk."""

    def __init__(self, *args: object, **kwargs: Any) -> None:
        self.n, self.total = 0, kwargs.get("total")
        self.format_dict: dict[str, object] = {}

    def update(self, n: float | None = 1) -> None:
        pass

    def __enter__(self) -> _SilentBar:
        return self

    # `update_transfer` gets network bytes (fewer than file bytes with Xet): `update` counts those.
    update_transfer = set_postfix_str = set_transfer_postfix_str = _ignore
    set_description = set_description_str = refresh = close = __exit__ = _ignore


def _download_error(error: Exception, repo_id: str, endpoint: str) -> DownloadError:
    reason = _failure(error)
    offline_mode = " (HF_HUB_OFFLINE is set)" if constants.is_offline_mode() else ""
    message = {
        DownloadFailure.OFFLINE: f"cannot reach {endpoint}: offline?{offline_mode}",
        DownloadFailure.UNAUTHORIZED: (
            f"{repo_id} needs a Hugging Face token: set HF_TOKEN or run `hf auth login` "
            f"(or check the name; for a gated model, accept its terms at {endpoint}/{repo_id})"
        ),
        DownloadFailure.NOT_FOUND: f"no model repo named {repo_id} on {endpoint}",
        DownloadFailure.DISK_FULL: f"the disk filled up downloading {repo_id}: free some space",
    }.get(reason, f"cannot download {repo_id}: {error}")
    return DownloadError(message, reason)


def _failure(error: Exception) -> DownloadFailure:
    causes = list(_causes(error))
    status = next((c.response.status_code for c in causes if isinstance(c, HfHubHTTPError)), None)
    if status in (401, 403):  # the Hub also answers 401 for a repo name that does not exist
        return DownloadFailure.UNAUTHORIZED
    if status == 404 or isinstance(error, HFValidationError):  # repo, revision or file
        return DownloadFailure.NOT_FOUND
    if any(isinstance(c, OSError) and c.errno == errno.ENOSPC for c in causes):
        return DownloadFailure.DISK_FULL
    if status is None and any(isinstance(c, _NETWORK_ERRORS) for c in causes):
        return DownloadFailure.OFFLINE
    return DownloadFailure.OTHER


def _causes(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it, outermost first (huggingface_hub wraps network errors)."""
    current: BaseException | None = error
    for _ in range(8):
        if current is None:
            return
        yield current
        current = current.__cause__ or current.__context__


if __name__ == "__main__":
    _child_main(sys.argv[1:])
