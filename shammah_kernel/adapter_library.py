"""Adapters under the Shammah home: named folders, the one each base model uses, import, export.

``adapters/<name>/`` holds one adapter in mlx-lm's format plus ``shammah.json`` (see adapters.py).
A name is a line of training: each run for it retrains from the base on its examples and
replaces the folder as a whole (staged in a hidden sibling, swapped in by renames), so a reader
sees the old adapter or the new one, never a mix. ``current.json`` maps a base model to the
adapter it answers with, so a restarted kernel keeps what it learned. No MLX here.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import CommandError

ADAPTER_FILE = "adapters.safetensors"  # the names mlx-lm's load_adapters reads
CONFIG_FILE = "adapter_config.json"
METADATA_FILE = "shammah.json"
CURRENT_FILE = "current.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    name: str
    path: Path
    base_model: str  # "" when unknown
    created_at: str
    examples: int  # examples trained on (validation included)
    train_loss: float | None
    val_loss: float | None
    seconds: float | None
    size_bytes: int
    problem: str  # "" when the folder reads as a whole adapter


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise CommandError(
            f"{name!r} is not a usable adapter name: use letters, digits, '.', '_' and '-' "
            "(up to 64, starting with a letter or digit)."
        )
    return name


class AdapterLibrary:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    def exists(self, name: str) -> bool:
        return (self.path(name) / ADAPTER_FILE).is_file()

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        self.recover()
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))

    def info(self, name: str) -> AdapterInfo:
        path = self.path(name)
        meta = read_json_object(path / METADATA_FILE)
        config = read_json_object(path / CONFIG_FILE)
        problem = ""
        if not (path / ADAPTER_FILE).is_file():
            problem = f"{ADAPTER_FILE} is missing"
        elif config is None:
            problem = f"{CONFIG_FILE} is missing or unreadable"
        elif meta is None and (path / METADATA_FILE).exists():
            problem = f"{METADATA_FILE} is unreadable (not a JSON object)"
        meta = meta or {}
        # Each field is read for its type: a hand-edited or hostile file must not fail the list.
        base = _text(meta.get("base_model")) or _text((config or {}).get("model"))
        size = sum(f.stat().st_size for f in path.iterdir() if f.is_file()) if path.is_dir() else 0
        examples = _count(meta.get("examples")) + _count(meta.get("validation_examples"))
        return AdapterInfo(
            name,
            path,
            base,
            _text(meta.get("created_at")),
            examples,
            _number(meta.get("train_loss")),
            _number(meta.get("val_loss")),
            _number(meta.get("seconds")),
            size,
            problem,
        )

    def list(self) -> list[AdapterInfo]:
        return [self.info(name) for name in self.names()]

    # -- which adapter a base model answers with ------------------------------------------------

    def current(self, base_model: str) -> str | None:
        return self._current_map().get(base_model)

    def set_current(self, base_model: str, name: str | None) -> None:
        mapping = self._current_map()
        if name is None:
            mapping.pop(base_model, None)
        else:
            mapping[base_model] = check_name(name)
        self.root.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.root / CURRENT_FILE, json.dumps(mapping, indent=2) + "\n")

    def _current_map(self) -> dict[str, str]:
        mapping = read_json_object(self.root / CURRENT_FILE)
        return {str(k): v for k, v in (mapping or {}).items() if isinstance(v, str)}

    def next_name(self) -> str:
        taken = set(self.names()) | set(self._current_map().values())
        n = 1
        while f"adapter-{n}" in taken:
            n += 1
        return f"adapter-{n}"

    # -- writing ---------------------------------------------------------------------------------

    def staging_dir(self, name: str) -> Path:
        """Where a run for ``name`` writes (hidden); ``publish`` swaps it in."""
        self.root.mkdir(parents=True, exist_ok=True)
        staged = self.root / f".{check_name(name)}.staged"
        shutil.rmtree(staged, ignore_errors=True)
        return staged

    def publish(self, name: str, staged: Path) -> Path:
        """Replace ``adapters/<name>`` with the folder ``staged``, by renames."""
        target = self.path(name)
        old = self.root / f".{name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.rename(target, old)
        os.rename(staged, target)
        shutil.rmtree(old, ignore_errors=True)
        fsync_path(self.root)
        return target

    def recover(self) -> None:
        """Finish a replacement a crash interrupted between its two renames."""
        if not self.root.is_dir():
            return
        for old in self.root.glob(".*.old"):
            target = self.root / old.name[1 : -len(".old")]
            if target.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(old, target)

    def delete(self, name: str) -> None:
        path = self.path(name)
        if not path.is_dir():
            raise CommandError(f"There is no adapter named {name!r}; see /adapters list")
        trash = self.root / f".{name}.deleted"
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(path, trash)  # gone from the list at once, even if the removal is slow
        shutil.rmtree(trash, ignore_errors=True)
        for base, current in self._current_map().items():
            if current == name:
                self.set_current(base, None)

    def export(self, name: str, destination: Path) -> Path:
        """Copy the adapter to ``destination`` (a new folder, or into an existing one)."""
        info = self.info(name)
        if not info.path.is_dir():
            raise CommandError(f"There is no adapter named {name!r}; see /adapters list")
        if info.problem:
            raise CommandError(f"The adapter {name!r} is damaged ({info.problem}): not exported.")
        target = destination / name if destination.is_dir() else destination
        if target.exists():
            raise CommandError(f"{target} already exists: choose another path.")
        try:
            shutil.copytree(info.path, target)
        except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
            raise CommandError(f"Could not export to {_shown(target)}: {e}") from None
        return target

    def import_(self, source: Path, name: str | None = None) -> str:
        """Copy an adapter folder (mlx-lm's format) in under ``name`` (default: its folder's)."""
        if not (source / ADAPTER_FILE).is_file() or read_json_object(source / CONFIG_FILE) is None:
            raise CommandError(
                f"{_shown(source)} is not an adapter folder: it needs {ADAPTER_FILE} and a "
                f"readable {CONFIG_FILE} (as mlx_lm.lora writes them)."
            )
        config = read_json_object(source / CONFIG_FILE) or {}
        meta = read_json_object(source / METADATA_FILE) or {}
        if not (_text(meta.get("base_model")) or _text(config.get("model"))):
            raise CommandError(
                f"{_shown(source)}/{CONFIG_FILE} does not say which base model it was trained on "
                '(its "model" key): Shammah cannot check that it fits.'
            )
        name = check_name(name or source.resolve().name)
        if self.path(name).exists():
            raise CommandError(f"An adapter named {name!r} exists already: delete it first.")
        staged = self.staging_dir(name)
        try:
            shutil.copytree(source, staged)
        except OSError as e:
            shutil.rmtree(staged, ignore_errors=True)
            raise CommandError(f"Could not import {_shown(source)}: {e}") from None
        self.publish(name, staged)
        return name


MAX_JSON_BYTES = 16 * 1024 * 1024  # metadata is small; a larger file is not read


def read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing, unreadable, too deep or large, not
    a regular file (a FIFO would block) or not an object."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_JSON_BYTES:
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _shown(path: Path) -> str:
    """`path` for a message: a NUL byte (which no path may hold) shown escaped."""
    return str(path).replace("\0", "\\0")


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _count(value: object) -> int:
    return len(value) if isinstance(value, list) else 0


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entries to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
