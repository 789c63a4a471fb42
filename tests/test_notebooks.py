"""The getting-started notebook, executed headless on the embedded model as the README says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from shammah_kernel.launcher import SHIPPED_NOTEBOOK

NOTEBOOK = Path(__file__).parent.parent / "notebooks" / "01-getting-started.ipynb"


def test_the_shipped_notebook_is_the_committed_one() -> None:
    # One notebook: the package data (what `start` opens from a wheel) is notebooks/'s file.
    assert SHIPPED_NOTEBOOK.read_bytes() == NOTEBOOK.read_bytes()


@pytest.mark.real_model
def test_getting_started_runs_headless_on_the_embedded_model(
    embedded_home: Path, tmp_path: Path
) -> None:
    output = tmp_path / "executed.ipynb"
    done = subprocess.run(
        [sys.executable, "-m", "shammah_kernel", "start", "--headless", "--output", str(output)],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Wrote the executed notebook" in done.stdout
    cells = [c for c in nbformat.read(output, as_version=4).cells if c.cell_type == "code"]
    for cell in cells:
        assert cell.outputs, f"no output for {cell.source!r}"
        assert all(o.output_type != "error" for o in cell.outputs), cell.outputs
    replies = [c for c in cells if not c.source.startswith("/")]
    for cell in replies:
        text = "".join(o.data["text/markdown"] for o in cell.outputs if "data" in o)
        assert "SmolLM2-135M-Instruct" in text and "tok/s" in text  # the footer
        assert len(text) > 80, "a real reply, not only the footer"
    history = next(c for c in cells if c.source == "/history")
    assert "is_even" in history.outputs[0].data["text/plain"]
