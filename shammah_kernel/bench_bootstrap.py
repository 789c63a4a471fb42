"""Bench measures of the bootstrap: a kernel that answers while its model downloads, and a switch.

The download comes from a hub look-alike on 127.0.0.1 that serves the bench's model folder as one
repo, paced so that the whole download takes a set time. It answers what huggingface_hub 2.4 asks:
repo info, the tree listing, and HEAD/GET (with Range) on `/{repo}/resolve/{revision}/{file}`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .bench import (
    TIMEOUT,
    TURNS,
    BenchKernel,
    Comparison,
    execute,
    first_turn_prompt,
    run_direct,
    running_kernel,
    turn_timing,
)
from .blas import openblas_loaded
from .errors import BenchError
from .model_choice import MODEL_VARIABLE

REPO = "bench/model"
SELECT_POLL = 0.05  # seconds between `/model status` polls while the switch loads
_INFO = re.compile(r"^/api/models/(?P<repo>.+?)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+))?$")
_RESOLVE = re.compile(r"^/(?P<repo>.+?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_ROW = re.compile(r"^\| (\w[\w ]*) \| (.*) \|$", re.MULTILINE)
_PIECE = 64 * 1024
# Settings of the bench's own shell that would keep a kernel from using the local hub.
_HUB_VARIABLES = ("HF_HUB_OFFLINE", "HF_TOKEN", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
# The download measures: which figure of a start each compares, and its label.
_START_MEASURES = {
    "download_start": ("kernel_info", "kernel start to kernel_info_reply, model downloading"),
    "download_first_cell": ("first_cell", "kernel start to first cell answered, model downloading"),
}
_DIRECT_SELECT_CODE = "from shammah_kernel.bench_bootstrap import direct_select_main as m; m()"


@dataclass(frozen=True, slots=True)
class _ServedFile:
    path: Path
    size: int
    etag: str  # opaque: huggingface_hub names the cached blob after it


@dataclass
class LocalHub:
    """One model folder served as `repo_id`; every transfer paced to `bytes_per_second`."""

    url: str
    repo_id: str
    files: dict[str, _ServedFile]
    bytes_per_second: float
    sha: str = ""
    stopping: threading.Event = field(default_factory=threading.Event)
    first_request: float | None = None  # perf_counter() of the first request
    last_byte: float | None = None  # when the last file body was sent in full

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a keep-alive connection may sit idle
    hub: LocalHub  # set on the per-server subclass

    def log_message(self, format: str, *args: object) -> None:  # keep the table clean
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, *, head: bool) -> None:
        hub, path = self.hub, unquote(urlsplit(self.path).path)
        if hub.first_request is None:
            hub.first_request = time.perf_counter()
        info, resolve = _INFO.match(path), _RESOLVE.match(path)
        if info and info["repo"] == hub.repo_id:
            self._info(info["kind"] or "revision")
        elif resolve and resolve["repo"] == hub.repo_id and resolve["file"] in hub.files:
            self._file(hub.files[resolve["file"]], head=head)
        else:
            self._headers(404, 9, {"X-Error-Code": "EntryNotFound"})
            self.wfile.write(b"not found")

    def _info(self, kind: str) -> None:
        hub = self.hub
        entries = [
            {"type": "file", "path": name, "size": f.size, "oid": f.etag}
            for name, f in sorted(hub.files.items())
        ]
        siblings = [{"rfilename": e["path"], "size": e["size"]} for e in entries]
        info = {"id": hub.repo_id, "sha": hub.sha, "private": False, "siblings": siblings}
        body = json.dumps(info if kind == "revision" else entries).encode()
        self._headers(200, len(body), {"Content-Type": "application/json"})
        self.wfile.write(body)

    def _file(self, served: _ServedFile, *, head: bool) -> None:
        headers = {"X-Repo-Commit": self.hub.sha, "ETag": f'"{served.etag}"'}
        headers["Accept-Ranges"] = "bytes"
        requested = self.headers.get("Range")
        start = int(requested.removeprefix("bytes=").split("-")[0]) if requested else 0
        if head or not requested:
            self._headers(200, served.size, headers)
        else:
            headers["Content-Range"] = f"bytes {start}-{served.size - 1}/{served.size}"
            self._headers(206, served.size - start, headers)
        if not head:
            self._send_paced(served.path, start)

    def _headers(self, status: int, length: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(length)}.items():
            self.send_header(key, value)
        self.end_headers()

    def _send_paced(self, path: Path, start: int) -> None:
        hub, began, sent = self.hub, time.perf_counter(), 0
        with path.open("rb") as source:
            source.seek(start)
            while piece := source.read(_PIECE):
                try:
                    self.wfile.write(piece)
                except OSError:  # the kernel was shut down mid-transfer
                    self.close_connection = True
                    return
                sent += len(piece)
                if hub.stopping.wait(
                    max(began + sent / hub.bytes_per_second - time.perf_counter(), 0)
                ):
                    self.close_connection = True
                    return
        hub.last_byte = time.perf_counter()


class _HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A kernel shut down mid-download resets its connections: expected, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def serve_model(folder: Path, *, seconds: float, repo_id: str = REPO) -> Iterator[LocalHub]:
    """Serve `folder` as `repo_id` on a free port of 127.0.0.1 for the `with` block."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        name = path.relative_to(folder).as_posix()
        etag = hashlib.sha1(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
        files[name] = _ServedFile(path, stat.st_size, etag)
    hub = LocalHub("", repo_id, files, bytes_per_second=1.0)
    hub.bytes_per_second = max(hub.total_bytes, 1) / seconds
    hub.sha = hashlib.sha1("".join(f.etag for f in files.values()).encode()).hexdigest()
    server = _HubServer(("127.0.0.1", 0), type("Handler", (_HubHandler,), {"hub": hub}))
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="bench-hub")
    thread.start()
    try:
        yield hub
    finally:
        hub.stopping.set()  # paced transfers end at their next piece
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _hub_environment(hub: LocalHub, hf_home: Path) -> dict[str, str]:
    """A kernel's environment: its model is `hub.repo_id`, fetched from `hub` into `hf_home`."""
    env = {k: v for k, v in os.environ.items() if k not in _HUB_VARIABLES}
    no_proxy = ",".join(p for p in (env.get("NO_PROXY", ""), "127.0.0.1") if p)
    return env | {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": no_proxy,
        MODEL_VARIABLE: hub.repo_id,
    }


