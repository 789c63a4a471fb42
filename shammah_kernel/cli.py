"""The command line: `install`, `start` and `bench` (also the `shammah` console script)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
GETTING_STARTED = NOTEBOOKS / "01-getting-started.ipynb"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shammah_kernel")
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help="install the 'shammah' kernelspec")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="into the user's Jupyter data dir")
    where.add_argument("--sys-prefix", action="store_true", help="into this environment")
    where.add_argument("--prefix", help="into PREFIX/share/jupyter/kernels")
    start = sub.add_parser("start", help="JupyterLab with Shammah on the getting-started notebook")
    start.add_argument("--headless", action="store_true", help="execute the notebook, no Lab")
    start.add_argument("--notebook", type=Path, default=GETTING_STARTED)
    start.add_argument("--output", type=Path, help="where the executed copy goes (headless)")
    start.add_argument("--port", type=int, default=8888)
    bench = sub.add_parser("bench", help="measure startup, decode speed and time to first token")
    bench.add_argument("--json", type=Path, help="also write the figures as JSON here")
    bench.add_argument("--model", help="a local mlx-lm model folder (default: embedded model)")
    bench.add_argument("--tokens", type=int, default=64, help="tokens to decode per measurement")
    return parser


def run_subcommand(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "install":
        from .kernelspec import install

        prefix = sys.prefix if args.sys_prefix else args.prefix
        print(f"Installed the Shammah kernelspec in {install(user=args.user, prefix=prefix)}")
        return 0
    if args.command == "start":
        from .launcher import start

        return start(args.notebook, headless=args.headless, output=args.output, port=args.port)
    from .bench import run_bench

    return run_bench(json_path=args.json, model=args.model, tokens=args.tokens)


def main() -> int:
    return run_subcommand(sys.argv[1:])
