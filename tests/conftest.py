"""Fixtures: every test runs with a temporary Shammah home and Jupyter dirs, never the user's."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# Set before any test (and before unittest-style suites start kernels in setUpClass): nothing
# may read or write the real ~/.shammah or ~/.jupyter.
_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="shammah-tests-"))
for _name, _sub in {
    "SHAMMAH_HOME": "home",
    "JUPYTER_CONFIG_DIR": "jupyter-config",
    "JUPYTER_DATA_DIR": "jupyter-data",
    "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
    "IPYTHONDIR": "ipython",
}.items():
    os.environ[_name] = str(_SESSION_ROOT / _sub)
os.environ["JUPYTER_PATH"] = str(_SESSION_ROOT / "jupyter-data")
os.environ["MLX_DISABLE_COMPILE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["JUPYTER_PLATFORM_DIRS"] = "1"

from kernel_client import KernelSession  # noqa: E402
from model_factory import make_tiny_qwen  # noqa: E402

from shammah_kernel.kernelspec import install  # noqa: E402

install(prefix=None, user=True)  # into the temporary JUPYTER_DATA_DIR


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_ROOT, ignore_errors=True)


@pytest.fixture(autouse=True)
def shammah_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty Shammah home for each test."""
    home = tmp_path / "shammah-home"
    home.mkdir()
    monkeypatch.setenv("SHAMMAH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_qwen(tmp_path_factory.mktemp("models") / "tiny-qwen2")


@pytest.fixture(scope="session")
def embedded_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded SmolLM2, converted once for the whole test session."""
    from shammah_kernel.embedded import ensure_embedded_model

    return ensure_embedded_model(tmp_path_factory.mktemp("embedded"))


def write_config(home: Path, text: str) -> Path:
    path = home / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def tiny_home(shammah_home: Path, tiny_model: Path) -> Path:
    """A home whose config points the model at the tiny random Qwen2."""
    write_config(
        shammah_home, f'[model]\nid = "{tiny_model}"\nmax_tokens = 24\ntemperature = 0.0\n'
    )
    return shammah_home


@pytest.fixture
def embedded_home(shammah_home: Path, embedded_model: Path) -> Path:
    """A home where the embedded model is already converted (linked from the session copy)."""
    models = shammah_home / "models"
    models.mkdir()
    (models / embedded_model.name).symlink_to(embedded_model, target_is_directory=True)
    return shammah_home


@pytest.fixture
def tiny_kernel(tiny_home: Path) -> Iterator[KernelSession]:
    """A real Shammah kernel subprocess answering with the tiny model."""
    session = KernelSession.start()
    try:
        yield session
    finally:
        session.stop()
