"""`python -m shammah_kernel`: start the kernel (the kernelspec's command), or a subcommand.

No arguments, or options only (the kernelspec's `-f CONNECTION_FILE`): the kernel. A first word
is a subcommand of `cli`'s parser, which owns their list (`install`, `start`,
`export-examples`). Imports stay lazy: a kernel start must not pay for the subcommands.
"""

from __future__ import annotations

import os
import sys


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
    if not args or args[0].startswith("-"):
        launch_kernel()
        return 0
    from .cli import run_subcommand

    return run_subcommand(args)


if __name__ == "__main__":
    sys.exit(main())
