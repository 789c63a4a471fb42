"""Permission rules for tool calls: ``Tool`` or ``Tool(specifier)`` in allow / ask / deny lists.

Deny beats ask beats allow. Bash specifiers are command globs checked against every simple command
of a shell line; file tools' are gitignore-style path globs; WebFetch's are ``domain:HOST``.
"""

from __future__ import annotations

import builtins
import enum
import functools
import hashlib
import json
import os
import posixpath
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from shammah_kernel.config import ConfigProblem, shammah_home
from shammah_kernel.errors import ConfigError, RuleError

TOOL_NAMES = ("Read", "Glob", "Grep", "Bash", "WebFetch", "Edit", "Write")
_READ_ONLY = frozenset({"Read", "Glob", "Grep"})
# As in Claude Code: a Read rule also covers the other read-only tools, an Edit rule also Write.
_COVERED = {"Read": _READ_ONLY, "Edit": frozenset({"Edit", "Write"})}
_RULE = re.compile(r"([A-Za-z]+)(?:\((.*)\))?", re.DOTALL)


class Decision(enum.StrEnum):
    """What happens to a tool call; the values are also the keys of ``permissions.json``."""

    ALLOW = "allow"
    ASK = "ask"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Rule:
    """``Tool`` (``specifier`` None: every call of the tool) or ``Tool(specifier)``."""

    tool: str
    specifier: str | None = None

    def __post_init__(self) -> None:
        if self.tool not in TOOL_NAMES:
            raise RuleError(f"unknown tool {self.tool!r}; the tools are {', '.join(TOOL_NAMES)}")
        if self.specifier is not None and self.specifier != self.specifier.strip():
            raise RuleError(f"specifier {self.specifier!r} has spaces around it")

    @classmethod
    def parse(cls, text: str) -> Rule:
        """``Bash(pytest *)`` -> ``Rule("Bash", "pytest *")``; tool names ignore case."""
        match = _RULE.fullmatch(text.strip())
        if match is None:
            raise RuleError(f"not a rule: {text!r}; write Tool or Tool(specifier)")
        tool = {name.lower(): name for name in TOOL_NAMES}.get(match[1].lower(), match[1])
        return cls(tool, None if match[2] is None else match[2].strip())

    def __str__(self) -> str:
        return self.tool if self.specifier is None else f"{self.tool}({self.specifier})"

    def matches(self, tool: str, specifier: str) -> bool:
        """Whether this rule alone covers the whole call (every command of a Bash line)."""
        if tool not in _COVERED.get(self.tool, {self.tool}):
            return False
        if self.specifier is None:
            return True
        if tool == "Bash":
            if _collapse(self.specifier) == _collapse(specifier):
                return True
            parts = _command_parts(specifier)
            return bool(parts) and all(self._matches_command(part, strict=True) for part in parts)
        return _specifier_matches(tool, self.specifier, specifier)

    def matches_any_part(self, tool: str, specifier: str) -> bool:
        """Whether this rule applies to any part of the call: the test of deny and ask rules."""
        if tool != "Bash" or self.specifier is None or self.tool != "Bash":
            return self.matches(tool, specifier)
        if _glob(_collapse(self.specifier), ".*").fullmatch(_collapse(specifier)):
            return True
        return any(self._matches_command(part, strict=False) for part in _command_parts(specifier))

    def _matches_command(self, command: str, *, strict: bool) -> bool:
        if self.specifier is None:
            return True
        regex = _command_regex(self.specifier, strict)
        return regex is not None and regex.fullmatch(command) is not None


# Output redirection to a file: a `*` of an allow rule does not cover it (`echo *` allows no `>`).
_REDIRECT = "\x00"
_SEPARATOR = re.compile(r"&&|\|\||\|&|\$\(|[<>]\(|[;&|\n()`]")
_HARMLESS_REDIRECT = re.compile(r">>?(?:&[0-9-]|[^\S\n]*/dev/null(?![^\s;&|)]))")
# Reserved words before a command (`then rm -rf x`): dropped so that rules see the command.
_KEYWORDS = frozenset(
    ["if", "then", "else", "elif", "fi", "while", "until", "do", "done", "time", "!", "{", "}"]
)


