"""What a Bash line runs: its simple commands, and whether the gate may reason about it at all.

A strict lexer accepts only a closed set of constructs whose meaning is certain (plain words,
quotes without expansion, backslash escapes, ``|``, ``&&``, ``||``, ``;``, newlines, and redirects
to plain words); ``bashlex``, a real shell grammar, must read the line the same way. Anything else
(expansions, substitutions, comments, globs, compound commands, a disagreement) sets ``problem``,
and the gate asks. The commands of such a line are still listed, best effort, for deny rules.

Unquoted glob characters (``*?[]``) ask rather than being matched literally: bash would expand
them to file names the gate cannot know. A leading ``~`` or ``~/`` stays in the word as written
(bash expands it to ``$HOME``); any other ``~`` asks. A redirect target is reported unquoted;
``>&``/``<&`` must name a digit fd (``>&name`` writes a file).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import bashlex
import re2


def word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Redirect operators; `>&`/`<&` duplicate a file descriptor (their target must be a digit fd).
_REDIRECTS = ("&>>", "&>", ">>", ">|", ">&", "<&", "<>", ">", "<")
_FD_DUPLICATIONS = frozenset({">&", "<&"})
# Unquoted characters that start an expansion, a glob, a comment, a subshell or a group.
_SPECIAL = {
    "$": "a $ expansion",
    "`": "a backtick substitution",
    "#": "a comment (or a # bash may read as one)",
    "*": "a glob",
    "?": "a glob",
    "[": "a glob",
    "]": "a glob",
    "(": "a subshell or substitution",
    ")": "a subshell or substitution",
    "{": "a group or brace expansion",
    "}": "a group or brace expansion",
    "!": "a negation or history expansion",
}
_DIGITS = re.compile("[0-9]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_NAME_EQUALS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\+?=")
# Reserved words are keywords only in command position; there they mean a compound command.
_RESERVED = word_set(
    "if then else elif fi case esac for select while until do done in function time coproc "
    "[[ ]] { } !"
)
# Builtins that run their arguments as shell code, or run a command bypassing functions/PATH.
_CODE_BUILTINS = frozenset({"eval", "exec", "source", ".", "builtin", "command", "trap"})


@dataclass(frozen=True, slots=True)
class Redirect:
    """One redirection: ``operator`` without the fd before it, ``target`` unquoted."""

    operator: str
    target: str
    fd: str = ""  # the file descriptor written before the operator, "" for the default


@dataclass(frozen=True, slots=True)
class SimpleCommand:
    words: tuple[str, ...]
    redirects: tuple[Redirect, ...]


@dataclass(frozen=True, slots=True)
class ParsedLine:
    commands: tuple[SimpleCommand, ...]
    problem: str  # "" when the whole line is in the closed set; else why the gate must ask


class _Refused(Exception):
    """The line leaves the closed set; the message says how."""


@dataclass(frozen=True, slots=True)
class _Word:
    text: str  # unquoted
    plain: bool  # no quote or escape in it
    raw: str


@dataclass(frozen=True, slots=True)
class _Operator:
    text: str


@dataclass(frozen=True, slots=True)
class _RedirectToken:
    operator: str
    fd: str


_Token = _Word | _Operator | _RedirectToken


@functools.lru_cache(maxsize=1024)
def parse_line(command: str) -> ParsedLine:
    """The simple commands of ``command`` and, if it leaves the closed set, why. Never raises."""
    try:
        strict = _strict_commands(command)
    except _Refused as refused:
        return ParsedLine(_best_effort(command), str(refused))
    grammar = _grammar_commands(command)
    if grammar is None:
        return ParsedLine(_best_effort(command), "bash's grammar (bashlex) cannot read the line")
    if grammar != strict:
        return ParsedLine(_best_effort(command), "two readings of the line disagree")
    return ParsedLine(strict, "")


# --- the strict lexer: the closed set, read as bash reads it


def _strict_commands(command: str) -> tuple[SimpleCommand, ...]:
    if _CONTROL.search(command):
        raise _Refused("a control character")
    return _assemble(_tokens(command))


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in " \t":
            i += 1
        elif char == "\\" and text.startswith("\\\n", i):
            i += 2  # a line continuation between words
        elif char == "\n" or char == ";":
            if text.startswith(";;", i):
                raise _Refused("a case terminator ;;")
            tokens.append(_Operator(char))
            i += 1
        elif char in "|&<>":
            i = _operator(text, i, tokens, fd="")
        else:
            word, i = _word(text, i)
            if i < len(text) and text[i] in "<>" and word.plain and _DIGITS.fullmatch(word.text):
                i = _operator(text, i, tokens, fd=word.text)  # `2>f`: an fd, not a word
            else:
                tokens.append(word)
    return tokens


def _operator(text: str, i: int, tokens: list[_Token], *, fd: str) -> int:
    for operator in ("&&", "||", "|&", "<<", "|"):
        if text.startswith(operator, i) and not (operator == "|" and text.startswith("||", i)):
            if operator in ("|&", "<<"):
                raise _Refused("a here-document, here-string or |&")
            tokens.append(_Operator(operator))
            return i + len(operator)
    for operator in _REDIRECTS:
        if text.startswith(operator, i) and not (fd and operator.startswith("&")):
            tokens.append(_RedirectToken(operator, fd))
            return i + len(operator)
    raise _Refused("a background & (the command would run on unasked)")


def _word(text: str, i: int) -> tuple[_Word, int]:
    out: list[str] = []
    start, plain = i, True
    while i < len(text) and text[i] not in " \t\n;|&<>":
        char = text[i]
        if char == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise _Refused("an unterminated quote")
            out.append(text[i + 1 : end])
            i, plain = end + 1, False
        elif char == '"':
            i = _double_quoted(text, i + 1, out)
            plain = False
        elif char == "\\":
            if i + 1 >= len(text):
                raise _Refused("a backslash at the end of the line")
            if text[i + 1] != "\n":  # `\<newline>` joins lines, as if it were not there
                out.append(text[i + 1])
                plain = False
            i += 2
        elif char in _SPECIAL:
            raise _Refused(_SPECIAL[char])
        elif char == "~" and not (i == start and text[i + 1 : i + 2] in ("/", "", " ", "\t")):
            raise _Refused("a ~ expansion other than a leading ~/")
        else:
            out.append(char)
            i += 1
    return _Word("".join(out), plain, text[start:i]), i


def _double_quoted(text: str, i: int, out: list[str]) -> int:
    while i < len(text):
        char = text[i]
        if char == '"':
            return i + 1
        if char in "$`":
            raise _Refused("an expansion inside double quotes")
        if char == "\\" and text[i + 1 : i + 2] in ("$", "`", '"', "\\", "\n"):
            out.append("" if text[i + 1] == "\n" else text[i + 1])
            i += 2
        else:
            out.append(char)
            i += 1
    raise _Refused("an unterminated quote")


def _assemble(tokens: list[_Token]) -> tuple[SimpleCommand, ...]:
    commands: list[SimpleCommand] = []
    words: list[_Word] = []
    redirects: list[Redirect] = []
    needs_command = False  # after `|`, `&&`, `||`
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if isinstance(token, _Word):
            _check_command_word(token, words, redirects)
            words.append(token)
        elif isinstance(token, _RedirectToken):
            if index >= len(tokens) or not isinstance(tokens[index], _Word):
                raise _Refused("a redirect without a target")
            redirects.append(_redirect(token, tokens[index]))  # type: ignore[arg-type]
            index += 1
        elif words or redirects:
            commands.append(SimpleCommand(tuple(w.text for w in words), tuple(redirects)))
            words, redirects = [], []
            needs_command = token.text in ("|", "&&", "||")
        elif token.text != "\n":  # a blank line is fine; an empty command between operators not
            raise _Refused(f"a syntax error near {token.text!r}")
    if words or redirects:
        commands.append(SimpleCommand(tuple(w.text for w in words), tuple(redirects)))
    elif needs_command:
        raise _Refused("a syntax error: the line ends after an operator")
    return tuple(commands)


def _check_command_word(word: _Word, words: list[_Word], redirects: list[Redirect]) -> None:
    if words:
        return
    if _NAME_EQUALS.match(word.raw.replace("\\\n", "")):
        raise _Refused("an assignment before a command")
    if word.plain and word.text in _RESERVED:
        raise _Refused(f"a compound command ({word.text})")
    if word.text in _CODE_BUILTINS:
        raise _Refused(f"{word.text} runs its arguments as a command")


def _redirect(token: _RedirectToken, target: _Word) -> Redirect:
    if token.operator in _FD_DUPLICATIONS and not (target.plain and _DIGITS.fullmatch(target.text)):
        raise _Refused(f"{token.operator}{target.raw} is not a duplication to a digit fd")
    return Redirect(token.operator, target.text, token.fd)


# --- bashlex: the same line through a real grammar

_GRAMMAR_KINDS = frozenset({"list", "pipeline", "command", "word", "redirect", "operator", "pipe"})


def _grammar_commands(command: str) -> tuple[SimpleCommand, ...] | None:
    """The line's simple commands as bashlex reads them; None for anything outside the set."""
    try:
        trees = bashlex.parse(command)
        found: list[SimpleCommand] = []
        for tree in trees:
            if not _collect_closed(tree, found):
                return None
        return tuple(found)
    except Exception:  # bashlex raises several types, and asserts; any of them: not understood
        return None


