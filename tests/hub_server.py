"""A minimal Hugging Face Hub look-alike on 127.0.0.1, serving model repos built from local folders.

It answers what `huggingface_hub` 2.4 asks while downloading: repo info, the recursive tree listing,
and HEAD/GET (with Range) on `/{repo}/resolve/{revision}/{file}`. Tests can require a token and
cut one transfer short once, to exercise the client's error and resume paths; the benchmarks
(`python -m benchmarks`) pace it so that a download takes a set time. The one copy for both.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

_INFO = re.compile(r"^/api/models/(?P<repo>.+?)(?:/(?P<kind>revision|tree)/(?P<rev>[^/]+))?$")
_RESOLVE = re.compile(r"^/(?P<repo>.+?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_PIECE = 8192
_PACED_PIECE = 64 * 1024  # paced bodies of hundreds of MB: fewer, larger pieces


@dataclass
class HubRepo:
    """One served repo: its files (read once) and the token it needs, if any."""

    files: dict[str, bytes]
    token: str | None = None
    xet: bool = False  # advertise Xet storage, as the real Hub does for most weights
    sha: str = field(init=False)
    oids: dict[str, str] = field(init=False)  # per file, as the tree listing gives them

    def __post_init__(self) -> None:
        # Hashed once: the benchmarks serve a model of hundreds of MB.
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + self.files[name])
        self.sha = digest.hexdigest()
        self.oids = {name: hashlib.sha1(data).hexdigest() for name, data in self.files.items()}


@dataclass
class HubServer:
    """What a test sees of the running server: its URL, the repos, and what the client sent."""

    url: str
    repos: dict[str, HubRepo]
    ranges: list[tuple[str, str | None]] = field(default_factory=list)  # (file, Range) per GET
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path)
    _cut: tuple[str, int] | None = None
    drip: float = 0.0  # seconds between 8 KiB pieces of a file, to make a download take time
    bytes_per_second: float = 0.0  # when set, every file body is paced to this rate
    first_request: float | None = None  # perf_counter() of the first request
    last_byte: float | None = None  # perf_counter() when a file body was last sent in full
    stopping: threading.Event = field(default_factory=threading.Event)  # ends paced transfers

    @property
    def total_bytes(self) -> int:
        return sum(len(data) for repo in self.repos.values() for data in repo.files.values())

    def pace(self, seconds: float) -> None:
        """Pace transfers so that downloading every served file takes about `seconds`."""
        self.bytes_per_second = max(self.total_bytes, 1) / seconds

    def add_repo(
        self,
        repo_id: str,
        folder: Path,
        *,
        token: str | None = None,
        xet: bool = False,
    ) -> HubRepo:
        """Serve the files under `folder` as `repo_id`."""
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }
        self.repos[repo_id] = HubRepo(files, token=token, xet=xet)
        return self.repos[repo_id]

    def cut_next_transfer(self, filename: str, after_bytes: int) -> None:
        """The next GET of `filename` sends only `after_bytes` bytes, then drops the connection."""
        self._cut = (filename, after_bytes)

    def take_cut(self, filename: str) -> int | None:
        if self._cut is None or self._cut[0] != filename:
            return None
        after_bytes, self._cut = self._cut[1], None
        return after_bytes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # seconds a keep-alive connection may sit idle
    hub: HubServer  # set on the per-server subclass

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, *, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        if self.hub.first_request is None:
            self.hub.first_request = time.perf_counter()
        self.hub.requests.append((self.command, path))
        if match := _INFO.match(path):
            self._info(match["repo"], match["kind"] or "revision", match["rev"] or "main")
        elif match := _RESOLVE.match(path):
            self._resolve(match["repo"], match["rev"], match["file"], head=head)
        else:
            self._reply(404, b"not found")

    def _repo(self, repo_id: str, revision: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._reply(404, b"Repository not found", {"X-Error-Code": "RepoNotFound"})
        elif repo.token and self.headers.get("Authorization") != f"Bearer {repo.token}":
            self._reply(401, b"Invalid username or password.")
        elif revision not in ("main", repo.sha):
            self._reply(404, b"Revision not found", {"X-Error-Code": "RevisionNotFound"})
        else:
            return repo
        return None

    def _info(self, repo_id: str, kind: str, revision: str) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        entries = [
            {"type": "file", "path": name, "size": len(data), "oid": repo.oids[name]}
            for name, data in sorted(repo.files.items())
        ]
        siblings = [{"rfilename": e["path"], "size": e["size"]} for e in entries]
        info = {"id": repo_id, "sha": repo.sha, "private": bool(repo.token), "siblings": siblings}
        body = info if kind == "revision" else entries
        self._reply(200, json.dumps(body).encode(), {"Content-Type": "application/json"})

    def _resolve(self, repo_id: str, revision: str, name: str, *, head: bool) -> None:
        repo = self._repo(repo_id, revision)
        if repo is None:
            return
        data = repo.files.get(name)
        headers = {"X-Repo-Commit": repo.sha}
        if data is None:
            self._reply(404, b"Entry not found", {**headers, "X-Error-Code": "EntryNotFound"})
            return
        digest = hashlib.sha256(data).hexdigest()
        headers |= {"ETag": f'"{digest}"', "Accept-Ranges": "bytes"}
        if repo.xet:  # this server has no Xet service: a client that follows these fails
            route = f"{self.hub.url}/api/models/{repo_id}/xet-read-token/{repo.sha}"
            headers |= {"X-Xet-Hash": digest, "X-Xet-Refresh-Route": route}
        if head:
            self._reply(200, b"", {**headers, "Content-Length": str(len(data))}, body=False)
            return
        requested = self.headers.get("Range")
        self.hub.ranges.append((name, requested))
        start = int(requested.removeprefix("bytes=").split("-")[0]) if requested else 0
        if requested:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        self._send_body(206 if requested else 200, data[start:], headers, name)

    def _send_body(self, status: int, data: bytes, headers: dict[str, str], name: str) -> None:
        cut = self.hub.take_cut(name)
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            self.send_header(key, value)
        self.end_headers()
        sent = data if cut is None else data[:cut]
        if not self._write_pieces(sent):
            self.close_connection = True  # stopped, or the client went away mid-transfer
            return
        if cut is not None:
            self.close_connection = True  # the client sees a body shorter than Content-Length
        else:
            self.hub.last_byte = time.perf_counter()

    def _write_pieces(self, data: bytes) -> bool:
        """Send `data` in pieces (dripped or paced); False when the transfer ended early."""
        hub, began = self.hub, time.perf_counter()
        piece = _PACED_PIECE if hub.bytes_per_second else _PIECE
        for offset in range(0, len(data), piece):
            try:
                self.wfile.write(data[offset : offset + piece])
            except OSError:  # a kernel shut down mid-download
                return False
            wait = hub.drip
            if hub.bytes_per_second:
                done = offset + piece
                wait = max(began + done / hub.bytes_per_second - time.perf_counter(), 0)
            if wait and hub.stopping.wait(wait):
                return False
        return True

    def _reply(
        self,
        status: int,
        content: bytes,
        headers: dict[str, str] | None = None,
        *,
        body: bool = True,
    ) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if body:
            self.wfile.write(content)


class _Server(ThreadingHTTPServer):
    """Keeps its open connections, so that stopping it also ends the keep-alive ones."""

    daemon_threads = True

    def __init__(self, handler: type[_Handler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.connections: set[socket.socket] = set()

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A kernel shut down mid-download resets its connections: expected, not worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        for connection in list(self.connections):
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@contextmanager
def serve_hub() -> Iterator[HubServer]:
    """Run a hub on a free port of 127.0.0.1 for the `with` block; always shut it down."""
    hub = HubServer(url="", repos={})
    handler = type("Handler", (_Handler,), {"hub": hub})
    server = _Server(handler)
    hub.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="hub-server", daemon=True
    )
    thread.start()
    try:
        yield hub
    finally:
        hub.stopping.set()  # paced transfers end at their next piece
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(timeout=5)
