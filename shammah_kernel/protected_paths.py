"""Protected paths: places no rule opens; only a per-call approval reads or writes them.

Two kinds. Secret places (keys, tokens, cloud credentials, the Shammah home with its API key) are
protected for reading and writing. Rule files and files that run code later (git hooks, shell
startup files, IPython startup, ``*.pth``, ``conftest.py``...) are protected for writing: a write
there would outlive the call and act without being asked. Most entries are names matched at any
depth, so that ``cd`` tricks or a notebook kept in the home folder change nothing.

``Makefile`` (and ``setup.py``, ``package.json`` scripts) is not protected: it runs only when the
user runs the project's build, as any source file of the project does; asking for every edit of
ordinary project code would train the user to click through.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .config import shammah_home


@dataclass(frozen=True, slots=True)
class Protection:
    """Why a path is protected; ``secret`` means reading it is protected too."""

    reason: str
    secret: bool


SECRET = Protection("a secret place (keys, tokens, credentials)", secret=True)
SHAMMAH = Protection("the Shammah home (settings, API key, rules)", secret=True)
RULES = Protection("a rule file", secret=False)
RUNS_CODE = Protection("a file that runs code later", secret=False)
UNCHECKABLE = Protection("a path that cannot be checked", secret=True)

# Folders, by the consecutive names that end them, at any depth: everything below is protected.
_SECRET_FOLDERS = (
    (".ssh",),
    (".aws",),
    (".gnupg",),
    (".azure",),
    (".kube",),
    (".password-store",),
    (".config", "gcloud"),
    (".config", "gh"),
    (".docker",),
)
_CODE_FOLDERS = (
    (".git",),  # hooks, config (aliases, filters, core.hooksPath), info
    (".shammah",),  # a project's rule file
    (".config", "fish"),
    (".config", "autostart"),
    (".config", "systemd"),
    (".ipython",),  # profile_*/startup/, ipython_config.py
    (".jupyter",),
    (".github", "workflows"),
    (".vscode",),  # tasks.json can run on folder open
    ("cron.d",),
    ("crontabs",),
)
# File names, as globs, at any depth.
_SECRET_NAMES = (
    ".env",
    ".env.*",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".vault-token",
    ".my.cnf",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "trusted-rules.json",
)
_HARMLESS_ENV = frozenset({".env.example", ".env.sample", ".env.template", ".env.dist"})
_CODE_NAMES = (
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".bash_logout",
    ".bash_aliases",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".zshenv",
    ".zlogin",
    ".envrc",
    "*.pth",
    "conftest.py",
    "sitecustomize.py",
    "usercustomize.py",
    ".pre-commit-config.yaml",
    "crontab",
    "permissions.json",  # a rule file wherever it lies: fail closed
)


def protection(path: Path, workspace: Path) -> Protection | None:
    """How `path` (absolute) is protected, or None: checked as written and with symlinks
    resolved, so a link to a protected file is protected and a protected name is never missed."""
    try:
        lexical = Path(os.path.normpath(workspace / path))
        resolved = lexical.resolve()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a symlink loop
        return UNCHECKABLE
    for candidate in (lexical, resolved):
        found = _protection_of(candidate)
        if found is not None:
            return found
    return None


def read_protection(path: Path, workspace: Path) -> Protection | None:
    """The protection that also covers reading `path`: secret places only."""
    found = protection(path, workspace)
    return found if found is not None and found.secret else None


def _protection_of(path: Path) -> Protection | None:
    for root in _roots():
        if path == root or path.is_relative_to(root):
            return SHAMMAH if root in _shammah_roots() else RUNS_CODE
    parts = PurePosixPath(path.as_posix()).parts
    name = parts[-1] if parts else ""
    if _in_folder(parts, _SECRET_FOLDERS) or _named(name, _SECRET_NAMES):
        return None if name in _HARMLESS_ENV else SECRET
    if _in_folder(parts, _CODE_FOLDERS):
        return RULES if ".shammah" in parts else RUNS_CODE
    if _named(name, _CODE_NAMES):
        return RULES if name in ("permissions.json", "trusted-rules.json") else RUNS_CODE
    return None


def _shammah_roots() -> tuple[Path, ...]:
    home = shammah_home()
    return (home, _resolved(home))


def _roots() -> tuple[Path, ...]:
    """Protected folders named by the environment: the Shammah home, IPython's and Jupyter's."""
    roots = list(_shammah_roots())
    for variable in ("IPYTHONDIR", "JUPYTER_CONFIG_DIR"):
        value = os.environ.get(variable)
        if value:
            folder = Path(value).expanduser()
            roots += [folder, _resolved(folder)]
    return tuple(roots)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def _in_folder(parts: tuple[str, ...], folders: tuple[tuple[str, ...], ...]) -> bool:
    for folder in folders:
        size = len(folder)
        if any(parts[i : i + size] == folder for i in range(len(parts) - size + 1)):
            return True
    return False


def _named(name: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)
