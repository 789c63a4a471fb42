"""`python -m benchmarks [--json PATH] [--model DIR] [--tokens N]`: measure, print the table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="measure start, decode, first token, bootstrap and learning against references",
    )
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--model", help="a local mlx-lm model folder (default: embedded model)")
    parser.add_argument("--tokens", type=int, default=64, help="tokens to decode per measurement")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .core import run_bench

    return run_bench(json_path=args.json, model=args.model, tokens=args.tokens)


if __name__ == "__main__":
    sys.exit(main())
