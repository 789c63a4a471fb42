"""The Bash gate reads a line as bash does, auto-allows only a closed set of constructs, and
applies deny rules to every command a line may run, whatever the program word looks like."""

from __future__ import annotations

import pytest

from shammah_kernel.permissions import Decision, PermissionPolicy, Rule
from shammah_kernel.shell_grammar import Redirect, SimpleCommand, parse_line

ALLOW, ASK, DENY = Decision.ALLOW, Decision.ASK, Decision.DENY


def decide(command: str, *, allow: tuple[str, ...], deny: tuple[str, ...] = ()) -> Decision:
    policy = PermissionPolicy(
        allow=[Rule.parse(rule) for rule in allow], deny=[Rule.parse(rule) for rule in deny]
    )
    return policy.decide("Bash", command, inside_workspace=True)[0]


# The lines of the issue, each with the rules it named: all ran `touch X` or wrote a file unasked.
ISSUE_LINES = [
    ("echo hi $'\\'' ; touch X #'", ("Bash(echo *)",)),
    ("git status $(git status)#; touch X", ("Bash(git status)",)),
    ("git status `git status`#; touch X", ("Bash(git status)",)),
    ("echo >&2#; touch X", ("Bash(echo *)",)),
    ("echo ${x:- #}; touch X", ("Bash(echo *)",)),
    ("echo >&1name", ("Bash(echo *)",)),
]


@pytest.mark.parametrize(("command", "rules"), ISSUE_LINES)
def test_the_issue_lines_ask(command: str, rules: tuple[str, ...]) -> None:
    assert decide(command, allow=rules) is ASK
    assert parse_line(command).problem
    assert decide(command, allow=rules, deny=("Bash(touch *)",)) in (ASK, DENY)


# Constructs outside the closed set: each asks under `Bash(echo *)`, though echo is the program.
OUTSIDE = [
    "echo $'a'",
    'echo $"a"',
    "echo $HOME",
    "echo ${HOME}",
    "echo $(date)",
    "echo $((1+1))",
    "echo `date`",
    'echo "$HOME"',
    'echo "`date`"',
    "echo <(date)",
    "echo >(cat)",
    "echo <<EOF\nx\nEOF",
    "echo <<<x",
    "echo *",
    "echo a?",
    "echo [ab]",
    "echo {a,b}",
    "echo ~root",
    "echo a=~/x",
    "(echo x)",
    "{ echo x; }",
    "if echo; then echo; fi",
    "while echo; do echo; done",
    "for x in a; do echo; done",
    "case a in a) echo;; esac",
    "function f { echo; }",
    "f() { echo; }",
    "echo x &",
    "echo x & echo y",
    "echo x # a comment",
    "echo x #",
    "echo a#b",
    "eval echo x",
    "exec echo x",
    "source x",
    ". x",
    "builtin echo x",
    "command -p echo x",
    "X=1 echo x",
    "echo x >&1name",
    "echo x >&-",
    "echo x |& echo y",
    "! echo x",
    "time echo x",
    "echo 'unterminated",
    'echo "unterminated',
    "echo x;;",
    "; echo x",
    "echo x &&",
    "echo x | | echo y",
    "echo x\\",
    "echo \x01",
    # bashlex reads these otherwise than bash (`a\q`, `its`): the two readings differ, so ask
    'echo "a\\q"',
    "echo 'it''s'",
]


@pytest.mark.parametrize("command", OUTSIDE)
def test_constructs_outside_the_closed_set_ask(command: str) -> None:
    assert parse_line(command).problem
    assert decide(command, allow=("Bash(echo *)", "Bash(f)", "Bash(x)")) is ASK


# Inside the closed set, and allowed.
INSIDE = [
    "echo hi",
    "echo 'a b' \"c d\" e\\ f",
    "echo x 2>&1",
    "echo x >/dev/null 2>&1",
    "echo x >&2",
    "echo a && echo b || echo c; echo d",
    "echo a | echo b",
    "echo a\necho b\n",
    "echo ~/x",
    "echo \"#\" '$x' \\$x \\#",
    "echo a &&\n echo b",
]


