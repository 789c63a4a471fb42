"""The command line: `install`, `start`, `export-examples` (also the `shammah` script).

The benchmarks are the repo's, not the package's: `python -m benchmarks` from a checkout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
    start.add_argument(
        "--notebook", type=Path, help="default: a copy of the shipped getting-started notebook"
    )
    start.add_argument("--output", type=Path, help="where the executed copy goes (headless)")
    start.add_argument("--port", type=int, default=8888)
    export = sub.add_parser(
        "export-examples", help="write the training examples as mlx-lm chat JSONL with weights"
    )
    export.add_argument("path", type=Path, help="the .jsonl file to write")
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
    return _export_examples(args.path)


def _export_examples(path: Path) -> int:
    from .config import shammah_home
    from .store import ExampleStore

    database = shammah_home() / "examples.db"
    if not database.exists():
        print(f"No examples yet: {database} does not exist.", file=sys.stderr)
        return 1
    store = ExampleStore(database)
    try:
        count = store.export_jsonl(path)
    except OSError as e:
        print(f"Could not write {path}: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"Wrote {count} example(s) from {database} to {path}")
    return 0


def main() -> int:
    return run_subcommand(sys.argv[1:])