def _model_status(kernel: BenchKernel) -> dict[str, str]:
    """The rows of `/model status` (model, state, ...) as the kernel shows them now."""
    for _, message in execute(kernel, "/model status"):
        rows = dict(_ROW.findall(message["content"].get("data", {}).get("text/plain", "")))
        if "state" in rows:
            return rows
    raise BenchError("/model status showed no state")


def _wait_for_status(
    kernel: BenchKernel, done: Callable[[dict[str, str]], bool], *, interval: float
) -> tuple[dict[str, str], int]:
    """Poll `/model status` until `done(rows)`; the last rows and the number of polls."""
    deadline, polls = time.perf_counter() + TIMEOUT, 0
    while time.perf_counter() < deadline:
        rows, polls = _model_status(kernel), polls + 1
        if done(rows):
            return rows, polls
        if rows["state"].startswith(("failed", "offline")):
            raise BenchError(f"the model {rows.get('model')} did not load: {rows['state']}")
        time.sleep(interval)
    raise BenchError(f"the model did not reach the awaited state in {TIMEOUT:.0f} s")


@dataclass(frozen=True, slots=True)
class _Start:
    kernel_info: float  # seconds from start_kernel to kernel_info_reply
    first_cell: float  # seconds from start_kernel to the first cell's end
    state: str  # the model's state once its worker had begun


def _time_start(hub: LocalHub, hf_home: Path, *, downloading: bool, finish: bool = False) -> _Start:
    """Start a kernel and run a first cell; with `finish`, then wait until the model is ready."""
    start = time.perf_counter()
    with running_kernel("shammah", _hub_environment(hub, hf_home)) as kernel:
        kernel_info = time.perf_counter() - start
        execute(kernel, "/status")
        first_cell = time.perf_counter() - start
        rows, _ = _wait_for_status(
            kernel, lambda r: not r["state"].startswith("init"), interval=0.1
        )
        if finish:
            _wait_for_status(kernel, lambda r: r["state"] == "ready", interval=0.25)
    if rows["state"].startswith("downloading") != downloading:
        expected = "downloading" if downloading else "not downloading (cached)"
        raise BenchError(f"after its first cell the model was {rows['state']!r}, not {expected}")
    return _Start(round(kernel_info, 4), round(first_cell, 4), rows["state"])


def measure_download_start(
    model_dir: Path, root: Path, runs: int, *, download_seconds: float
) -> dict[str, Comparison]:
    """Start to kernel_info_reply and to the first cell, model downloading vs already cached."""
    cached = root / "hf-cached"
    samples: dict[bool, list[_Start]] = {True: [], False: []}
    with serve_model(model_dir, seconds=download_seconds) as hub:
        # The first start's download is let finish: it fills the cache of the cached starts.
        samples[True].append(_time_start(hub, cached, downloading=True, finish=True))
        if hub.first_request is None or hub.last_byte is None:
            raise BenchError("the model did not come from the bench's local hub")
        download = hub.last_byte - hub.first_request
        samples[False].append(_time_start(hub, cached, downloading=False))
        for run in range(1, runs):
            for downloading in (False, True) if run % 2 else (True, False):
                home = root / f"hf-{run}" if downloading else cached
                samples[downloading].append(_time_start(hub, home, downloading=downloading))
                if downloading:
                    shutil.rmtree(home, ignore_errors=True)  # a partial download
    context = {
        "download_seconds": round(download, 3),
        "download_bytes": hub.total_bytes,
        "states_after_first_cell": [s.state for s in samples[True]],
    }
    # The download runs on the model worker's thread: if a start waited for it, these ratios
    # would grow by the download's seconds; a fifth over the cached start allows for its CPU use.
    comparisons = {}
    for key, (figure, label) in _START_MEASURES.items():
        shammah, reference = ([getattr(s, figure) for s in samples[d]] for d in (True, False))
        details = {"shammah_samples": shammah, "reference_samples": reference, **context}
        median, reference_median = statistics.median(shammah), statistics.median(reference)
        comparisons[key] = Comparison(
            label, "s", median, reference_median, "model cached", 1.2, True, details
        )
    return comparisons


