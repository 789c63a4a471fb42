"""The file side of the rule store: reading one rule file (fail closed), atomic JSON writes, a
lock between kernels, the trust record (``trusted-rules.json``) and old exact approvals."""

from __future__ import annotations

import builtins
import difflib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from shammah_kernel.config import ConfigProblem
from shammah_kernel.errors import ConfigError, RuleError
from shammah_kernel.permissions import Decision, Rule
from shammah_kernel.settings_file import UnreadableFile, decode_settings, read_settings_file


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A remembered rule; ``id`` is stable (a hash of kind and rule) for ``/patterns remove``."""

    id: str
    kind: Decision
    rule: Rule
    source: Path  # the file it is written in


@dataclass(frozen=True, slots=True)
class RuleFile:
    """One rule file as read: its good rules (allow rules left out when a deny or ask entry is
    malformed), its problems, and the SHA-256 of the bytes read ("" when there is no file)."""

    path: Path
    digest: str
    rules: tuple[StoredRule, ...] = ()
    problems: tuple[ConfigProblem, ...] = ()

    @property
    def allows(self) -> tuple[StoredRule, ...]:
        return tuple(rule for rule in self.rules if rule.kind is Decision.ALLOW)


def rule_id(kind: Decision, rule: Rule) -> str:
    """Six hex digits of the SHA-256 of ``"allow Bash(pytest *)"``: the same in every listing."""
    return hashlib.sha256(f"{kind.value} {rule}".encode("utf-8", "surrogatepass")).hexdigest()[:6]


_ESCAPE = re.compile(r"\\[\\*?]")


def legacy_exact(entry: str) -> Rule | None:
    """The exact rule an allow entry of the old format meant, when it is an old exact approval.

    Suggested patterns only end in `` *`` or ``:*``; a Bash rule with a ``*`` anywhere else was
    an "Always (this exact call)" approval whose star the old matcher read as a wildcard
    (``Bash(rm -rf build/*)`` allowed ``rm -rf build/ ~``). A rule with escapes is already in
    the current format, so this is idempotent."""
    try:
        rule = Rule.parse(entry)
    except RuleError:
        return None
    specifier = rule.specifier
    if rule.tool != "Bash" or specifier is None or _ESCAPE.search(specifier):
        return None
    body = specifier[:-2] if specifier.endswith((" *", ":*")) else specifier
    return Rule.exact("Bash", specifier) if "*" in body else None


def read_rule_file(path: Path, *, legacy: bool = False) -> RuleFile:
    """The rules and problems of one file, read once (a regular file of at most 1 MiB).
    ``legacy``: read old exact approvals as exact, as the migration would write them."""
    try:
        data = read_settings_file(path)
    except FileNotFoundError:
        return RuleFile(path, "")
    except UnreadableFile as error:
        return RuleFile(path, f"error {error}", problems=(_ignored(path, str(error)),))
    digest = hashlib.sha256(data).hexdigest()
    try:
        table = json.loads(decode_settings(data))
    except (UnreadableFile, ValueError, RecursionError) as error:
        reason = str(error) if isinstance(error, UnreadableFile) else f"cannot be read ({error})"
        return RuleFile(path, digest, problems=(_ignored(path, reason),))
    if not isinstance(table, dict):
        message = 'must be a JSON object {"allow": [...], "ask": [...], "deny": [...]}'
        return RuleFile(path, digest, problems=(_ignored(path, message),))
    rules, problems, voiding = _parse_table(path, table, legacy=legacy)
    if voiding:
        rules = [rule for rule in rules if rule.kind is not Decision.ALLOW]
    return RuleFile(path, digest, tuple(rules), tuple(problems))


def _ignored(path: Path, reason: str) -> ConfigProblem:
    return ConfigProblem(path, "", f"{reason}; its rules are ignored")


_VOIDS = "; ignored, and so are this file's allow rules until it is fixed (fail closed)"
_LOOKS_LIKE = "; it looks like a misspelled deny or ask, so this file's allow rules are ignored"


def _parse_table(
    path: Path, table: dict[str, object], *, legacy: bool
) -> tuple[builtins.list[StoredRule], builtins.list[ConfigProblem], bool]:
    """The good rules, the problems, and whether a deny or ask entry was malformed (or a key
    that looks like a misspelled one)."""
    rules: list[StoredRule] = []
    problems: list[ConfigProblem] = []
    voiding = False
    for key, entries in table.items():
        if key not in tuple(Decision):
            close = difflib.get_close_matches(key.lower(), list(Decision), n=1, cutoff=0.6)
            voids = bool(close) and close[0] != Decision.ALLOW
            voiding = voiding or voids
            message = 'unknown key, ignored; the keys are "allow", "ask" and "deny"'
            problems.append(ConfigProblem(path, key, message + (_LOOKS_LIKE if voids else "")))
            continue
        kind = Decision(key)
        tail = "; ignored" if kind is Decision.ALLOW else _VOIDS
        if not isinstance(entries, builtins.list):
            problems.append(ConfigProblem(path, key, f"must be a list of rule strings{tail}"))
            voiding = voiding or kind is not Decision.ALLOW
            continue
        for index, entry in enumerate(entries):
            try:
                if not isinstance(entry, str):
                    raise RuleError(f"must be a rule string (got {_shown(entry)})")
                rule = Rule.parse(entry)
                if legacy and kind is Decision.ALLOW:
                    rule = legacy_exact(entry) or rule
            except RuleError as error:
                problems.append(ConfigProblem(path, f"{key}[{index}]", f"{error}{tail}"))
                voiding = voiding or kind is not Decision.ALLOW
            else:
                rules.append(StoredRule(rule_id(kind, rule), kind, rule, path))
    return rules, problems, voiding


def _shown(entry: object) -> str:
    text = json.dumps(entry)
    return text if len(text) <= 60 else text[:57] + "..."


@contextmanager
def folder_lock(folder: Path, *, create: bool = False) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder`` itself: kernels editing a file in it take turns
    (threads too: each call opens its own descriptor), and no lock file is left beside it."""
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise ConfigError(f"cannot edit the rules in {folder}: {error.strerror}") from error
    try:
        with suppress(OSError):  # a file system without locks (some network mounts)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def write_json(path: Path, value: object) -> None:
    """Write ``value`` atomically: a temporary file in the same folder replaces the old one."""
    try:
        data = json.dumps(value, indent=2, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # lone surrogates: keep them as JSON escapes
        data = json.dumps(value, indent=2).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data + b"\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as error:
        raise ConfigError(f"cannot write {path}: {error.strerror}") from error


@dataclass(frozen=True, slots=True)
class _Record:
    trusted: dict[str, str] = field(default_factory=dict)  # project file -> SHA-256 trusted
    converted: builtins.list[str] = field(default_factory=list)  # user files in today's format
    digest: str = ""  # of the record file's bytes ("" when absent)
    problem: ConfigProblem | None = None


class TrustRecord:
    """``trusted-rules.json`` in the Shammah home: the SHA-256 of each project rule file's
    content the user trusted (keyed by its path), and the user rule files already migrated.
    Written only by the user's commands and this store, never by a rule file's owner."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def trusts(self, key: str, digest: str) -> bool:
        return bool(digest) and self._load().trusted.get(key) == digest

    def converted(self, rules: Path) -> bool:
        return os.path.realpath(rules) in self._load().converted

    def state(self) -> tuple[str, builtins.list[ConfigProblem]]:
        """The record's content hash and its problem, if any (it then trusts nothing)."""
        record = self._load()
        return record.digest, [] if record.problem is None else [record.problem]

    def trust(self, key: str, digest: str) -> None:
        self._update(lambda record: record.trusted.__setitem__(key, digest))

    def forget(self, key: str) -> bool:
        if key not in self._load().trusted:
            return False
        self._update(lambda record: record.trusted.pop(key, None))
        return True

    def mark_converted(self, rules: Path) -> None:
        real = os.path.realpath(rules)
        if real not in self._load().converted:
            self._update(lambda record: record.converted.append(real))

    def _update(self, change: Callable[[_Record], object]) -> None:
        with folder_lock(self.path.parent, create=True):
            record = self._load()  # a broken record is replaced: it held nothing by hand
            change(record)
            write_json(self.path, {"trusted": record.trusted, "converted": record.converted})

    def _load(self) -> _Record:
        try:
            data = read_settings_file(self.path)
        except FileNotFoundError:
            return _Record()
        except UnreadableFile as error:
            return _Record(digest=f"error {error}", problem=self._problem(str(error)))
        digest = hashlib.sha256(data).hexdigest()
        try:
            table = json.loads(decode_settings(data))
        except (UnreadableFile, ValueError, RecursionError) as error:
            return _Record(digest=digest, problem=self._problem(f"cannot be read ({error})"))
        trusted = table.get("trusted") if isinstance(table, dict) else None
        converted = table.get("converted") if isinstance(table, dict) else None
        if not (
            isinstance(trusted, dict)
            and all(isinstance(v, str) for v in trusted.values())
            and isinstance(converted, builtins.list)
            and all(isinstance(v, str) for v in converted)
        ):
            message = 'must be {"trusted": {path: sha256}, "converted": [path]}'
            return _Record(digest=digest, problem=self._problem(message))
        return _Record(dict(trusted), list(converted), digest)

    def _problem(self, reason: str) -> ConfigProblem:
        message = f"{reason}; no project rule file is trusted until /patterns trust"
        return ConfigProblem(self.path, "", message)
