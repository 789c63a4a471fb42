"""Installs the `shammah` kernelspec (display name "Shammah", with its logo)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from jupyter_client.kernelspec import KernelSpecManager

from .blas import PRELOADED_VARIABLE, preload_environment

KERNEL_NAME = "shammah"
DISPLAY_NAME = "Shammah"
RESOURCES = Path(__file__).parent / "resources"


def kernel_json() -> dict[str, object]:
    spec: dict[str, object] = {
        # "python" is replaced by the interpreter of the client that starts the kernel.
        "argv": ["python", "-m", "shammah_kernel", "-f", "{connection_file}"],
        "display_name": DISPLAY_NAME,
        "language": "markdown",
        "interrupt_mode": "signal",
        "metadata": {"debugger": False},
    }
    # Preloading OpenBLAS here spares the launcher its re-exec (a second interpreter start).
    env = preload_environment({})
    if env is not None:
        spec["env"] = {k: env[k] for k in ("LD_PRELOAD", PRELOADED_VARIABLE)}
    return spec


def install(*, user: bool = False, prefix: str | None = None) -> str:
    """Install the kernelspec; returns the folder it was installed to."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / KERNEL_NAME
        folder.mkdir()
        (folder / "kernel.json").write_text(json.dumps(kernel_json(), indent=2) + "\n")
        for logo in RESOURCES.glob("logo-*"):
            shutil.copy(logo, folder / logo.name)
        return str(
            KernelSpecManager().install_kernel_spec(
                str(folder), KERNEL_NAME, user=user, prefix=prefix
            )
        )