def _collect_closed(node: object, found: list[SimpleCommand]) -> bool:
    kind = getattr(node, "kind", "")
    if kind not in _GRAMMAR_KINDS:
        return False
    if kind == "command":
        return _closed_command(node, found)
    if kind == "operator" and getattr(node, "op", "") not in (";", "&&", "||", "\n"):
        return False
    return all(_collect_closed(part, found) for part in getattr(node, "parts", []))


def _closed_command(node: object, found: list[SimpleCommand]) -> bool:
    words: list[str] = []
    redirects: list[Redirect] = []
    for part in getattr(node, "parts", []):
        kind = getattr(part, "kind", "")
        if kind == "word" and all(p.kind == "tilde" for p in getattr(part, "parts", [])):
            words.append(part.word)
        elif kind == "redirect":
            output = part.output
            target = str(output) if isinstance(output, int) else getattr(output, "word", None)
            if target is None or getattr(output, "parts", []):
                return False
            fd = getattr(part, "input", None)
            redirects.append(Redirect(part.type, target, "" if fd is None else str(fd)))
        else:
            return False
    found.append(SimpleCommand(tuple(words), tuple(redirects)))
    return True


# --- best effort for lines outside the set: every command bashlex or a crude split can find


def _best_effort(command: str) -> tuple[SimpleCommand, ...]:
    found: list[SimpleCommand] = []
    try:
        for tree in bashlex.parse(command):
            _collect_all(tree, found)
    except Exception:  # not parseable: the crude split below still finds the words
        pass
    for piece in _CRUDE_SPLIT.split(command):
        words = tuple(_CRUDE_QUOTES.sub("", piece).split())
        if words:
            found.append(SimpleCommand(words, ()))
    return tuple(dict.fromkeys(found))


