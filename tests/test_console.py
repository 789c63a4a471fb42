"""The kernel in a real terminal REPL: `jupyter console --kernel shammah`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_jupyter_console_shows_commands_and_streams_replies_as_text(tiny_home: Path) -> None:
    console = [sys.executable, "-m", "jupyter_console", "--kernel", "shammah", "--simple-prompt"]
    done = subprocess.run(
        console,
        input="/help\nhello there\n",
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "| `/history` |" in done.stdout
    assert "[tiny-qwen2 · 24 tokens ·" in done.stdout  # the reply's plain-text footer
    assert "Traceback" not in done.stdout + done.stderr
