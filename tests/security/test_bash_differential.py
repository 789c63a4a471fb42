"""A differential test of the Bash gate against bash itself, which runs nothing.

For each generated line the gate allows, bash is started with a DEBUG trap (``extdebug``,
``set -T``) that records every simple command bash would run (``$BASH_COMMAND``) and skips it.
The allowed programs are shell functions that record the words bash expanded for them and run
nothing else, so substitutions inside their arguments show up too. Every recorded command must
be allowed by the rules, bash's words must be the gate's, and nothing may appear in the cwd.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shammah_kernel.permissions import Decision, PermissionPolicy, Rule
from shammah_kernel.shell_grammar import parse_line

RULES = ("Bash(echo *)", "Bash(git status)", "Bash(ls *)", "Bash(cat *)")
POLICY = PermissionPolicy(allow=[Rule.parse(rule) for rule in RULES])

# Each line runs in a subshell of a traced bash; our own commands pass the trap unrecorded.
# One write per record (\x1f between fields, \x1e after): pipeline parts write concurrently.
PRELUDE = r"""
shopt -s extdebug
set -T
__rec() {
  local IFS=$'\x1f'
  builtin printf 'W\x1f%s\x1e' "$*" >> "$__TRACE"
  return "$__STATUS"
}
echo() { __rec echo "$@"; }
ls() { __rec ls "$@"; }
cat() { __rec cat "$@"; }
git() { __rec git "$@"; }
__dbg() {
  case "$BASH_COMMAND" in
    '__one "$__LINE"'|'eval "$1"'|'__rec '*|"builtin printf "*|'return "$__STATUS"') return 0 ;;
    'local IFS='*) return 0 ;;
  esac
  builtin printf 'C\x1f%s\x1e' "$BASH_COMMAND" >> "$__TRACE"
  case "$BASH_COMMAND" in
    echo|echo\ *|ls|ls\ *|cat|cat\ *|git|git\ *) return 0 ;;
    printf\ *|true) [[ "$BASH_COMMAND" == *[\<\>]* ]] && return 1; return 0 ;;
  esac
  return 1
}
__one() { ( eval "$1" ); }
trap __dbg DEBUG
__one "$__LINE"
"""

# Lists with repeats: sampled_from then draws the allowed programs and safe pieces more often.
_ALLOWED_PROGRAMS = ["echo", "ls", "cat", "git status", "e'cho'", "\\ls", '"cat"']
_OTHER_PROGRAMS = ["git", "touch", "rm", "/bin/ls", "printf", "command ls", "env ls", "true", "X=1"]
_PROGRAMS = st.sampled_from(_ALLOWED_PROGRAMS * 4 + _OTHER_PROGRAMS)
_SAFE = (
    ["a", "b", "-l", "'x y'", '"d e"', "'#'", '"#"', "\\#", "\\$x", "'$x'", "'`id`'", '"a;b"',
     "\\;", "\\&", "2>&1", ">&2", ">/dev/null", "2>/dev/null", "~/x", "'*'", "\\*", "a\\ b",
     "''", '""', "--x=1", "\\\n", '"\\$y"', "'a'\"b\"c", "\\\\"]
)  # fmt: skip
_HOSTILE = (
    ["#", " #", "#'", "a#b", "$'\\''", "$'a'", '$"a"', "$x", "${x:- #}", "$(", ")", "`",
     "$(git status)", "`git status`", "$(touch X)", "$((1))", "\\", "'", '"', "*", "?", "[a]",
     "{a,b}", "=", "X=1 ", "!", "&", "\n", ";", "&&", "||", "|", ">f", ">>f", "<f", ">&2#",
     ">&1name", "<<E\nx\nE", "<<<a", "<(ls)", ">(ls)", "(", "{", "}", "; touch X",
     "&& touch X", "| touch X", "\ntouch X", "|| touch X", '"$(touch X)"', "'\\''", "~root"]
)  # fmt: skip
_PIECE = st.sampled_from(_SAFE * 5 + _HOSTILE)
_GAP = st.sampled_from([" ", " ", " ", "", "\t"])
_COMMAND = st.builds(
    lambda program, pieces: program + "".join(gap + piece for gap, piece in pieces),
    _PROGRAMS,
    st.lists(st.tuples(_GAP, _PIECE), max_size=4),
)
_SEPARATOR = st.sampled_from([" ; ", " && ", " || ", " | ", "\n", ";", "&&"])
LINES = st.builds(
    lambda first, rest: first + "".join(sep + command for sep, command in rest),
    _COMMAND,
    st.lists(st.tuples(_SEPARATOR, _COMMAND), max_size=2),
)


def trace(line: str, status: int) -> tuple[list[str], list[tuple[str, ...]], list[str]]:
    """What bash would run for ``line``: the commands it reached, the words it expanded for the
    allowed programs, and what it left in its cwd. Recorded programs return ``status``."""
    with tempfile.TemporaryDirectory() as folder:
        cwd, home, trace_file = Path(folder, "cwd"), Path(folder, "home"), Path(folder, "trace")
        cwd.mkdir()
        home.mkdir()
        environment = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "__TRACE": str(trace_file),
            "__STATUS": str(status),
            "__LINE": line,
        }
        subprocess.run(
            ["bash", "--norc", "--noprofile", "-c", PRELUDE],
            cwd=cwd,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=5,
            check=False,
        )
        records = trace_file.read_text().split("\x1e")[:-1] if trace_file.exists() else []
        commands = [record[2:] for record in records if record.startswith("C\x1f")]
        words = [tuple(r.split("\x1f")[1:]) for r in records if r.startswith("W\x1f")]
        # The gate keeps a leading `~` as written (rules match it so); bash expands it.
        words = [tuple(_unexpand(word, str(home)) for word in command) for command in words]
        return commands, words, sorted(os.listdir(cwd))


def _unexpand(word: str, home: str) -> str:
    return "~" + word.removeprefix(home) if word == home or word.startswith(home + "/") else word


def allowed(command: str) -> bool:
    return POLICY.decide("Bash", command, inside_workspace=True)[0] is Decision.ALLOW


def test_the_oracle_sees_what_the_old_splitter_missed() -> None:
    commands, _, _ = trace("git status $(git status)#; touch X", 0)
    assert "touch X" in commands
    commands, _, _ = trace("echo hi $'\\'' ; touch X #'", 0)
    assert "touch X" in commands
    _, _, left = trace("echo >&1name", 0)
    assert left == ["1name"]


def test_allowed_lines_run_only_what_the_rules_allow() -> None:
    allowed_lines: list[str] = []

    @settings(
        max_examples=2000,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(LINES)
    def check(line: str) -> None:
        if not allowed(line):
            return
        allowed_lines.append(line)
        ours = {command.words for command in parse_line(line).commands}
        for status in (0, 1):  # both branches of `||` and `&&`
            commands, words, left = trace(line, status)
            assert left == [], f"{line!r} created {left}"
            for command in commands:
                assert allowed(command), f"{line!r} runs {command!r}"
            for expanded in words:
                assert expanded in ours, f"{line!r}: bash read {expanded}, the gate {ours}"

    check()
    print(f"{len(allowed_lines)} allowed lines traced")
    assert len(allowed_lines) >= 200, len(allowed_lines)