# Splits at anything that may end or start a command; quotes and `$` dropped, so that
# `r'm'`, `\rm` and `$'rm'` all read `rm` (more, smaller commands: more for deny rules to see).
_CRUDE_SPLIT = re.compile(r"[;&|\n(){}`<>]|\$\(|\$\{|\bthen\b|\bdo\b|\belse\b|\bif\b")
_CRUDE_QUOTES = re.compile(r"""\$(?=['"])|['"\\]""")


def _collect_all(node: object, found: list[SimpleCommand]) -> None:
    if isinstance(node, list):
        for item in node:
            _collect_all(item, found)
        return
    if getattr(node, "kind", "") == "command":
        parts = getattr(node, "parts", [])
        words = tuple(p.word for p in parts if getattr(p, "kind", "") in ("word", "assignment"))
        found.append(SimpleCommand(words, ()))
    for attribute in ("parts", "list", "command", "output", "body"):
        child = getattr(node, attribute, None)
        if child is not None and not isinstance(child, (str, int)):
            _collect_all(child, found)


# --- rule patterns over simple commands

# Programs that run code given in their arguments: a script (awk, sed, an interpreter's -c/-e),
# a command to wrap (env, nice, xargs, sudo, find -exec, ssh, watch, parallel, time, strace,
# gdb), a hook or action (tar --to-command, make's recipes, git aliases and -c), or a shell
# escape (vim, less, more, man). A `Program *` rule for them would allow anything.
CODE_RUNNERS = word_set(
    "awk gawk mawk nawk sed perl ruby python node nodejs deno bun bash sh zsh dash ksh fish csh "
    "tcsh env nice nohup timeout command builtin exec eval source xargs find ssh scp rsync tar "
    "make gmake git npx uvx pnpx bunx pipx sudo doas su watch parallel time strace ltrace gdb "
    "lldb valgrind vim vi nvim emacs less more man ed ex script expect tclsh lua php Rscript "
    "julia osascript stdbuf setsid ionice chrt taskset flock unshare chroot nsenter systemd-run "
    "at batch crontab busybox docker podman kubectl"
)
# Programs that run a command named in their arguments (`env rm x`, `sh -c 'rm x'`, `find -exec`,
# `ssh host rm`, `uv run rm`): deny and ask rules look at every command they may start.
_WRAPPERS = word_set(
    "env nice nohup timeout command builtin exec eval xargs find sudo doas su watch parallel time "
    "strace ltrace gdb valgrind stdbuf setsid ionice chrt taskset flock unshare chroot nsenter "
    "systemd-run ssh sh bash zsh dash ksh fish csh tcsh busybox script uv poetry pdm hatch "
    "pipenv pipx uvx npx docker podman kubectl"
)
WILDCARD = re.compile(r"(?<!\\)(?:\\\\)*\*")  # a `*` not escaped by a backslash
_UNESCAPE = re.compile(r"\\([\\*?])")
_ANY, _LITERAL_STAR = "\ue000", "\ue001"  # a wildcard and an escaped star, while lexing
_SEPARATOR = "\x1f"  # between words: the lexer lets no control character into a word
_HARMLESS_TARGET = "/dev/null"
_MAX_VIEWS = 256


