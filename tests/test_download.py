"""Real downloads with huggingface_hub from a hub-compatible server on 127.0.0.1."""

from __future__ import annotations

import errno
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import mlx_lm
import pytest
from hub_server import HubServer, serve_hub
from huggingface_hub import constants

from shammah_kernel import download
from shammah_kernel.download import (
    DownloadCancelled,
    DownloadFailure,
    DownloadProgress,
    cached_models,
    download_model,
    find_cached,
)
from shammah_kernel.errors import DownloadError

REPO = "tiny/qwen2"
CHUNK = 16 * 1024  # several chunks per weights file, so progress, cut and cancel have room


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face home, online, with no token; huggingface_hub read these at import."""
    hf_home = tmp_path / "hf"
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", CHUNK)  # the child is told this size
    # Else the first request also fetches {HF_ENDPOINT}/api/agent-harnesses for the user agent
    # (the environment for the child process that transfers the files).
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    return hf_home / "hub"


@pytest.fixture
def hub(cache: Path, tiny_model: Path) -> Iterator[HubServer]:
    """The server; tests pass its URL as `endpoint` (huggingface_hub bakes HF_ENDPOINT into URL
    templates at import, so patching `constants.ENDPOINT` later does not redirect downloads)."""
    with serve_hub() as server:
        server.add_repo(REPO, tiny_model)
        yield server


def repo_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())


def weights(folder: Path) -> bytes:
    return (folder / "model.safetensors").read_bytes()


def test_download_loads_is_found_offline_and_listed(
    hub: HubServer, cache: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "PROGRESS_INTERVAL_S", 0.0)  # report every chunk
    reports: list[DownloadProgress] = []

    path = download_model(REPO, endpoint=hub.url, cache_dir=cache, progress=reports.append)

    assert sorted(p.name for p in path.iterdir()) == sorted(p.name for p in tiny_model.iterdir())
    tokenizer = mlx_lm.load(str(path))[1]
    assert tokenizer.encode("hello")
    total = repo_bytes(tiny_model)
    done = [r.downloaded_bytes for r in reports]
    assert done == sorted(done) and len(reports) > total // CHUNK
    assert {r.total_bytes for r in reports} == {total}
    assert reports[-1].downloaded_bytes == total and reports[-1].fraction == 1.0
    assert reports[-1].eta_seconds == 0.0 and reports[-1].bytes_per_second > 0
    assert "model.safetensors" in {r.current_file for r in reports}
    # Plain HTTP only: nothing but the repo API and resolve URLs (no Xet token or CAS calls).
    assert all(url.startswith(("/api/models/", f"/{REPO}/resolve/")) for _, url in hub.requests)
    assert all(requested is None for _, requested in hub.ranges)

    seen = len(hub.requests)
    assert find_cached(REPO, cache_dir=cache) == path
    assert find_cached("tiny/other", cache_dir=cache) is None
    assert len(hub.requests) == seen  # no network
    [cached] = cached_models(cache_dir=cache)
    assert (cached.repo_id, cached.size_bytes, cached.path) == (REPO, total, path)


def test_xet_stored_files_come_over_plain_http(
    hub: HubServer, cache: Path, tiny_model: Path
) -> None:
    hub.add_repo("tiny/xet", tiny_model, xet=True)

    path = download_model("tiny/xet", endpoint=hub.url, cache_dir=cache)

    assert weights(path) == weights(tiny_model)
    assert not any("xet-read-token" in url for _, url in hub.requests)


def test_cut_transfer_resumes_with_a_range_request(
    hub: HubServer, cache: Path, tiny_model: Path
) -> None:
    hub.cut_next_transfer("model.safetensors", after_bytes=3 * CHUNK)
    reports: list[DownloadProgress] = []

    path = download_model(REPO, endpoint=hub.url, cache_dir=cache, progress=reports.append)

    asked = [requested for name, requested in hub.ranges if name == "model.safetensors"]
    assert asked == [None, f"bytes={3 * CHUNK}-"]
    assert weights(path) == weights(tiny_model)
    total = repo_bytes(tiny_model)
    assert reports[-1].downloaded_bytes == total  # resumed bytes are not counted twice
    assert 2 <= len(reports) < total // CHUNK  # throttled: fewer reports than chunks


def test_private_repo_needs_a_token(
    hub: HubServer, cache: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("team/private", tiny_model, token="hf_secret")

    with pytest.raises(DownloadError) as refused:
        download_model("team/private", endpoint=hub.url, cache_dir=cache)
    assert refused.value.reason == DownloadFailure.UNAUTHORIZED == "unauthorized"
    assert "HF_TOKEN" in str(refused.value) and "hf auth login" in str(refused.value)

    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    path = download_model("team/private", endpoint=hub.url, cache_dir=cache)
    assert (path / "config.json").is_file()


def test_unknown_repo_is_not_found(hub: HubServer, cache: Path) -> None:
    with pytest.raises(DownloadError) as missing:
        download_model("nobody/nothing", endpoint=hub.url, cache_dir=cache)
    assert missing.value.reason == DownloadFailure.NOT_FOUND
    assert "no model repo named nobody/nothing" in str(missing.value)


def test_repo_without_mlx_weights_is_refused(hub: HubServer, cache: Path, tmp_path: Path) -> None:
    gguf = tmp_path / "gguf"
    gguf.mkdir()
    (gguf / "README.md").write_text("a GGUF model\n")
    (gguf / "model.gguf").write_bytes(b"GGUF")
    hub.add_repo("someone/gguf", gguf)
    with pytest.raises(DownloadError) as refused:
        download_model("someone/gguf", endpoint=hub.url, cache_dir=cache)
    assert refused.value.reason == DownloadFailure.NOT_FOUND
    assert "not an mlx-lm model" in str(refused.value)
    assert hub.ranges == []


def test_unreachable_hub_is_offline(cache: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(DownloadError) as unreachable:
        download_model(REPO, endpoint=endpoint, cache_dir=cache)
    assert unreachable.value.reason == DownloadFailure.OFFLINE
    assert f"cannot reach {endpoint}: offline?" in str(unreachable.value)


def test_offline_mode_says_so(hub: HubServer, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError) as offline:
        download_model(REPO, endpoint=hub.url, cache_dir=cache)
    assert offline.value.reason == DownloadFailure.OFFLINE
    assert "HF_HUB_OFFLINE" in str(offline.value)
    assert hub.requests == []


def test_full_disk_is_refused_before_downloading(
    hub: HubServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "disk_usage", lambda _: SimpleNamespace(free=0))
    with pytest.raises(DownloadError) as full:
        download_model(REPO, endpoint=hub.url, cache_dir=cache)
    assert full.value.reason == DownloadFailure.DISK_FULL
    assert "free some space" in str(full.value)
    assert hub.ranges == []


def test_disk_filling_up_while_writing_says_so() -> None:
    # A real ENOSPC needs a full file system; the mapping of huggingface_hub's error is ours.
    failure = OSError(errno.ENOSPC, "No space left on device")
    error = download._download_error(failure, REPO, "http://hub")
    assert error.reason == DownloadFailure.DISK_FULL and "free some space" in str(error)


def test_cancel_stops_mid_file_and_a_new_download_keeps_finished_files(
    hub: HubServer, cache: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "PROGRESS_INTERVAL_S", 0.0)
    cancel = threading.Event()
    reports: list[DownloadProgress] = []
    config_bytes = (tiny_model / "config.json").stat().st_size

    def cancel_inside_weights(report: DownloadProgress) -> None:
        reports.append(report)
        if report.current_file == "model.safetensors" and report.downloaded_bytes > config_bytes:
            cancel.set()

    with pytest.raises(DownloadCancelled) as cancelled:
        download_model(
            REPO, endpoint=hub.url, cache_dir=cache, progress=cancel_inside_weights, cancel=cancel
        )
    assert cancelled.value.reason == DownloadFailure.CANCELLED
    assert reports[-1].downloaded_bytes < reports[-1].total_bytes
    assert find_cached(REPO, cache_dir=cache) is None
    assert not list(cache.rglob("*.incomplete"))  # huggingface_hub drops the partial file

    path = download_model(REPO, endpoint=hub.url, cache_dir=cache)
    assert weights(path) == weights(tiny_model)
    assert [name for name, _ in hub.ranges].count("config.json") == 1  # kept from the first try
