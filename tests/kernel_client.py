"""A small driver for a real Shammah kernel subprocess: run cells, collect outputs and replies.

The one kernel driver of the repo: the tests and `python -m benchmarks` both use it.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from queue import Empty
from typing import IO, Any

from jupyter_client.manager import KernelManager, start_new_kernel


class KernelDied(RuntimeError):
    """The kernel process ended while a cell was waited for; the message ends with its stderr."""


@dataclass
class CellRun:
    reply: dict[str, Any]
    messages: list[dict[str, Any]] = field(default_factory=list)
    arrived: list[float] = field(default_factory=list)  # per message: seconds since the request

    def timed(self) -> list[tuple[float, dict[str, Any]]]:
        return list(zip(self.arrived, self.messages, strict=True))

    @property
    def status(self) -> str:
        return str(self.reply["status"])

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["msg_type"] in types]

    @property
    def markdown(self) -> str:
        """The reply as the notebook shows it at the end: the last state of the streamed output."""
        return self._reply("text/markdown")

    @property
    def reply_text(self) -> str:
        """The reply's text as the model wrote it (the plain form of the streamed output)."""
        return self._reply("text/plain")

    def _reply(self, mime: str) -> str:
        shown: dict[str, str] = {}
        for m in self.of_type("display_data", "update_display_data"):
            display_id = m["content"].get("transient", {}).get("display_id")
            if display_id and display_id.startswith("shammah-"):
                shown[display_id] = m["content"]["data"][mime]
        return "".join(shown.values())

    @property
    def stdout(self) -> str:
        return "".join(m["content"]["text"] for m in self.of_type("stream"))

    @property
    def displayed(self) -> str:
        return "\n".join(m["content"]["data"]["text/plain"] for m in self.of_type("display_data"))


class KernelSession:
    def __init__(self, manager: KernelManager, client: Any, log: IO[str] | None = None) -> None:
        self.manager = manager
        self.client = client
        self.log = log  # the kernel's stderr, when start() captured it

    @classmethod
    def start(
        cls,
        name: str = "shammah",
        *,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60,
        capture_stderr: bool = False,
    ) -> KernelSession:
        """A kernel that has answered kernel_info. `env` replaces the environment it gets."""
        options: dict[str, Any] = {} if env is None else {"env": dict(env)}
        # Kept open for the session's life (closed in stop()), so a dead kernel's stderr shows.
        log = tempfile.TemporaryFile("w+") if capture_stderr else None  # noqa: SIM115
        if log is not None:
            options |= {"stdout": subprocess.DEVNULL, "stderr": log}
        try:
            manager, client = start_new_kernel(
                kernel_name=name, startup_timeout=startup_timeout, **options
            )
        except BaseException:
            if log is not None:
                log.close()
            raise
        return cls(manager, client, log)

    def stderr_tail(self) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return self.log.read()[-2000:]

    def execute(
        self,
        code: str,
        *,
        cell_id: str | None = "auto",
        timeout: float = 300,
        interrupt_when: Any = None,
        react: Any = None,
        allow_stdin: bool | None = None,
        stdin_answers: list[str] | None = None,
    ) -> CellRun:
        """Run a cell; `cell_id=None` behaves like a terminal client (no cell id)."""
        # No cell id means a terminal client such as jupyter console, which allows stdin.
        stdin = cell_id is None if allow_stdin is None else allow_stdin
        content = {"code": code, "silent": False, "store_history": True, "allow_stdin": stdin}
        msg = self.client.session.msg("execute_request", content)
        if cell_id is not None:
            msg["metadata"]["cellId"] = uuid.uuid4().hex if cell_id == "auto" else cell_id
        self.client.shell_channel.send(msg)
        run = CellRun(reply={})
        sent = time.perf_counter()
        deadline = time.monotonic() + timeout
        while True:
            self._answer_stdin(stdin_answers)  # an input request comes on its own channel
            try:
                m = self.client.get_iopub_msg(timeout=0.2)
            except Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no reply to {code!r} in {timeout} s") from None
                if not self.manager.is_alive():
                    died = f"the kernel died during {code!r}:\n{self.stderr_tail()}"
                    raise KernelDied(died) from None
                continue
            if m["parent_header"].get("msg_id") != msg["header"]["msg_id"]:
                continue
            if m["msg_type"] == "status":
                if m["content"]["execution_state"] == "idle":
                    break
                continue
            run.messages.append(m)
            run.arrived.append(time.perf_counter() - sent)
            if react is not None:
                react(self, m)
            if interrupt_when is not None and interrupt_when(run):
                self.manager.interrupt_kernel()
                interrupt_when = None
        while not run.reply:
            reply = self.client.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg["header"]["msg_id"]:
                run.reply = reply["content"]
        return run

    def _answer_stdin(self, answers: list[str] | None) -> None:
        while answers and self.client.stdin_channel.msg_ready():
            request = self.client.stdin_channel.get_msg(timeout=1)
            if request["msg_type"] == "input_request":
                self.client.input(answers.pop(0) if answers else "")

    def send_widget_state(self, comm_id: str, state: dict[str, Any]) -> None:
        """What a frontend sends when the user changes a widget (a click, a typed value)."""
        data = {"method": "update", "state": state, "buffer_paths": []}
        msg = self.client.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self.client.shell_channel.send(msg)

    def wait_until_ready(self, timeout: float = 120) -> None:
        """Poll `/model status` until the local model answers (bounded)."""
        deadline = time.monotonic() + timeout
        while "| state | ready |" not in self.execute("/model status").displayed:
            if time.monotonic() > deadline:
                raise TimeoutError("the local model did not become ready")
            time.sleep(0.2)

    def request(self, method: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Send a shell request (complete, inspect, is_complete, ...) and return its reply."""
        msg_id = getattr(self.client, method)(*args, **kwargs)
        while True:
            reply = self.client.get_shell_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                return dict(reply["content"])

    def stop(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
        if self.log is not None:
            self.log.close()


@contextmanager
def running_kernel(name: str = "shammah", **start: Any) -> Iterator[KernelSession]:
    """`KernelSession.start(name, **start)` for the `with` block; always shut down."""
    session = KernelSession.start(name, **start)
    try:
        yield session
    finally:
        session.stop()