@dataclass(frozen=True, slots=True)
class _Switch:
    seconds: float  # from sending `/model select` to the next turn's first reply text
    ready: float  # from sending `/model select` to `/model status` saying the new model is ready
    polls: int  # `/model status` cells run meanwhile


def measure_model_select(model_dir: Path, root: Path, runs: int) -> Comparison:
    """Seconds from `/model select` to the new model's first token, against mlx-lm directly.

    The new model is the same weights under another folder each time: the measure is the switch's
    path, not the model.
    """
    switches: list[_Switch] = []
    references: list[dict[str, Any]] = []
    with running_kernel("shammah") as kernel:
        _wait_for_status(kernel, lambda rows: rows["state"] == "ready", interval=0.1)
        for run in range(1, runs + 1):
            model = root / f"switch-{run}"
            model.symlink_to(model_dir, target_is_directory=True)
            # While the kernel idles: its model loaded, as model A is loaded in the reference.
            references.append(run_direct(_DIRECT_SELECT_CODE, str(model_dir), str(model)))
            switches.append(_time_switch(kernel, model))
            execute(kernel, "/reset")  # each switch answers the same first turn
    details = {
        "shammah_samples": [s.seconds for s in switches],
        "reference_samples": [r["seconds"] for r in references],
        "ready_seconds": [s.ready for s in switches],
        "status_polls": [s.polls for s in switches],
        "reference_load_seconds": [r["load_seconds"] for r in references],
        "reference_openblas": references[0]["openblas"],
    }
    # Switching is a load plus a first token: the kernel may add its cells' round trips and the
    # status polling (about one poll interval), which should stay under a fifth of that.
    label = "/model select to first token, cached model"
    shammah = statistics.median(s.seconds for s in switches)
    reference = statistics.median(r["seconds"] for r in references)
    name = "mlx-lm load + 1st token"
    return Comparison(label, "s", shammah, reference, name, 1.2, True, details)


def _time_switch(kernel: BenchKernel, model: Path) -> _Switch:
    start = time.perf_counter()
    execute(kernel, f"/model select {shlex.quote(str(model))}")

    def switched(rows: dict[str, str]) -> bool:
        return rows["model"] == model.name and rows["state"] == "ready"

    _, polls = _wait_for_status(kernel, switched, interval=SELECT_POLL)
    ready = time.perf_counter() - start
    messages = execute(kernel, TURNS[0])
    if not _answered_by(messages, model.name):
        raise BenchError(f"the turn after /model select was not answered by {model.name}")
    return _Switch(round(ready + turn_timing(messages).first_text, 4), round(ready, 4), polls)


def _answered_by(messages: list[tuple[float, dict[str, Any]]], name: str) -> bool:
    """Whether the turn's footer names `name` (it reads `[name · N tokens · ...]`)."""
    return any(
        m["content"].get("data", {}).get("text/plain", "").startswith(f"[{name} ·")
        for _, m in messages
        if m["msg_type"] == "display_data"
    )


def direct_select_main() -> None:
    """Run by `measure_model_select`: with model A loaded, time loading B and its first token."""
    from mlx_lm import load, stream_generate
    from mlx_lm.sample_utils import make_sampler

    model_a, model_b = sys.argv[1], sys.argv[2]
    loaded = load(model_a)  # as in the kernel, where A was loaded before the switch
    del loaded  # the kernel's worker drops the old model before loading the new one
    start = time.perf_counter()
    model, tokenizer = load(model_b)[:2]
    load_seconds = time.perf_counter() - start
    sampler = make_sampler(temp=0.0)
    prompt = first_turn_prompt(tokenizer)
    next(iter(stream_generate(model, tokenizer, prompt, max_tokens=1, sampler=sampler)))
    seconds = time.perf_counter() - start
    figures = {"seconds": round(seconds, 4), "load_seconds": round(load_seconds, 4)}
    print(json.dumps({**figures, "openblas": openblas_loaded()}))
