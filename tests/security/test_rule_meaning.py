"""Rules mean what they read: an exact rule is exact, a suggested pattern never reaches a program
that runs code from its arguments, a bare file pattern stays in the workspace, a `*` in a host
stays in one DNS label, and every match runs in linear time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shammah_kernel.permissions import Decision, PermissionPolicy, Rule, suggest_rule

# --- exact rules


@pytest.mark.parametrize(
    ("tool", "call", "other"),
    [
        ("Bash", "rm -rf build/*", "rm -rf build/ ~"),
        ("Bash", "rm -rf build/*", "rm -rf build/x"),
        ("Bash", "echo *", "echo; rm -rf /"),
        ("Bash", "cat a\\*b", "cat a\\xb"),
        ("Bash", "ls ?", "ls x"),
        ("Edit", "src/*.py", "src/a.py"),
        ("Read", "a?c", "abc"),
        ("Read", "logs/**", "logs/secret/key"),
        ("WebFetch", "https://example.com/*", "https://example.com/other"),
        ("WebFetch", "domain:*.example.com", "domain:evil.example.com"),
    ],
)
def test_an_exact_rule_matches_only_its_call(tool: str, call: str, other: str) -> None:
    rule = Rule.exact(tool, call)
    assert rule.matches(tool, call)
    assert not rule.matches(tool, other)
    assert Rule.parse(str(rule)) == rule  # it survives permissions.json
    policy = PermissionPolicy(allow=[rule])
    assert policy.decide(tool, other, inside_workspace=False) == (Decision.ASK, None)


def test_the_exact_escape_syntax() -> None:
    assert str(Rule.exact("Bash", "rm -rf build/*")) == "Bash(rm -rf build/\\*)"
    assert str(Rule.exact("Read", "a\\b?*")) == "Read(a\\\\b\\?\\*)"
    assert Rule.exact("Bash", " ls ") == Rule("Bash", "ls")


# --- suggestions for programs that run code from their arguments

CODE_RUNNING_CALLS = [
    "awk '{print}' f", "gawk -f x.awk", "sed -n p f", "sed -i s/a/b/ f", "perl -e 'print 1'",
    "ruby -e 'x'", "python -c 'print(1)'", "python3 -c 'x'", "node -e 'x'", "deno eval x",
    "bash -c 'ls'", "sh -c ls", "zsh -c ls", "env ls", "env -i FOO=1 ls", "nice ls",
    "nohup ls", "timeout 5 ls", "xargs ls", "find . -name x", "find . -exec ls {} ;", "ssh host ls",
    "tar -xf x.tar", "tar --to-command=sh -xf x.tar", "make", "make test", "git", "git -c x=y log",
    "git config alias.x '!sh'", "git x", "git submodule foreach ls", "npx cowsay", "uvx ruff",
    "poetry run python -c x", "uv run python -c x", "uv run --with x pytest", "pipx run x",
    "docker run alpine", "docker exec c ls", "sudo ls", "su -c ls", "watch ls", "parallel ls",
    "strace ls", "gdb ls", "vim f", "vi f", "less f", "more f", "emacs f", "npm exec x",
    "python -m timeit x", "python -m pdb x.py", "rsync -e sh a b", "busybox sh",
]  # fmt: skip


@pytest.mark.parametrize("call", CODE_RUNNING_CALLS)
def test_code_running_programs_get_the_exact_call(call: str) -> None:
    rule = suggest_rule("Bash", call)
    assert rule == Rule.exact("Bash", call)
    assert rule.matches("Bash", call)


@pytest.mark.parametrize(
    ("call", "suggested"),
    [
        ("pytest -q", "Bash(pytest *)"),
        ("git status", "Bash(git status *)"),
        ("git log -3", "Bash(git log *)"),
        ("npm test", "Bash(npm test *)"),
        ("npm run build", "Bash(npm run build *)"),
        ("uv run pytest -q", "Bash(uv run pytest *)"),
        ("python -m pytest -x", "Bash(python -m pytest *)"),
        ("ruff check .", "Bash(ruff *)"),
    ],
)
def test_benign_programs_keep_their_patterns(call: str, suggested: str) -> None:
    assert str(suggest_rule("Bash", call)) == suggested


# --- file rules


@pytest.mark.parametrize("pattern", ["*.py", "**/*.py", "a.py", "*", "**"])
def test_an_unanchored_file_rule_stays_in_the_workspace(pattern: str) -> None:
    for tool in ("Edit", "Write", "Read"):
        rule = Rule("Edit" if tool == "Write" else tool, pattern)
        assert rule.matches(tool, "src/a.py") or pattern == "a.py"
        assert not rule.matches(tool, "/home/me/.config/a.py")
        assert not rule.matches(tool, "/etc/a.py")


def test_an_unanchored_deny_rule_still_covers_outside_files() -> None:
    policy = PermissionPolicy(allow=[Rule("Read")], deny=[Rule("Read", ".env")])
    assert policy.decide("Read", "/elsewhere/.env", inside_workspace=False)[0] is Decision.DENY


# --- WebFetch


@pytest.mark.parametrize(
    ("pattern", "specifier", "matched"),
    [
        ("domain:*.python.org", "domain:docs.python.org", True),
        ("domain:*.python.org", "domain:evil.com.python.org", False),
        ("domain:docs.*.org", "domain:docs.python.org", True),
        ("domain:docs.*.org", "domain:docs.evil.com.org", False),
        ("domain:*python.org", "domain:evil.com/python.org", False),
        ("https://*.python.org/*", "https://docs.python.org/3/", True),
        ("https://*.python.org/*", "https://evil.com/?.python.org/", False),
        ("https://*.python.org/*", "https://evil.com/.python.org/", False),
        ("https://*.python.org/*", "https://evil.com#.python.org/", False),
        ("https://*.python.org/*", "https://a.evil.com.python.org/", False),
        ("https://*.python.org/*", "https://user@docs.python.org/", False),
        ("https://*.python.org/*", "https://docs.python.org:8080/", False),
        ("https://*.python.org/*", "http://docs.python.org/", False),
        ("https://docs.python.org/3/*", "https://docs.python.org/3/library/", True),
        ("https://docs.python.org/3/*", "https://docs.python.org/2/", False),
    ],
)
def test_web_patterns_match_url_parts(pattern: str, specifier: str, matched: bool) -> None:
    assert Rule("WebFetch", pattern).matches("WebFetch", specifier) is matched


# --- linear time

_SLOW_CHECK = """
from shammah_kernel.permissions import Rule
star = "a" + "*a" * 50
long = "a" * 10_000 + "b"
for tool, pattern, text in [
    ("Bash", "echo " + star, "echo " + long),
    ("Bash", " ".join(["echo"] + ["*"] * 50) + " b", "echo " + "a " * 5_000),
    ("Read", star, long),
    ("Read", "**/" * 50 + "x", "a/" * 5_000),
    ("WebFetch", "https://x.org/" + star, "https://x.org/" + long),
    ("WebFetch", "domain:" + star, "domain:" + long),
]:
    rule = Rule(tool, pattern)
    assert not rule.matches(tool, text)
    rule.matches_any_part(tool, text)
"""


@pytest.mark.timeout(60)
def test_patterns_with_many_stars_match_in_linear_time() -> None:
    """A backtracking matcher takes hours on these; a linear one well under a second each."""
    subprocess.run([sys.executable, "-c", _SLOW_CHECK], check=True, timeout=5 * 6)
