"""Jupyter protocol conformance of the Shammah kernel, with jupyter_kernel_test's suite.

Cells are chat messages and slash commands, not Python: the suite's Python-shaped checks
(hello world on stdout, stderr, execute_result, history, pager, clear_output) stay disabled by
leaving their attributes empty, as jupyter_kernel_test documents.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import jupyter_kernel_test
from conftest import write_config
from jupyter_kernel_test import msgspec_v5
from kernel_client import KernelSession
from model_factory import TINY_MODEL_NAME, make_tiny_qwen

from shammah_kernel.commands import COMMANDS

# jupyter_kernel_test 0.7 validates every message it reads but has no schema for comm messages,
# which the status widget sends; these follow the messaging spec (comm_open may name a module).
_COMM_SCHEMAS: dict[str, dict[str, Any]] = {
    "comm_open": {
        "properties": {
            "comm_id": {"type": "string"},
            "target_name": {"type": "string"},
            "data": {"type": "object"},
            "target_module": {"type": ["string", "null"]},
        },
        "required": ["comm_id", "target_name", "data"],
    },
    "comm_msg": {"properties": {"comm_id": {"type": "string"}, "data": {"type": "object"}}},
    "comm_close": {"properties": {"comm_id": {"type": "string"}, "data": {"type": "object"}}},
}
for _msg_type, _schema in _COMM_SCHEMAS.items():
    msgspec_v5.schema_fragments.setdefault(_msg_type, _schema)


class _TinyModelHome:
    """Starts the suite's kernel with a fresh Shammah home whose config names the tiny model.

    jupyter_kernel_test starts its kernel in setUpClass, before any pytest function fixture runs,
    so the environment is set here, before the kernel starts, and put back afterwards.
    """

    root: ClassVar[Path]
    _previous_home: ClassVar[str | None]

    @classmethod
    def setUpClass(cls) -> None:
        cls.root = Path(tempfile.mkdtemp(prefix="shammah-conformance-"))
        model = make_tiny_qwen(cls.root / TINY_MODEL_NAME)
        home = cls.root / "home"
        home.mkdir()
        write_config(home, f'[model]\nid = "{model}"\nmax_tokens = 16\ntemperature = 0.0\n')
        cls._previous_home = os.environ.get("SHAMMAH_HOME")
        os.environ["SHAMMAH_HOME"] = str(home)
        try:
            super().setUpClass()  # type: ignore[misc]  # the kernel starts here
        except BaseException:
            cls._restore_home()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            super().tearDownClass()  # type: ignore[misc]
        finally:
            cls._restore_home()

    @classmethod
    def _restore_home(cls) -> None:
        if cls._previous_home is None:
            os.environ.pop("SHAMMAH_HOME", None)
        else:
            os.environ["SHAMMAH_HOME"] = cls._previous_home
        shutil.rmtree(cls.root, ignore_errors=True)


class ShammahKernelTests(_TinyModelHome, jupyter_kernel_test.KernelTests):
    kernel_name = "shammah"
    language_name = "markdown"
    file_extension = ".md"

    completion_samples: ClassVar[list[dict[str, Any]]] = [
        {"text": "/hi", "matches": {"/history"}},
        {"text": "/re", "matches": {"/reset", "/restore"}},
        {"text": "/", "matches": {f"/{name}" for name in COMMANDS}},
        {"text": "/model st", "matches": {"status"}},
        {"text": "How do I sort a list?", "matches": set()},
    ]

    complete_code_samples: ClassVar[list[str]] = [
        "How do I reverse a string in Python?",
        "Explain this:\n```python\nprint(sorted(xs))\n```",
        "/help",
    ]
    # A message with a fenced code block still open goes on (console frontends wait for more).
    incomplete_code_samples: ClassVar[list[str]] = [
        "Why does this fail?\n```python\nx = [1, 2",
        "Compare\n```\none\n```\nwith\n```\ntwo",
    ]
    # A chat message is never invalid, so invalid_code_samples stays empty.

    code_inspect_sample = "/save"

    # Misusing a command is an error reply with one `error` output and nothing else.
    code_generate_error = "/hsitory"

    # Every command shows its result as Markdown; /save and /restore get a path in setUpClass.
    # /status also shows the status widget, whose bundle has text/plain but no Markdown.
    code_display_data: ClassVar[list[dict[str, str]]] = [
        {"code": "/help", "mime": "text/markdown"},
        {"code": "/status", "mime": "text/plain"},
        {"code": "/model status", "mime": "text/markdown"},
        {"code": "/history", "mime": "text/markdown"},
        {"code": "/reset", "mime": "text/markdown"},
    ]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        # The session's first cell also shows the status widget, and the widget updates while
        # the model loads: both are over before the suite's tests count a cell's messages.
        KernelSession(cls.km, cls.kc).wait_until_ready()
        conversation = cls.root / "conversation.json"
        cls.code_display_data = [
            *cls.code_display_data,
            {"code": f"/save {conversation}", "mime": "text/markdown"},
            {"code": f"/restore {conversation}", "mime": "text/markdown"},
        ]

    def test_message_streams_a_reply_in_valid_messages(self) -> None:
        """A chat message (not in the suite): every output it streams passes the message spec."""
        self.flush_channels()
        reply, outputs = self.execute_helper("Write a function that adds two numbers.", timeout=120)
        self.assertEqual(reply["content"]["status"], "ok")
        # The suite's client sends no cell id, like a terminal: the reply streams as text.
        self.assertGreater(len(outputs), 2)
        self.assertEqual({m["msg_type"] for m in outputs}, {"stream"})
        footer = outputs[-1]["content"]["text"]
        self.assertIn(TINY_MODEL_NAME, footer)  # the home set up above chose the model


class ShammahIopubWelcomeTests(_TinyModelHome, jupyter_kernel_test.IopubWelcomeTests):
    kernel_name = "shammah"
    support_iopub_welcome = True

    def test_recv_iopub_welcome_msg(self) -> None:
        """The welcome comes before any reply; stream output the process wrote while it started
        (ipykernel forwards its stderr) may race ahead of it: seen once in CI, never locally."""
        self.kc.start_channels()
        msg = self.kc.get_iopub_msg(timeout=10)
        while msg["msg_type"] == "stream":
            msg = self.kc.get_iopub_msg(timeout=10)
        self.assertEqual(msg["msg_type"], "iopub_welcome")
        self.assertEqual(msg["content"]["subscription"], "")
