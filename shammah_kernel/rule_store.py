"""Remembered permission rules: ``permissions.json`` in the Shammah home, and a project's own.

Both hold ``{"allow": [...], "ask": [...], "deny": [...]}`` of rule strings, fine to edit by hand;
what is wrong in them is reported, never raised. A project's file comes with the repository, so
its allow rules count only once the user trusts that very content (``/patterns trust``); its deny
and ask rules apply at once. A malformed deny or ask entry voids its file's allow rules.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shammah_kernel.config import ConfigProblem, shammah_home
from shammah_kernel.errors import ConfigError, RuleError
from shammah_kernel.permissions import Decision, Rule
from shammah_kernel.rule_files import (
    RuleFile,
    StoredRule,
    TrustRecord,
    folder_lock,
    legacy_exact,
    read_rule_file,
    rule_id,
    write_json,
)
from shammah_kernel.settings_file import UnreadableFile, decode_settings, read_settings_file

__all__ = ["ProjectRules", "RuleFile", "RuleStore", "StoredRule", "rule_id"]

Table = dict[str, builtins.list[object]]


@dataclass(frozen=True, slots=True)
class ProjectRules:
    """The workspace's rule file: its allow rules count only while ``trusted``."""

    file: RuleFile
    trusted: bool


class RuleStore:
    """``permissions.json`` in the Shammah home (read and written) and, given a workspace, its
    ``.shammah/permissions.json`` (read only, its allow rules only once trusted)."""

    def __init__(
        self, path: Path | None = None, *, workspace: Path | None = None, trust: Path | None = None
    ) -> None:
        self.path = shammah_home() / "permissions.json" if path is None else path
        self.project_path = None if workspace is None else workspace / ".shammah/permissions.json"
        trust = shammah_home() / "trusted-rules.json" if trust is None else trust
        self.trust_record = TrustRecord(trust)
        self._lock = threading.Lock()  # the turn, kernel and comm threads all read rules
        self._converted = False  # the user's file is in the current rule format
        self._migration_notice = ""
        self._shown: dict[Path, str] = {}  # the content whose problems were shown, per file
        self._trust_shown = ""  # the untrusted project content already told about
        # Trusting takes a code only this session shows, so no notebook shipped with the
        # project can trust its own rule file by containing a `/patterns trust` cell.
        self._trust_secret = secrets.token_bytes(16)

    # --- reading

    def files(self) -> tuple[RuleFile, ProjectRules | None]:
        """The user's file (brought to the current format on first read) and the project's."""
        self._convert_once()
        user = read_rule_file(self.path, legacy=not self._converted)
        if self.project_path is None:
            return user, None
        project = read_rule_file(self.project_path)
        trusted = bool(project.allows) and self.trust_record.trusts(
            self._project_key(), project.digest
        )
        return user, ProjectRules(project, trusted)

    def read(self) -> tuple[builtins.list[StoredRule], builtins.list[ConfigProblem]]:
        """The rules in force from both files (the user's first) and the problems met."""
        user, project = self.files()
        rules, problems = list(user.rules), list(user.problems)
        if project is not None:
            kept = project.file.rules if project.trusted else _without_allows(project.file.rules)
            rules += kept
            problems += project.file.problems
        return rules, problems

    def list(self) -> builtins.list[StoredRule]:
        """The rules in force: what ``PermissionPolicy`` reads on every call."""
        return self.read()[0]

    def problems(self) -> builtins.list[ConfigProblem]:
        """Every problem now; they count as shown (``new_problems`` repeats them on change)."""
        return [p for _, _, found in self._problem_sources(only_new=False) for p in found]

    def new_problems(self) -> builtins.list[ConfigProblem]:
        """The problems of each rule file whose content changed since its problems were last
        shown (all of them on the first call): the kernel shows these before a cell."""
        return [p for _, _, found in self._problem_sources(only_new=True) for p in found]

    def _problem_sources(
        self, *, only_new: bool
    ) -> builtins.list[tuple[Path, str, builtins.list[ConfigProblem]]]:
        user, project = self.files()
        sources = [(user.path, user.digest, list(user.problems))]
        if project is not None:
            sources.append((project.file.path, project.file.digest, list(project.file.problems)))
        sources.append((self.trust_record.path, *self.trust_record.state()))
        with self._lock:
            if only_new:
                sources = [s for s in sources if self._shown.get(s[0]) != s[1]]
            self._shown.update((path, digest) for path, digest, _ in sources)
        return sources

    def notices(self) -> builtins.list[str]:
        """What the user should hear once: a migration this kernel made, and an untrusted
        project file with allow rules (again whenever its content changes)."""
        _, project = self.files()
        found: list[str] = []
        with self._lock:
            if self._migration_notice:
                found.append(self._migration_notice)
                self._migration_notice = ""
            notice = trust_notice(project)
            if notice and project is not None and self._trust_shown != project.file.digest:
                self._trust_shown = project.file.digest
                found.append(notice)
        return found

    # --- trust

    def project(self) -> ProjectRules | None:
        """The project's rule file as it is now; None without a workspace or a file."""
        project = self.files()[1]
        return project if project is not None and project.file.digest else None

    def trust_code(self, digest: str) -> str:
        """The code that trusts this content in this session: shown by `/patterns trust`."""
        return hmac.new(self._trust_secret, digest.encode(), hashlib.sha256).hexdigest()[:8]

    def trust(self, code: str | None = None) -> ProjectRules:
        """Trust the project's file as it is now, given its `trust_code`; without a code (or a
        wrong one) nothing is trusted and the file is returned for the user to review. Raises
        ConfigError when there is nothing (fit) to trust. The allow rules returned are those of
        the very content trusted."""
        if self.project_path is None:
            raise ConfigError("there is no workspace, so no project rule file")
        file = read_rule_file(self.project_path)
        if not file.digest:
            raise ConfigError(f"there is no project rule file {self.project_path}")
        if file.problems:
            raise ConfigError(f"{self.project_path} has problems; fix them first (/patterns list)")
        if code is None or not hmac.compare_digest(code, self.trust_code(file.digest)):
            if code is not None:
                raise ConfigError(
                    "that code does not trust the file as it is now (it changed, or the code is "
                    "from another session): run /patterns trust again and review its rules"
                )
            return ProjectRules(file, trusted=False)
        self.trust_record.trust(self._project_key(), file.digest)
        with self._lock:
            self._trust_shown = ""
        return ProjectRules(file, trusted=bool(file.allows))

    def forget_trust(self) -> bool:
        """Stop trusting the project's file; False when it was not trusted."""
        return self.project_path is not None and self.trust_record.forget(self._project_key())

    def _project_key(self) -> str:
        # The workspace resolved, the file under it not: a `.shammah` linked to a trusted
        # project elsewhere is not trusted here.
        assert self.project_path is not None
        workspace = os.path.realpath(self.project_path.parent.parent)
        return os.path.join(workspace, ".shammah", "permissions.json")

    # --- editing the user's file

    def add(self, kind: Decision, rule: Rule) -> StoredRule:
        """Remember ``rule`` in the user's file (once); raises ConfigError if it can't be edited."""
        stored = StoredRule(rule_id(kind, rule), kind, rule, self.path)

        def change(table: Table) -> bool:
            entries = table.setdefault(kind.value, [])
            if any(_entry_id(kind, entry) == stored.id for entry in entries):
                return False
            entries.append(str(rule))
            return True

        self._update(change, always=True)
        return stored

    def remove(self, id: str) -> bool:
        """Forget the user's rule(s) with this id; False when none (project rules stay)."""
        removed = False

        def change(table: Table) -> bool:
            nonlocal removed
            for kind in Decision:
                entries = table.get(kind.value, [])
                kept = [entry for entry in entries if _entry_id(kind, entry) != id]
                removed = removed or len(kept) < len(entries)
                table[kind.value] = kept
            return removed

        self._update(change)
        return removed

    def clear(self) -> None:
        """Forget every rule of the user's file, readable or not."""
        with folder_lock(self.path.parent, create=True):
            self._write({})
        self._mark_converted()

    def _update(self, change: Callable[[Table], bool], *, always: bool = False) -> None:
        """Read, change and write the user's file under the folder lock: kernels adding rules
        at once lose none."""
        self._convert_once()
        with folder_lock(self.path.parent, create=True):
            table = self._editable()
            if not self._converted:
                _migrate(table)
            if change(table) or always:
                self._write(table)
        self._mark_converted()

    def _editable(self) -> Table:
        try:
            table = json.loads(decode_settings(read_settings_file(self.path)))
        except FileNotFoundError:
            return {}
        except UnreadableFile as error:
            raise ConfigError(f"{self.path} {error}; fix or clear it") from None
        except (ValueError, RecursionError) as error:
            raise ConfigError(f"{self.path} cannot be read ({error}); fix or clear it") from None
        if not isinstance(table, dict) or not all(
            isinstance(table.get(kind.value, []), builtins.list) for kind in Decision
        ):
            raise ConfigError(f"{self.path} is not a table of rule lists; fix or clear it")
        return table

    def _write(self, table: Table) -> None:
        table = {kind.value: table.get(kind.value, []) for kind in Decision} | table
        write_json(self.path, table)

    # --- the one-time move to exact rules

    def _convert_once(self) -> None:
        """Rewrite old exact approvals of the user's file (``Bash(rm -rf build/*)``, whose star
        was a wildcard) to exact rules, once per file; until then they are read as exact."""
        if self._converted or not self.path.exists():
            return
        if self.trust_record.converted(self.path):
            self._converted = True
            return
        try:
            with folder_lock(self.path.parent):
                table = self._editable()
                changes = _migrate(table)
                if changes:
                    self._write(table)
        except (ConfigError, OSError):
            return  # a broken file: its problems are reported when it is read
        self._mark_converted()
        self._converted = True  # rewritten (or nothing to do): reading it as it is stays safe
        if changes:
            with self._lock:
                self._migration_notice = migration_notice(self.path, changes)

    def _mark_converted(self) -> None:
        try:
            self.trust_record.mark_converted(self.path)
        except ConfigError:
            return  # a read-only home: the old rules stay read as exact
        self._converted = True


