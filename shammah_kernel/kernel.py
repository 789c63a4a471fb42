"""The Shammah Jupyter kernel: each cell is one turn with the assistant, or a slash command.

A thin adapter: protocol plumbing stays in ipykernel; what a cell does is the cell runner's
(shared with the magics). The kernel keeps execution counts, its iopub sink and the reply dicts.
It subclasses IPythonKernel because only that class handles comms (widgets).
"""

from __future__ import annotations

from typing import Any

from ipykernel.ipkernel import IPythonKernel

from . import __version__
from .approvals import frontend_for
from .assistant import Assistant
from .cell import CellRunner
from .commands import COMMANDS, complete
from .renderer import markdown_bundle

RED, RESET = "\x1b[31m", "\x1b[0m"


class IopubSink:
    """Sends outputs of the current cell on the kernel's iopub channel."""

    def __init__(self, kernel: ShammahKernel) -> None:
        self.kernel = kernel

    def _send(self, msg_type: str, content: dict[str, Any]) -> None:
        self.kernel.send_response(self.kernel.iopub_socket, msg_type, content)

    def display(self, data: dict[str, str], display_id: str | None = None) -> None:
        transient = {"display_id": display_id} if display_id else {}
        self._send("display_data", {"data": data, "metadata": {}, "transient": transient})

    def update(self, data: dict[str, str], display_id: str) -> None:
        content = {"data": data, "metadata": {}, "transient": {"display_id": display_id}}
        self._send("update_display_data", content)

    def stream(self, text: str) -> None:
        self._send("stream", {"name": "stdout", "text": text})


class ShammahKernel(IPythonKernel):
    implementation = "shammah"
    implementation_version = __version__
    banner = "Shammah: a local AI coding assistant. Every cell is a message; /help lists commands."
    language_info = {
        "name": "markdown",
        "mimetype": "text/markdown",
        "file_extension": ".md",
        "codemirror_mode": "markdown",
        "pygments_lexer": "markdown",
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.assistant = Assistant()
        for problem in self.assistant.problems:
            self.log.warning("%s", problem)
        self.runner = CellRunner(self.assistant)

    @property
    def kernel_info(self) -> dict[str, Any]:
        info = dict(super().kernel_info)
        # The debugger is for Python cells; Shammah cells are messages.
        info["supported_features"] = [
            f for f in info.get("supported_features", []) if f != "debugger"
        ]
        return info

    async def kernel_info_request(self, stream: Any, ident: Any, parent: Any) -> None:
        await super().kernel_info_request(stream, ident, parent)
        # Load the model only after the first reply, so the kernel answers at once.
        self.assistant.start()

    async def do_execute(
        self,
        code: str,
        silent: bool,
        store_history: bool = True,
        user_expressions: dict[str, Any] | None = None,
        allow_stdin: bool = False,
        *,
        cell_meta: dict[str, Any] | None = None,
        cell_id: str | None = None,
    ) -> dict[str, Any]:
        assert self.shell is not None
        count = self.shell.execution_count
        if store_history and not silent:
            self.shell.execution_count += 1
        self._allow_stdin = allow_stdin  # our execute path, not IPython's, so set it here
        sink = None if silent else IopubSink(self)
        outcome = await self.runner.run(
            code,
            cell_id=cell_id,
            sink=sink,
            frontend=frontend_for(cell_id, allow_stdin),
            read_line=self.raw_input,
        )
        if not outcome.ok:
            return self._error(sink, count, outcome.error_name, outcome.message)
        return {"status": "ok", "execution_count": count, "payload": [], "user_expressions": {}}

    def _error(self, sink: IopubSink | None, count: int, name: str, message: str) -> dict[str, Any]:
        """An error reply with a one-line message in the cell: no traceback of ours."""
        content = {"ename": name, "evalue": message, "traceback": [f"{RED}{message}{RESET}"]}
        if sink is not None:
            self.send_response(self.iopub_socket, "error", content)
        return {"status": "error", "execution_count": count, **content}

    def do_complete(self, code: str, cursor_pos: int) -> dict[str, Any]:  # type: ignore[override]
        matches, start, end = complete(code, cursor_pos)
        return {
            "status": "ok",
            "matches": matches,
            "cursor_start": start,
            "cursor_end": end,
            "metadata": {},
        }

    def do_inspect(  # type: ignore[override]
        self, code: str, cursor_pos: int, detail_level: int = 0, omit_sections: Any = ()
    ) -> dict[str, Any]:
        line = code.splitlines()[0] if code.strip() else ""
        name = line[1:].split(" ")[0] if line.startswith("/") else ""
        command = COMMANDS.get(name)
        if command is None:
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}
        text = f"{command.usage}\n\n{command.summary}"
        return {"status": "ok", "found": True, "data": markdown_bundle(text), "metadata": {}}

    def do_is_complete(self, code: str) -> dict[str, Any]:  # type: ignore[override]
        # A message is complete unless a fenced code block is still open.
        if code.count("```") % 2:
            return {"status": "incomplete", "indent": ""}
        return {"status": "complete"}

    def do_shutdown(self, restart: bool) -> dict[str, Any]:  # type: ignore[override]
        self.assistant.shutdown()
        return dict(super().do_shutdown(restart))
