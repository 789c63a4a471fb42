"""A scripted stand-in for the Anthropic Messages API, on 127.0.0.1, for tests without internet.

`POST /v1/messages` answers with the reply as SSE (`"stream": true`) or as one JSON message;
a reply is text, or a `ScriptedReply` of text and `ToolUse`s (streamed as `tool_use` blocks
with `input_json_delta` pieces, ending with `stop_reason: "tool_use"`). Each request takes the
next queued `Behavior` (an HTTP error, a delay, a slow drip, an error event mid-stream), else
`server.behavior`. Requests are recorded in `server.requests`.
"""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class Behavior:
    status: int = 200  # another status answers with the Anthropic error body
    error_message: str = "scripted error"
    delay: float = 0.0  # seconds before anything is sent
    drip: float = 0.0  # seconds between text deltas
    error_after: int | None = None  # deltas sent before an `event: error` (overloaded_error)


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]

    @property
    def api_key(self) -> str:
        """The key as sent: `x-api-key`, or the `Authorization: Bearer` this SDK version uses."""
        bearer = self.headers.get("authorization", "").removeprefix("Bearer ")
        return self.headers.get("x-api-key", bearer)


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any] = field(default_factory=dict)
    id: str = ""  # "" numbers it: toolu_scripted_0, _1, ... within the reply
    raw_json: str | None = None  # streamed instead of `input`; a non-streamed reply sends `input`
    piece_size: int = 7  # characters per `input_json_delta`

    def json_pieces(self) -> list[str]:
        """The input as streamed: an empty first piece, as the real API sends, then chunks."""
        text = json.dumps(self.input) if self.raw_json is None else self.raw_json
        return [""] + [text[i : i + self.piece_size] for i in range(0, len(text), self.piece_size)]


@dataclass(frozen=True)
class ScriptedReply:
    text: str = ""
    tool_uses: tuple[ToolUse, ...] = ()
    stop_reason: str = ""  # "" is "tool_use" when there are tool uses, else "end_turn"

    @property
    def blocks(self) -> list[dict[str, Any]]:
        """The content blocks: the text (unless empty beside tool uses), then the tool uses."""
        blocks: list[dict[str, Any]] = []
        if self.text or not self.tool_uses:
            blocks.append({"type": "text", "text": self.text})
        for n, use in enumerate(self.tool_uses):
            tool_id = use.id or f"toolu_scripted_{n}"
            blocks.append({"type": "tool_use", "id": tool_id, "name": use.name, "input": use.input})
        return blocks

    @property
    def finish(self) -> str:
        return self.stop_reason or ("tool_use" if self.tool_uses else "end_turn")


Reply = str | ScriptedReply


def split_reply(text: str) -> list[str]:
    """The reply as deltas (a word and the whitespace after it); they concatenate to `text`."""
    return [piece for piece in re.findall(r"\S*\s*", text) if piece]


@dataclass
class ClaudeServer:
    reply: Reply | Callable[[dict[str, Any]], Reply] = "Hello from the scripted Claude."
    behavior: Behavior = field(default_factory=Behavior)
    requests: list[ReceivedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queued: deque[Behavior] = deque()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "enter the server first: with ClaudeServer() as server"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def queue(self, *behaviors: Behavior) -> None:
        """The next requests take these behaviors, in order, before falling back to `behavior`."""
        with self._lock:
            self._queued.extend(behaviors)

    def __enter__(self) -> ClaudeServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._stopping.set()  # wakes handlers that sleep in a delay or a drip
        self._httpd.shutdown()
        self._httpd.server_close()  # joins the handler threads
        self._thread.join()

    def _answer(self, request: ReceivedRequest) -> tuple[Behavior, ScriptedReply]:
        with self._lock:
            self.requests.append(request)
            behavior = self._queued.popleft() if self._queued else self.behavior
        reply = self.reply(request.body) if callable(self.reply) else self.reply
        return behavior, ScriptedReply(reply) if isinstance(reply, str) else reply

    def wait(self, seconds: float) -> bool:
        """Sleeps unless the server stops first; True when it keeps running."""
        return not self._stopping.wait(seconds)


def _handler_for(server: ClaudeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length) or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            behavior, reply = server._answer(ReceivedRequest(self.path, headers, body))
            if self.path.split("?")[0] != "/v1/messages":
                return self._send_json(404, _error_body(404, f"no route {self.path}"))
            try:
                if behavior.delay and not server.wait(behavior.delay):
                    return
                if behavior.status != 200:
                    return self._send_json(
                        behavior.status, _error_body(behavior.status, behavior.error_message)
                    )
                if body.get("stream"):
                    return self._stream(body, reply, behavior)
                self._send_json(200, _message(body, reply, with_content=True))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading early, as an interrupt does

        def _send_json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", "req_scripted")
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, body: dict[str, Any], reply: ScriptedReply, behavior: Behavior) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()  # HTTP/1.0: the body ends when the connection closes
            for name, data in _events(body, reply, behavior):
                if (
                    name == "content_block_delta"
                    and behavior.drip
                    and not server.wait(behavior.drip)
                ):
                    return
                self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

    return Handler


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def _output_tokens(reply: ScriptedReply) -> int:
    return len(split_reply(reply.text)) + sum(len(u.json_pieces()) for u in reply.tool_uses)


def _message(body: dict[str, Any], reply: ScriptedReply, *, with_content: bool) -> dict[str, Any]:
    prompt = [body.get("system", "")] + [m["content"] for m in body.get("messages", [])]
    return {
        "id": "msg_scripted",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": reply.blocks if with_content else [],
        "stop_reason": reply.finish if with_content else None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": len(" ".join(map(str, prompt)).split()),
            "output_tokens": _output_tokens(reply) if with_content else 1,
        },
    }


def _block_deltas(reply: ScriptedReply) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each content block as it starts (tool input empty), with the deltas that fill it."""
    uses = iter(reply.tool_uses)
    for block in reply.blocks:
        if block["type"] == "text":
            deltas = [{"type": "text_delta", "text": p} for p in split_reply(block["text"])]
            yield {"type": "text", "text": ""}, deltas
        else:
            pieces = next(uses).json_pieces()
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
            yield {**block, "input": {}}, deltas


def _events(
    body: dict[str, Any], reply: ScriptedReply, behavior: Behavior
) -> Iterator[tuple[str, Any]]:
    yield (
        "message_start",
        {"type": "message_start", "message": _message(body, reply, with_content=False)},
    )
    sent = 0
    for index, (block, deltas) in enumerate(_block_deltas(reply)):
        start = {"type": "content_block_start", "index": index, "content_block": block}
        yield "content_block_start", start
        for delta in deltas:
            if sent == behavior.error_after:
                yield "error", _error_body(529, "Overloaded")
                return
            sent += 1
            yield (
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": delta},
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    usage = {"output_tokens": _output_tokens(reply)}
    delta_end = {"stop_reason": reply.finish, "stop_sequence": None}
    yield "message_delta", {"type": "message_delta", "delta": delta_end, "usage": usage}
    yield "message_stop", {"type": "message_stop"}