def _without_allows(rules: tuple[StoredRule, ...]) -> tuple[StoredRule, ...]:
    return tuple(rule for rule in rules if rule.kind is not Decision.ALLOW)


def _entry_id(kind: Decision, entry: object) -> str | None:
    try:
        return rule_id(kind, Rule.parse(entry)) if isinstance(entry, str) else None
    except RuleError:
        return None


def _migrate(table: Table) -> builtins.list[tuple[str, str]]:
    """Turn the old exact approvals among the allow entries into exact rules, in place; the
    (old, new) texts."""
    changes: list[tuple[str, str]] = []
    entries = table.get(Decision.ALLOW.value)
    if not isinstance(entries, builtins.list):
        return changes
    for index, entry in enumerate(entries):
        if isinstance(entry, str) and (exact := legacy_exact(entry)) is not None:
            entries[index] = str(exact)
            changes.append((entry, str(exact)))
    return changes


def trust_notice(project: ProjectRules | None) -> str:
    """The line for an untrusted project file with allow rules, else ""."""
    if project is None or project.trusted or not project.file.allows:
        return ""
    allows = [str(rule.rule) for rule in project.file.allows]
    named = ", ".join(allows[:5]) + (f" and {len(allows) - 5} more" if len(allows) > 5 else "")
    return (
        f"{project.file.path} is not trusted: its {len(allows)} allow rule(s) ({named}) are "
        "ignored, as a repository's rule file grants nothing by itself; its deny and ask rules "
        "apply. Read the file, then run /patterns trust to use them as they are now."
    )


def migration_notice(path: Path, changes: builtins.list[tuple[str, str]]) -> str:
    old, new = changes[0]
    more = f" and {len(changes) - 1} more" if len(changes) > 1 else ""
    return (
        f"Made {len(changes)} approved command(s) in {path} exact: a * inside them was a "
        f"wildcard and is now a literal star ({old} is now {new}{more}). Use /patterns add "
        "to write a pattern on purpose."
    )
