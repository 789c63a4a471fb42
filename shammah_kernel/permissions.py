"""Permission rules for tool calls: ``Tool`` or ``Tool(specifier)`` in allow / ask / deny lists.

Deny beats ask beats allow. Bash specifiers are command patterns checked against every simple
command of a shell line (see ``shell_grammar``); file tools' are gitignore-style path globs;
WebFetch's are ``domain:HOST`` or URL patterns. In every specifier ``*`` is a wildcard, ``\\*`` a
literal star, ``\\?`` a literal question mark and ``\\\\`` a backslash: ``Rule.exact`` writes
those escapes. All matching runs on re2, in time linear in the text.
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
from urllib.parse import urlsplit

import re2

from shammah_kernel.errors import RuleError
from shammah_kernel.shell_grammar import (
    CODE_RUNNERS,
    WILDCARD,
    bash_allows,
    bash_touches,
    parse_line,
    unescape,
    word_set,
)

if TYPE_CHECKING:
    from shammah_kernel.rule_store import RuleStore

TOOL_NAMES = ("Read", "Glob", "Grep", "Bash", "WebFetch", "Edit", "Write")
_READ_ONLY = frozenset({"Read", "Glob", "Grep"})
_FILE_TOOLS = _READ_ONLY | {"Edit", "Write"}
# As in Claude Code: a Read rule also covers the other read-only tools, an Edit rule also Write.
_COVERED = {"Read": _READ_ONLY, "Edit": frozenset({"Edit", "Write"})}
_SAFE_WORD = re.compile(r"[A-Za-z0-9_./:@%+,=-]+")  # reads back as itself in a rule
_RULE = re.compile(r"([A-Za-z]+)(?:\((.*)\))?", re.DOTALL)
_SPECIALS = re.compile(r"([\\*?])")
_BLANKS = " \t\n"  # what bash itself skips; a no-break space is part of a word to it


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
            object.__setattr__(self, "specifier", self.specifier.strip(_BLANKS))

    @classmethod
    def parse(cls, text: str) -> Rule:
        """``Bash(pytest *)`` -> ``Rule("Bash", "pytest *")``; tool names ignore case."""
        match = _RULE.fullmatch(text.strip())
        if match is None:
            raise RuleError(f"not a rule: {text!r}; write Tool or Tool(specifier)")
        tool = {name.lower(): name for name in TOOL_NAMES}.get(match[1].lower(), match[1])
        return cls(tool, None if match[2] is None else match[2].strip(_BLANKS))

    @classmethod
    def exact(cls, tool: str, specifier: str) -> Rule:
        """A rule that matches only this very call: ``\\``, ``*`` and ``?`` are escaped, so
        ``Rule.exact("Bash", "rm -rf build/*")`` is ``Bash(rm -rf build/\\*)``."""
        return cls(tool, _SPECIALS.sub(r"\\\1", specifier.strip(_BLANKS)))

    def __str__(self) -> str:
        return self.tool if self.specifier is None else f"{self.tool}({self.specifier})"

    def matches(self, tool: str, specifier: str) -> bool:
        """Whether this rule alone allows the whole call (every command of a Bash line)."""
        if tool not in _COVERED.get(self.tool, {self.tool}):
            return False
        if self.specifier is None:
            return True
        if _exactly(self.specifier, tool, specifier):
            return True
        if tool == "Bash":
            return bash_allows([self.specifier], specifier) is not None
        return _specifier_matches(tool, self.specifier, specifier, broad=False)

    def matches_any_part(self, tool: str, specifier: str) -> bool:
        """Whether this rule applies to any part of the call: the test of deny and ask rules.
        Wider than ``matches``: any simple command of a Bash line, its program word normalised
        (``/bin/rm``, ``env rm``, ``'r'm``); a bare file name at any depth, even outside."""
        if tool not in _COVERED.get(self.tool, {self.tool}):
            return False
        if self.specifier is None or _exactly(self.specifier, tool, specifier):
            return True
        if tool == "Bash":
            return bash_touches(self.specifier, specifier)
        return _specifier_matches(tool, self.specifier, specifier, broad=True)


def _exactly(pattern: str, tool: str, specifier: str) -> bool:
    """A pattern without a wildcard matches the very text it names (a file tool's: normalised)."""
    if WILDCARD.search(pattern):
        return False
    if tool in _FILE_TOOLS:
        return _normal_path(unescape(pattern)) == _normal_path(specifier)
    return unescape(pattern) == specifier.strip(_BLANKS)


# --- file paths


def _expand_home(path: str) -> str:
    try:
        return os.path.expanduser(path)
    except ValueError:  # `~user` with a NUL byte in the name
        return path


def _normal_path(path: str) -> str:
    stripped = _expand_home(path.strip())
    return posixpath.normpath(stripped).strip() if stripped else ""


_PATH_TOKENS = re.compile(r"\\[\\*?]|\*\*/|/\*\*$|\*\*|\*|\?")
_PATH_REGEX = {"**/": "(?:.*/)?", "/**": "(?:/.*)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}


@functools.lru_cache(maxsize=1024)
def _path_regex(pattern: str) -> tuple[re2._Regexp, bool]:
    """A gitignore-style glob as a regex, and whether it is anchored (else it names a basename
    at any depth); ``**`` spans folders, ``*`` and ``?`` stay within one name."""
    pattern = _expand_home(pattern)
    anchored = pattern.startswith(("/", "./")) or "/" in pattern.rstrip("/")
    pattern = pattern.removeprefix("./") + ("**" if pattern.endswith("/") else "")
    pieces: list[str] = []
    at = 0
    for token in _PATH_TOKENS.finditer(pattern):
        pieces.append(re2.escape(pattern[at : token.start()]))
        text = token[0]
        pieces.append(re2.escape(text[1]) if text.startswith("\\") else _PATH_REGEX[text])
        at = token.end()
    pieces.append(re2.escape(pattern[at:]))
    body = "".join(pieces)
    return _compile(body if anchored else "(?:.*/)?" + body), anchored


@functools.lru_cache(maxsize=4096)
def _compile(regex: str) -> re2._Regexp:
    options = re2.Options()
    options.dot_nl = True
    return re2.compile(regex, options)


def _specifier_matches(tool: str, pattern: str, specifier: str, *, broad: bool) -> bool:
    if tool == "WebFetch":
        return _web_matches(pattern, specifier, broad=broad)
    path = _normal_path(specifier)
    regex, anchored = _path_regex(pattern)
    outside = path.startswith("/") and not _expand_home(pattern).startswith("/")
    if outside and (anchored or not broad):
        # Outside the workspace (absolute): a workspace pattern never allows it; a bare name
        # (`*.py`, `.env`) still counts for deny and ask there, as the wider reading is safer.
        return False
    return regex.fullmatch(path) is not None


# --- WebFetch: `domain:HOST` and URL patterns, `*` within one DNS label

_LABEL_WILDCARD = "[^./@:]*"
_URL_SHAPE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)", re.DOTALL)


def _glob_regex(pattern: str, wildcard: str) -> str:
    """``pattern`` as a regex: ``*`` is ``wildcard``, ``\\x`` the literal ``x``."""
    pieces: list[str] = []
    at = 0
    for token in re.finditer(r"\\[\\*?]|\*", pattern):
        pieces.append(re2.escape(pattern[at : token.start()]))
        pieces.append(wildcard if token[0] == "*" else re2.escape(token[0][1]))
        at = token.end()
    pieces.append(re2.escape(pattern[at:]))
    return "".join(pieces)


def _host_matches(pattern: str, host: str) -> bool:
    want, host = pattern.strip().lower().rstrip("."), host.strip().lower().rstrip(".")
    if want == "*":
        return True
    if "*" not in want.replace("\\*", ""):  # a plain domain covers its subdomains
        want = unescape(want)
        return host == want or host.endswith("." + want)
    return _compile(_glob_regex(want, _LABEL_WILDCARD)).fullmatch(host) is not None


def _web_matches(pattern: str, specifier: str, *, broad: bool) -> bool:
    if pattern.startswith("domain:") or specifier.startswith("domain:"):
        if not (pattern.startswith("domain:") and specifier.startswith("domain:")):
            return False
        return _host_matches(pattern.removeprefix("domain:"), specifier.removeprefix("domain:"))
    if broad and _compile(_glob_regex(pattern.strip(), ".*")).fullmatch(specifier.strip()):
        return True
    shape = _URL_SHAPE.fullmatch(pattern.strip())
    try:
        url = urlsplit(specifier.strip())
    except ValueError:
        return False
    if shape is None or "@" in url.netloc or shape[1].lower() != url.scheme.lower():
        return False
    prefix = f"{url.scheme}://{url.netloc}"
    if not specifier.strip().lower().startswith(prefix.lower()):
        return False
    rest = specifier.strip()[len(prefix) :]
    netloc = _compile(_glob_regex(shape[2].lower(), _LABEL_WILDCARD))
    return (
        netloc.fullmatch(url.netloc.lower()) is not None
        and _compile(_glob_regex(shape[3], ".*")).fullmatch(rest) is not None
    )


# --- suggestions

# Programs whose first argument is a subcommand (`git status`): suggestions keep it. For git
# only subcommands that run no configured or given command: aliases (`git x`), `-c`, `config`,
# `submodule foreach`, `rebase --exec`, `clone/fetch --upload-pack` get the exact call.
_SUBCOMMANDS = frozenset({"git", "npm", "pnpm", "yarn", "pip", "uv", "cargo", "go", "docker"})
_GIT_SUBCOMMANDS = word_set(
    "status log diff show add commit branch checkout switch restore stash tag blame shortlog "
    "describe rev-parse ls-files merge reset rm mv init reflog cherry-pick revert"
)
# `npm exec`, `pnpm dlx`: fetch a package and run it; `run`: a project script, named too.
_RUNNING_SUBCOMMANDS = frozenset({"exec", "x", "dlx", "run"})
# Interpreters whose first argument is the script (`python tools/gen.py`): kept; their options
# (`-c CODE`, `-e CODE`) are code, and `-m` keeps only a module from a benign list.
_INTERPRETERS = frozenset({"python", "node", "ruby", "perl", "bash", "sh", "zsh", "php", "lua"})
_BENIGN_MODULES = word_set(
    "pytest pip mypy ruff black isort flake8 pylint unittest build json.tool venv"
)
# `uv run X`, `poetry run X`: suggestions keep the runner when they would keep X.
_RUNNERS = {"uv": "run", "poetry": "run", "pdm": "run", "hatch": "run", "pipenv": "run"}


def suggest_rule(tool: str, specifier: str) -> Rule:
    """A rule for "approve this pattern" that always matches the call it came from.

    Bash: the program, plus its subcommand (git, npm, pip, uv, cargo...) or script (python,
    node...), plus the tool a runner runs (``uv run pytest``, ``python -m pytest``), then `` *``;
    lines outside the closed set, several commands, redirections to files and programs that run
    code from their arguments get the exact call (``Rule.exact``). File tools: the file's folder
    (Glob/Grep: the searched folder) + ``/**``, ``./**`` for the workspace root. WebFetch:
    ``domain:HOST``. Raises RuleError for an unknown tool.
    """
    candidate = _suggested(tool, specifier)
    if candidate is not None and candidate.matches(tool, specifier):
        return candidate
    return Rule.exact(tool, _normal_path(specifier) if tool in _FILE_TOOLS else specifier)


def _suggested(tool: str, specifier: str) -> Rule | None:
    if tool == "Bash":
        prefix = _command_prefix(specifier)
        return None if prefix is None else Rule(tool, prefix + " *")
    if tool == "WebFetch":
        host = specifier.removeprefix("domain:").strip().lower().rstrip(".")
        return Rule(tool, "domain:" + _SPECIALS.sub(r"\\\1", host)) if host else None
    path = _normal_path(specifier)
    folder = path if tool in ("Glob", "Grep") else posixpath.dirname(path)
    if folder in ("", "."):
        return Rule(tool, "./**")
    return Rule(tool, _SPECIALS.sub(r"\\\1", folder.rstrip("/")) + "/**")


def _command_prefix(command: str) -> str | None:
    line = parse_line(command)
    if line.problem or len(line.commands) != 1 or line.commands[0].redirects:
        return None
    words = line.commands[0].words
    kept = _kept_words(words)
    if kept is None or not all(_SAFE_WORD.fullmatch(word) for word in words[:kept]):
        return None
    return " ".join(words[:kept])


def _kept_words(words: tuple[str, ...]) -> int | None:
    """How many leading words a suggestion keeps before `` *``; None: only the exact call."""
    if words[0].startswith("-"):  # `uv run --with x pytest`: options of the runner
        return None
    program = re.sub(r"[\d.]+$", "", posixpath.basename(words[0]))  # python3.11 -> python
    second = words[1] if len(words) > 1 else ""
    if program in _RUNNERS and second == _RUNNERS[program] and len(words) > 2:
        inner = _kept_words(words[2:])
        return None if inner is None else inner + 2
    if program in _INTERPRETERS:
        if second == "-m" and len(words) > 2 and words[2] in _BENIGN_MODULES:
            return 3
        return 2 if second and not second.startswith("-") else None
    if program == "git":
        return 2 if second in _GIT_SUBCOMMANDS else None
    if program in CODE_RUNNERS:
        return None
    if program in _SUBCOMMANDS:
        if not second or second.startswith("-") or second in _RUNNING_SUBCOMMANDS - {"run"}:
            return None
        if second == "run":  # `npm run test`: the script's name too
            return 3 if len(words) > 2 and not words[2].startswith("-") else None
        return 2
    return 1


# --- deciding


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
        if allowing is not None and not _unsure_of_deny(allowing, rules, tool, specifier):
            return Decision.ALLOW, allowing
        if allowing is None and inside_workspace and tool in _READ_ONLY:
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
    bash = [rule for rule in rules if rule.tool == "Bash" and rule.specifier is not None]
    found = bash_allows([rule.specifier or "" for rule in bash], specifier)
    return None if found is None else bash[found]


def _unsure_of_deny(
    allowing: Rule, rules: dict[Decision, list[Rule]], tool: str, specifier: str
) -> bool:
    """A line outside the closed set allowed by a plain ``Bash`` rule may still run what a deny
    or ask rule names (``$(echo rm) -rf /``): with such rules present, ask."""
    if tool != "Bash" or allowing.specifier is not None or not parse_line(specifier).problem:
        return False
    return any(
        rule.tool == "Bash" and rule.specifier is not None
        for rule in (*rules[Decision.DENY], *rules[Decision.ASK])
    )
