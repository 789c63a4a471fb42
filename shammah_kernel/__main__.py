"""`python -m shammah_kernel`: start the kernel (the kernelspec's command), or a subcommand.

Subcommands: `install` (the kernelspec), `start` (JupyterLab on the getting-started notebook, or
`--headless` to execute it), `bench` (the benchmark). Imports stay lazy: a kernel start must not
pay for the subcommands.
"""

from __future__ import annotations

import os
import sys

SUBCOMMANDS = ("install", "start", "bench")


def launch_kernel() -> None:
    from .blas import reexec_with_openblas

    reexec_with_openblas()
    # mx.compile shells out to g++ on Linux CPU (~28 s cold) for no measurable gain on these models.
    if sys.platform.startswith("linux"):
        os.environ.setdefault("MLX_DISABLE_COMPILE", "1")
    from ipykernel.kernelapp import IPKernelApp

    from .kernel import ShammahKernel

    IPKernelApp.launch_instance(kernel_class=ShammahKernel)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in SUBCOMMANDS:
        launch_kernel()
        return 0
    from .cli import run_subcommand

    return run_subcommand(args)


if __name__ == "__main__":
    sys.exit(main())