@pytest.mark.parametrize("command", INSIDE)
def test_the_closed_set_is_allowed(command: str) -> None:
    assert parse_line(command).problem == ""
    assert decide(command, allow=("Bash(echo *)",)) is ALLOW


def test_the_parse_is_what_bash_reads() -> None:
    line = parse_line("echo 'a b'\"c\"\\ d 2>&1 >out.txt && ls -l | cat <in")
    assert line.problem == ""
    assert line.commands == (
        SimpleCommand(("echo", "a bc d"), (Redirect(">&", "1", "2"), Redirect(">", "out.txt"))),
        SimpleCommand(("ls", "-l"), ()),
        SimpleCommand(("cat",), (Redirect("<", "in"),)),
    )


@pytest.mark.parametrize(
    "command", ["echo x > f", "echo x >> f", "echo x &> f", "echo x >| f", "echo x <> f"]
)
def test_a_file_redirect_needs_a_rule_that_names_it(command: str) -> None:
    assert decide(command, allow=("Bash(echo *)",)) is ASK
    operator = command.split()[2]
    assert decide(command, allow=(f"Bash(echo * {operator} f)",)) is ALLOW
    assert decide(command.replace(" f", " g"), allow=(f"Bash(echo * {operator} f)",)) is ASK


@pytest.mark.parametrize(
    "command",
    ["", "\x00", "(" * 5000, "$(" * 3000, "'" * 9999, "echo " + "x " * 5000, "a\\" * 4000],
)
def test_hostile_lines_never_raise(command: str) -> None:
    line = parse_line(command)
    assert isinstance(line.problem, str)
    assert decide(command, allow=("Bash(echo *)",)) in (ASK, ALLOW)


# Deny rules see the program under every spelling and wrapper.
DENIED = [
    "rm -rf x",
    "/bin/rm -rf x",
    "/usr/bin/env rm -rf x",
    "command rm x",
    "command -p rm x",
    "env -i rm x",
    "env -u HOME X=1 rm x",
    "nice rm x",
    "nice -n 5 rm x",
    "nohup rm x",
    "timeout 5 rm x",
    "builtin rm x",
    "exec rm x",
    "exec -a name rm x",
    "'r'm x",
    '"rm" x',
    "\\rm x",
    "r\\m x",
    "$'rm' x",
    "X=1 rm x",
    "sudo rm x",
    "xargs rm",
    "find . -exec rm {} ;",
    "sh -c 'rm -rf x'",
    'bash -c "ls; rm -rf x"',
    "eval 'rm x'",
    "ls; rm x",
    "ls && rm x",
    "ls | rm x",
    "echo $(rm x)",
    "echo `rm x`",
    "echo <(rm x)",
    "(rm x)",
    "{ rm x; }",
    "if true; then rm x; fi",
    "ls # \nrm x",
    "time rm x",
    "! rm x",
]


@pytest.mark.parametrize("command", DENIED)
def test_deny_sees_the_program_under_any_spelling(command: str) -> None:
    assert decide(command, allow=("Bash",), deny=("Bash(rm *)",)) is DENY
    assert decide(command, allow=("Bash",), deny=("Bash(/bin/rm *)",)) is DENY


@pytest.mark.parametrize("command", ["ls -l", "grep rm file", "echo rm", "git rm --cached x"])
def test_deny_does_not_catch_mere_mentions(command: str) -> None:
    assert decide(command, allow=("Bash",), deny=("Bash(rm *)",)) is ALLOW


def test_a_line_outside_the_set_asks_when_deny_rules_exist() -> None:
    """`Bash` allowed, `rm` denied: `$(echo rm) -rf /` may run rm, so it asks."""
    assert decide("$(echo rm) -rf /", allow=("Bash",), deny=("Bash(rm *)",)) is ASK
    assert decide("$(echo rm) -rf /", allow=("Bash",)) is ALLOW
