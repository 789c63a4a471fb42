"""`python -m shammah_kernel`: options start the kernel; every documented subcommand is the
parser's, run as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def shammah(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "shammah_kernel", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_export_examples_is_a_subcommand_not_a_kernel(shammah_home: Path, tmp_path: Path) -> None:
    run = shammah("export-examples", str(tmp_path / "out.jsonl"))
    assert run.returncode == 1 and "No examples yet" in run.stderr  # a kernel would not exit


def test_every_documented_subcommand_answers_help() -> None:
    for name in ("install", "start", "export-examples"):
        run = shammah(name, "--help")
        assert run.returncode == 0 and f"usage: python -m shammah_kernel {name}" in run.stdout


def test_the_benchmarks_are_the_repos_not_a_subcommand() -> None:
    assert shammah("bench").returncode == 2  # gone from the package
    repo = Path(__file__).resolve().parent.parent
    command = [sys.executable, "-m", "benchmarks", "--help"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=repo)
    assert run.returncode == 0 and "usage: python -m benchmarks" in run.stdout


def test_an_unknown_subcommand_is_a_usage_error() -> None:
    run = shammah("nosuch")
    assert run.returncode == 2 and "invalid choice: 'nosuch'" in run.stderr