def unescape(text: str) -> str:
    """A specifier's escapes resolved: ``\\*`` -> ``*``, ``\\?`` -> ``?``, ``\\\\`` -> ``\\``."""
    return _UNESCAPE.sub(r"\1", text)


@dataclass(frozen=True, slots=True)
class _CommandPattern:
    words: str  # a regex over the words joined by _SEPARATOR
    program_words: str  # the same with the program word reduced to its basename (deny, ask)
    redirects: tuple[Redirect, ...]  # file redirects the rule names (targets may hold _ANY)


@functools.lru_cache(maxsize=4096)
def command_pattern(specifier: str) -> _CommandPattern | None:
    """A Bash rule's specifier as a pattern over one simple command; None if it is not one
    simple command of the closed set (it then matches only as exact text)."""
    line = parse_line(_mark_wildcards(specifier))
    if line.problem or len(line.commands) != 1 or not line.commands[0].words:
        return None
    words, redirects = line.commands[0].words, line.commands[0].redirects
    program = words[0]
    if "/" in program and _ANY not in program:
        program = program.rsplit("/", 1)[1]
    return _CommandPattern(
        _words_regex(words),
        _words_regex((program, *words[1:])),
        tuple(r for r in redirects if not _harmless(r)),
    )


def _mark_wildcards(specifier: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(specifier):
        pair = specifier[i : i + 2]
        if pair == "\\*":
            out.append(_LITERAL_STAR)
        elif specifier[i] == "\\":
            out.append(pair)
        else:
            out.append(_ANY if specifier[i] == "*" else specifier[i])
            i -= 1
        i += 2
    return "".join(out)


def _words_regex(words: tuple[str, ...]) -> str:
    tail = ""
    last = words[-1]
    if len(words) > 1 and last == _ANY:  # `pytest *` also matches a bare `pytest`
        words, tail = words[:-1], f"(?:{_SEPARATOR}[^\n]*)?"
    elif last.endswith(":" + _ANY):  # `npm run test:*`: the same, as in Claude Code
        words, tail = (*words[:-1], last[:-2]), f"(?:{_SEPARATOR}[^\n]*)?"
    return _SEPARATOR.join(_word_regex(word) for word in words) + tail


def _word_regex(word: str) -> str:
    pieces = {_ANY: "[^\n]*", _LITERAL_STAR: re2.escape("*")}
    return "".join(pieces.get(char) or re2.escape(char) for char in word)


@functools.lru_cache(maxsize=4096)
def _regex(text: str) -> re2._Regexp:
    return re2.compile(text)


def _harmless(redirect: Redirect) -> bool:
    return redirect.operator in _FD_DUPLICATIONS or redirect.target == _HARMLESS_TARGET


def _covers(specifier: str, command: SimpleCommand) -> bool:
    pattern = command_pattern(specifier)
    if pattern is None or not command.words:
        return False
    if _regex(pattern.words).fullmatch(_SEPARATOR.join(command.words)) is None:
        return False
    return all(
        _harmless(redirect) or any(_names(wanted, redirect) for wanted in pattern.redirects)
        for redirect in command.redirects
    )


def _names(wanted: Redirect, redirect: Redirect) -> bool:
    if wanted.operator != redirect.operator:
        return False
    return _regex(_word_regex(wanted.target)).fullmatch(redirect.target) is not None


def bash_allows(specifiers: list[str], command: str) -> int | None:
    """The index of the allow pattern covering the first command of ``command``, if every
    simple command (words and file redirects) is covered by one; None otherwise, and always
    for a line outside the closed set."""
    line = parse_line(command)
    if line.problem or not line.commands:
        return None
    first: int | None = None
    for simple in line.commands:
        found = next((i for i, s in enumerate(specifiers) if _covers(s, simple)), None)
        if found is None:
            return None
        first = found if first is None else first
    return first


def bash_touches(specifier: str, command: str) -> bool:
    """Whether a deny or ask pattern names any command of the line, program words normalised
    (``/bin/rm``, ``env -i rm``, ``sh -c 'rm x'``), or the line's whole text."""
    whole = _regex(_glob_text(specifier)).fullmatch(" ".join(command.split()))
    if whole is not None:
        return True
    pattern = command_pattern(specifier)
    if pattern is None:
        return False
    regex = _regex(pattern.program_words)
    views: list[tuple[str, ...]] = []
    for simple in parse_line(command).commands:
        if not _program_views(simple.words, views, depth=0):
            return True  # too many ways to read it: count it as named (fail closed)
    return any(regex.fullmatch(_SEPARATOR.join(view)) for view in views)


def _glob_text(specifier: str) -> str:
    pieces: list[str] = []
    for piece in re.split(r"(\\[\\*?]|\*)", " ".join(specifier.split())):
        pieces.append("[\\s\\S]*" if piece == "*" else re2.escape(unescape(piece)))
    return "".join(pieces)


def _program_views(words: tuple[str, ...], views: list[tuple[str, ...]], *, depth: int) -> bool:
    """Adds the ways ``words`` may name a program: the basename of its program word, after
    assignments, and for a program that runs other commands every later start and every
    argument read as a line. False when that passes _MAX_VIEWS."""
    while words and _NAME_EQUALS.match(words[0]):  # `X=1 rm` (env's arguments, say)
        words = words[1:]
    if not words:
        return True
    program = words[0].rsplit("/", 1)[-1]
    views.append((program, *words[1:]))
    if len(views) > _MAX_VIEWS:
        return False
    if program not in _WRAPPERS or depth >= 3:
        return True
    for start in range(1, min(len(words), 32)):
        if not _program_views(words[start:], views, depth=depth + 1):
            return False
        if any(char in words[start] for char in " \t\n;|&$`("):
            for inner in parse_line(words[start]).commands:
                if not _program_views(inner.words, views, depth=depth + 1):
                    return False
    return True
