"""`start`, the main job: JupyterLab on the getting-started notebook, or `--headless` runs it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

from .kernelspec import KERNEL_NAME, install
from .model_choice import MODEL_VARIABLE

CELL_TIMEOUT = 600  # seconds; the first cell may wait for the one-time model conversion
# The getting-started notebook ships in the package (notebooks/ in the repo is the same file).
SHIPPED_NOTEBOOK = Path(__file__).parent / "notebooks" / "01-getting-started.ipynb"
LAB_MISSING = (
    'JupyterLab is not installed: add it with `pip install "shammah-kernel[lab]"`, '
    "or run the notebook without it: `python -m shammah_kernel start --headless`."
)
ROOT_NOTICE = "Running as root (as in most containers): starting JupyterLab with --allow-root."


def prepare_model() -> None:
    """Convert the embedded model now, with progress on the terminal, so the first cell is quick."""
    from .config import models_dir
    from .embedded import Transfer, ensure_embedded_model

    print("Preparing the embedded SmolLM2 model (converted once, then reused)…", flush=True)

    def step(text: str) -> None:
        print(f"  {text}", flush=True)

    shown: list[int] = []  # the tenths of the download already printed

    def transfer(done: Transfer) -> None:
        tenth = done.downloaded_bytes * 10 // max(done.total_bytes, 1)
        if not shown or tenth > shown[-1]:
            shown.append(tenth)
            mb = f"{done.downloaded_bytes / 1e6:.0f} of {done.total_bytes / 1e6:.0f} MB"
            print(f"  downloaded {mb}", flush=True)

    folder = ensure_embedded_model(models_dir(), progress=step, transfer=transfer)
    print(f"Model ready in {folder}", flush=True)


def working_notebook() -> Path:
    """The user's copy of the shipped notebook, in the Shammah home: made once, then kept."""
    from .config import shammah_home

    copy = shammah_home() / "notebooks" / SHIPPED_NOTEBOOK.name
    if not copy.exists():  # never overwrite the user's edits
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHIPPED_NOTEBOOK, copy)
    return copy


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


def lab_argv(notebook: Path, port: int) -> list[str]:
    """The JupyterLab command line; as root it adds --allow-root (Lab refuses root without it)."""
    argv = [sys.executable, "-m", "jupyterlab", "--ip=127.0.0.1", f"--port={port}"]
    if not notebook.resolve().is_relative_to(Path.cwd().resolve()):
        # Lab opens only files under its root folder.
        argv.append(f"--ServerApp.root_dir={notebook.parent}")
    if os.geteuid() == 0:
        argv.append("--allow-root")
    return [*argv, str(notebook)]


def start(notebook: Path | None, *, headless: bool, output: Path | None, port: int) -> int:
    # Checked first: without Lab, nothing else is worth preparing.
    if not headless and importlib.util.find_spec("jupyterlab") is None:
        print(LAB_MISSING, file=sys.stderr)
        return 1
    notebook = working_notebook() if notebook is None else notebook
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
    argv = lab_argv(notebook, port)
    if "--allow-root" in argv:
        print(ROOT_NOTICE, flush=True)
    os.execv(sys.executable, argv)
    return 0  # not reached: execv replaces this process
