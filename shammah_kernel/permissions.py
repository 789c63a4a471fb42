"""Permission rules for tool calls: ``Tool`` or ``Tool(specifier)`` in allow / ask / deny lists.

Deny beats ask beats allow. Bash specifiers are command globs checked against every simple command
of a shell line; file tools' are gitignore-style path globs; WebFetch's are ``domain:HOST``.
"""

from __future__ import annotations

import builtins
import enum
import functools
import os
import posixpath
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shammah_kernel.errors import RuleError

if TYPE_CHECKING:
    from shammah_kernel.rule_store import RuleStore

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
        if self.specifier is not None:  # outer spaces never count: `Bash(ls )` is `Bash(ls)`
            object.__setattr__(self, "specifier", self.specifier.strip())

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


# Output redirection to a file or a here-document; a `*` of an allow rule covers neither it nor
# a (quoted) newline, so `Bash(echo *)` allows no `echo x > ~/.bashrc`.
_REDIRECT = "\x00"
_STRICT_WILDCARD = "[^\x00\n]*"
_TOKEN = re.compile(r"&&|\|\||\|&|\$\(|\$\{|[<>]\(|<<<|<<|[;&|\n()`}'\"\\#>]")
_IN_DOUBLE_QUOTES = frozenset({'"', "\\", "$(", "${", "`"})  # what stays special there
_NESTING = {"$(": ")", "(": ")", "<(": ")", ">(": ")", "`": "`", "${": "}"}
_HARMLESS_REDIRECT = re.compile(r">>?(?:&[0-9-]|[^\S\n]*/dev/null(?![^\s;&|)]))")
# Reserved words before a command (`then rm -rf x`): dropped so that rules see the command.
_KEYWORDS = frozenset(
    ["if", "then", "else", "elif", "fi", "while", "until", "do", "done", "time", "!", "{", "}"]
)


@functools.lru_cache(maxsize=1024)
def _command_parts(command: str) -> tuple[str, ...]:
    """The simple commands of a shell line, unquoted, split at operators, subshells and
    substitutions; a best effort at shell syntax that errs toward more, smaller parts."""
    parts: list[str] = []
    out: list[str] = []
    nesting: list[tuple[str, str]] = []  # (closing token, the quote to return to)
    quote, i, text, word_start = "", 0, command.replace(_REDIRECT, "\ufffd"), True
    while i < len(text):
        char, at_word_start, word_start = text[i], word_start, False
        match = _TOKEN.match(text, i) if quote != "'" else None
        token = match[0] if match and (not quote or match[0] in _IN_DOUBLE_QUOTES) else char
        split = False
        if quote == "'" and char != "'":
            out.append(char)
        elif token == "\\":
            out.append(text[i + 1 : i + 2])
            i += 1
        elif token == quote or (not quote and token in ("'", '"')):
            quote = "" if quote else token
        elif not quote and nesting and token == nesting[-1][0]:
            quote, split = nesting.pop()[1], token != "}"
            out.append("}" if token == "}" else "")
        elif token in _NESTING and (not quote or token in _IN_DOUBLE_QUOTES):
            nesting.append((_NESTING[token], quote))
            quote, split = "", token != "${"
            out.append("${" if token == "${" else "")
        elif quote or token in ("<<<", "}"):
            out.append(token)
        elif token in ("&&", "||", "|&", ";", "&", "|", "\n", ")"):
            split = True
        elif token == "#" and at_word_start:  # a comment runs to the end of the line
            end = text.find("\n", i)
            token = text[i:] if end < 0 else text[i:end]
        elif token in ("<<", ">"):
            harmless = _HARMLESS_REDIRECT.match(text, i)
            token = harmless[0] if harmless else ">>" if text.startswith(">>", i) else token
            out.append(token if harmless else _REDIRECT)
            word_start = True
        else:
            out.append(char)
            word_start = char in " \t"
        if split:
            parts.append("".join(out))
            out, word_start = [], True
        i += len(token)
    parts.append("".join(out))
    return tuple(simple for simple in map(_strip_keywords, parts) if simple)


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
    return _glob(parts[0], _STRICT_WILDCARD if strict else ".*") if len(parts) == 1 else None


def _expand_home(path: str) -> str:
    try:
        return os.path.expanduser(path)
    except ValueError:  # `~user` with a NUL byte in the name
        return path


def _normal_path(path: str) -> str:
    stripped = _expand_home(path.strip())
    return posixpath.normpath(stripped).strip() if stripped else ""


@functools.lru_cache(maxsize=1024)
def _path_regex(pattern: str) -> tuple[re.Pattern[str], bool]:
    """A gitignore-style glob as a regex, and whether it is anchored (else it names a basename
    at any depth); ``**`` spans folders, ``*`` and ``?`` stay within one name."""
    pattern = _expand_home(pattern)
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
        glob = ".*".join(map(re.escape, pattern.split("*")))  # a URL pattern, say
        return re.fullmatch(glob, specifier.strip(), re.DOTALL) is not None
    path = _normal_path(specifier)
    regex, anchored = _path_regex(pattern)
    relative_pattern = not _expand_home(pattern).startswith("/")
    if anchored and relative_pattern and path.startswith("/"):
        return False  # a workspace-relative pattern never names a file outside
    return regex.fullmatch(path) is not None


# Programs whose first argument is a subcommand (`git status`), and interpreters whose first
# argument is the script (`python x.py`): suggestions keep it. `run`/`exec`/`-m` name one more.
_SUBCOMMANDS = frozenset({"git", "npm", "pnpm", "yarn", "pip", "uv", "cargo", "go", "docker"})
_INTERPRETERS = frozenset({"python", "node", "ruby", "perl", "bash", "sh", "zsh", "npx", "uvx"})
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
    program = re.sub(r"[\d.]+$", "", posixpath.basename(words[0]))  # python3.11 -> python
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