def _command_parts(command: str) -> list[str]:
    """The simple commands of a shell line, unquoted, split at operators, subshells and
    substitutions; a best effort at shell syntax that errs toward more, smaller parts."""
    parts: list[str] = []
    out: list[str] = []
    quote, i, text = "", 0, command.replace(_REDIRECT, "\ufffd")
    while i < len(text):
        char = text[i]
        separator = _SEPARATOR.match(text, i) if quote != "'" else None
        if char == quote or (not quote and char in "'\""):
            quote = "" if quote else char
        elif quote == "'":
            out.append(char)
        elif char == "\\":
            out.append(text[i + 1 : i + 2])
            i += 1
        elif separator and (not quote or separator[0] in ("$(", "`")):
            parts.append("".join(out))
            out, i = [], separator.end()
            continue
        elif char == ">" and not quote:
            harmless = _HARMLESS_REDIRECT.match(text, i)
            out.append(harmless[0] if harmless else _REDIRECT)
            i = harmless.end() if harmless else i + (2 if text.startswith(">>", i) else 1)
            continue
        else:
            out.append(char)
        i += 1
    parts.append("".join(out))
    return [simple for simple in map(_strip_keywords, parts) if simple]


def _collapse(text: str) -> str:
    return re.sub(r"[^\S\n]+", " ", text).strip()


def _strip_keywords(part: str) -> str:
    words = _collapse(part).split(" ")
    while words and words[0] in _KEYWORDS:
        del words[0]
    return " ".join(words)


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str, wildcard: str) -> re.Pattern[str]:
    """A command glob: ``*`` is ``wildcard``; a final `` *`` or ``:*`` also matches no arguments."""
    tail = ""
    if pattern.endswith((" *", ":*")):
        pattern, tail = pattern[:-2], f"(?: {wildcard})?"
    body = wildcard.join(re.escape(piece) for piece in pattern.split("*"))
    return re.compile(body + tail, re.DOTALL)


@functools.lru_cache(maxsize=1024)
def _command_regex(pattern: str, strict: bool) -> re.Pattern[str] | None:
    """``pattern`` as a regex over one simple command; None when it spans several commands."""
    parts = _command_parts(pattern)
    return _glob(parts[0], "[^\x00]*" if strict else ".*") if len(parts) == 1 else None


def _normal_path(path: str) -> str:
    stripped = os.path.expanduser(path.strip())
    return posixpath.normpath(stripped).strip() if stripped else ""


