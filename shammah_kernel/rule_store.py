"""Remembered permission rules: ``permissions.json`` in the Shammah home, and a project's own.

Both hold ``{"allow": [...], "ask": [...], "deny": [...]}`` of rule strings, fine to edit by hand;
what is wrong in them is reported, never raised.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shammah_kernel.config import ConfigProblem, shammah_home
from shammah_kernel.errors import ConfigError, RuleError
from shammah_kernel.permissions import Decision, Rule


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A remembered rule; ``id`` is stable (a hash of kind and rule) for ``/patterns remove``."""

    id: str
    kind: Decision
    rule: Rule
    source: Path  # the file it is written in


def rule_id(kind: Decision, rule: Rule) -> str:
    """Six hex digits of the SHA-256 of ``"allow Bash(pytest *)"``: the same in every listing."""
    return hashlib.sha256(f"{kind.value} {rule}".encode("utf-8", "surrogatepass")).hexdigest()[:6]


class RuleStore:
    """``permissions.json`` in the Shammah home (read and written) and, given a workspace, its
    ``.shammah/permissions.json`` (read only). Both hold ``{"allow": [...], "ask": [...],
    "deny": [...]}`` of rule strings; what is wrong in them is reported, never raised."""

    def __init__(self, path: Path | None = None, *, workspace: Path | None = None) -> None:
        self.path = shammah_home() / "permissions.json" if path is None else path
        self.project_path = None if workspace is None else workspace / ".shammah/permissions.json"

    def read(self) -> tuple[builtins.list[StoredRule], builtins.list[ConfigProblem]]:
        """The good rules of both files (the user's first) and the problems met."""
        rules: list[StoredRule] = []
        problems: list[ConfigProblem] = []
        for path in (self.path, self.project_path):
            if path is not None:
                problems += _read_rules(path, rules)
        return rules, problems

    def list(self) -> builtins.list[StoredRule]:
        return self.read()[0]

    def problems(self) -> builtins.list[ConfigProblem]:
        return self.read()[1]

    def add(self, kind: Decision, rule: Rule) -> StoredRule:
        """Remember ``rule`` in the user's file (once); raises ConfigError if it can't be edited."""
        table = self._editable()
        entries = table.setdefault(kind.value, [])
        stored = StoredRule(rule_id(kind, rule), kind, rule, self.path)
        if all(_entry_id(kind, entry) != stored.id for entry in entries):
            entries.append(str(rule))
        self._write(table)
        return stored

    def remove(self, id: str) -> bool:
        """Forget the user's rule(s) with this id; False when none (project rules stay)."""
        table = self._editable()
        removed = False
        for kind in Decision:
            entries = table.get(kind.value, [])
            kept = [entry for entry in entries if _entry_id(kind, entry) != id]
            removed = removed or len(kept) < len(entries)
            table[kind.value] = kept
        if removed:
            self._write(table)
        return removed

    def clear(self) -> None:
        """Forget every rule of the user's file, readable or not."""
        self._write({})

    def _editable(self) -> dict[str, builtins.list[object]]:
        try:
            table = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
            raise ConfigError(f"{self.path} cannot be read ({error}); fix or clear it") from None
        if not isinstance(table, dict) or not all(
            isinstance(table.get(kind.value, []), builtins.list) for kind in Decision
        ):
            raise ConfigError(f"{self.path} is not a table of rule lists; fix or clear it")
        return table

    def _write(self, table: dict[str, builtins.list[object]]) -> None:
        """Write atomically: a temporary file in the same folder replaces the old one."""
        table = {kind.value: table.get(kind.value, []) for kind in Decision} | table
        try:
            data = json.dumps(table, indent=2, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # lone surrogates: keep them as JSON escapes
            data = json.dumps(table, indent=2).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            try:
                with os.fdopen(descriptor, "wb") as file:
                    file.write(data + b"\n")
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as error:
            raise ConfigError(f"cannot write {self.path}: {error.strerror}") from error


def _entry_id(kind: Decision, entry: object) -> str | None:
    try:
        return rule_id(kind, Rule.parse(entry)) if isinstance(entry, str) else None
    except RuleError:
        return None


def _read_rules(path: Path, rules: list[StoredRule]) -> list[ConfigProblem]:
    """Append the good rules of ``path`` to ``rules``; the problems of the file."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        return [ConfigProblem(path, "", f"cannot be read ({error}); its rules are ignored")]
    if not isinstance(table, dict):
        message = 'must be a JSON object {"allow": [...], "ask": [...], "deny": [...]}; ignored'
        return [ConfigProblem(path, "", message)]
    problems: list[ConfigProblem] = []
    for key, entries in table.items():
        if key not in tuple(Decision):
            message = 'unknown key, ignored; the keys are "allow", "ask" and "deny"'
            problems.append(ConfigProblem(path, key, message))
        elif not isinstance(entries, list):
            problems.append(ConfigProblem(path, key, "must be a list of rule strings; ignored"))
        else:
            for index, entry in enumerate(entries):
                try:
                    if not isinstance(entry, str):
                        raise RuleError(f"must be a rule string (got {json.dumps(entry)})")
                    rule = Rule.parse(entry)
                except RuleError as error:
                    problems.append(ConfigProblem(path, f"{key}[{index}]", f"{error}; ignored"))
                else:
                    kind = Decision(key)
                    rules.append(StoredRule(rule_id(kind, rule), kind, rule, path))
    return problems
