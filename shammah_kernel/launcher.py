"""`start`, the main job: JupyterLab on the getting-started notebook, or `--headless` runs it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .kernelspec import KERNEL_NAME, install
from .model_choice import MODEL_VARIABLE

CELL_TIMEOUT = 600  # seconds; the first cell may wait for the one-time model conversion


def prepare_model() -> None:
    """Convert the embedded model now, with progress on the terminal, so the first cell is quick."""
    from .config import models_dir
    from .embedded import ensure_embedded_model

    print("Preparing the embedded SmolLM2 model (converted once, then reused)…", flush=True)

    def step(text: str) -> None:
        print(f"  {text}", flush=True)

    folder = ensure_embedded_model(models_dir(), progress=step)
    print(f"Model ready in {folder}", flush=True)


def execute_headless(notebook: Path, output: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    client.execute()
    nbformat.write(nb, output)


def ensure_kernelspec() -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    found = KernelSpecManager().find_kernel_specs().get(KERNEL_NAME)
    if found:
        print(f"Using the Shammah kernelspec in {found}", flush=True)
    else:
        print(f"Installed the Shammah kernelspec in {install(prefix=sys.prefix)}", flush=True)


def start(notebook: Path, *, headless: bool, output: Path | None, port: int) -> int:
    ensure_kernelspec()
    # The getting-started run answers offline, on the embedded model, unless told otherwise.
    os.environ.setdefault(MODEL_VARIABLE, "embedded")
    if os.environ[MODEL_VARIABLE] == "embedded":
        prepare_model()
    if headless:
        target = output or notebook.with_suffix(".executed.ipynb")
        print(f"Executing {notebook} on the Shammah kernel…", flush=True)
        execute_headless(notebook, target)
        print(f"Wrote the executed notebook to {target}", flush=True)
        return 0
    argv = [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={port}", str(notebook)]
    os.execv(sys.executable, argv)
    return 0  # not reached: execv replaces this process