@functools.lru_cache(maxsize=1024)
def _path_regex(pattern: str) -> tuple[re.Pattern[str], bool]:
    """A gitignore-style glob as a regex, and whether it is anchored (else it names a basename
    at any depth); ``**`` spans folders, ``*`` and ``?`` stay within one name."""
    pattern = os.path.expanduser(pattern)
    anchored = pattern.startswith(("/", "./")) or "/" in pattern.rstrip("/")
    pattern = pattern.removeprefix("./") + ("**" if pattern.endswith("/") else "")
    tokens = {"**/": "(?:.*/)?", "/**": "(?:/.*)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    pieces = re.split(r"(\*\*/|/\*\*$|\*\*|\*|\?)", pattern)
    body = "".join(tokens.get(piece) or re.escape(piece) for piece in pieces)
    return re.compile(body if anchored else "(?:.*/)?" + body, re.DOTALL), anchored


def _specifier_matches(tool: str, pattern: str, specifier: str) -> bool:
    if tool == "WebFetch":
        if pattern.startswith("domain:") and specifier.startswith("domain:"):
            want = pattern.removeprefix("domain:").strip().lower().rstrip(".")
            host = specifier.removeprefix("domain:").strip().lower().rstrip(".")
            if want.startswith("*."):  # subdomains only
                return host.endswith(want[1:])
            return want == "*" or host == want or host.endswith("." + want)
        return _glob(pattern, ".*").fullmatch(specifier.strip()) is not None
    path = _normal_path(specifier)
    regex, anchored = _path_regex(pattern)
    relative_pattern = not os.path.expanduser(pattern).startswith("/")
    if anchored and relative_pattern and path.startswith("/"):
        return False  # a workspace-relative pattern never names a file outside
    return regex.fullmatch(path) is not None


# Programs whose first argument is a subcommand (`git status`), and interpreters whose first
# argument is the script (`python x.py`): suggestions keep it. `run`/`exec`/`-m` name one more.
_SUBCOMMANDS = frozenset({"git", "npm", "pnpm", "yarn", "pip", "pip3", "uv", "cargo", "go"})
_INTERPRETERS = frozenset({"python", "python3", "node", "ruby", "perl", "bash", "sh", "npx", "uvx"})
_RUNNERS = frozenset({"run", "exec", "x", "-m"})
# Programs that run any command given them: a pattern over them would allow anything.
_WRAPPERS = frozenset({"sudo", "su", "env", "xargs", "eval", "exec", "nohup", "timeout", "find"})


def suggest_rule(tool: str, specifier: str) -> Rule:
    """A rule for "approve this pattern" that always matches the call it came from.

    Bash: the program, plus its subcommand (git, npm, pip, uv, cargo...) or script (python,
    node...), plus the tool a runner runs (``uv run pytest``, ``python -m pytest``), then `` *``;
    compound lines, redirections to files and wrappers (sudo, xargs...) get the exact command.
    File tools: the file's folder (Glob/Grep: the searched folder) + ``/**``, ``./**`` for the
    workspace root. WebFetch: ``domain:HOST``. Raises RuleError for an unknown tool.
    """
    candidate = Rule(tool, _suggested_specifier(tool, specifier))
    if candidate.matches(tool, specifier):
        return candidate
    exact = _normal_path(specifier) if tool in _READ_ONLY | {"Edit", "Write"} else specifier
    return Rule(tool, exact.strip())


def _suggested_specifier(tool: str, specifier: str) -> str:
    if tool == "Bash":
        prefix = _command_prefix(specifier)
        return specifier.strip() if prefix is None else prefix + " *"
    if tool == "WebFetch":
        host = specifier.removeprefix("domain:").strip().lower().rstrip(".")
        return f"domain:{host}" if specifier.startswith("domain:") else specifier.strip()
    path = _normal_path(specifier)
    folder = path if tool in ("Glob", "Grep") else posixpath.dirname(path)
    return "./**" if folder in ("", ".") else folder.rstrip("/") + "/**"


def _command_prefix(command: str) -> str | None:
    parts = _command_parts(command)
    if len(parts) != 1 or _REDIRECT in parts[0]:
        return None
    words = parts[0].split(" ")
    program = posixpath.basename(words[0])
    if program in _WRAPPERS or (program in _INTERPRETERS and len(words) < 2):
        return None
    count = 2 if program in _SUBCOMMANDS | _INTERPRETERS else 1
    if count == 2 and len(words) > 1 and words[1].startswith("-") and words[1] != "-m":
        return None  # `python -c CODE`, `git -C DIR ...`: too varied to generalize
    while count < len(words) and words[count - 1] in _RUNNERS:
        count += 1
    return " ".join(words[:count])


@dataclass(slots=True)
class PermissionPolicy:
    """The session's rules, plus the remembered and project rules of ``store``."""

    allow: builtins.list[Rule] = field(default_factory=list)
    ask: builtins.list[Rule] = field(default_factory=list)
    deny: builtins.list[Rule] = field(default_factory=list)
    store: RuleStore | None = None

    def add(self, kind: Decision, rule: Rule) -> None:
        """Add a rule for this session only."""
        getattr(self, kind.value).append(rule)

    def decide(
        self, tool: str, specifier: str, *, inside_workspace: bool
    ) -> tuple[Decision, Rule | None]:
        """Deny > ask > allow; with no rule matching, Read/Glob/Grep inside the workspace are
        allowed and everything else asks (the rule returned is then None)."""
        stored = self.store.list() if self.store is not None else []
        rules = {
            kind: [*getattr(self, kind.value), *(s.rule for s in stored if s.kind is kind)]
            for kind in Decision
        }
        for kind in (Decision.DENY, Decision.ASK):
            for rule in rules[kind]:
                if rule.matches_any_part(tool, specifier):
                    return kind, rule
        allowing = _allowing_rule(rules[Decision.ALLOW], tool, specifier)
        if allowing is not None:
            return Decision.ALLOW, allowing
        if inside_workspace and tool in _READ_ONLY:
            return Decision.ALLOW, None
        return Decision.ASK, None


def _allowing_rule(rules: list[Rule], tool: str, specifier: str) -> Rule | None:
    """A rule that allows the call; a Bash line whose commands are each allowed by some rule
    is allowed (the first command's rule is returned)."""
    for rule in rules:
        if rule.matches(tool, specifier):
            return rule
    if tool != "Bash":
        return None
    bash_rules = [rule for rule in rules if rule.tool == "Bash"]
    found = [
        next((rule for rule in bash_rules if rule._matches_command(part, strict=True)), None)
        for part in _command_parts(specifier)
    ]
    return found[0] if found and None not in found else None


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
