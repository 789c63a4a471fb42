"""The tools on real files, a real bash and a local web server: happy paths and every error path."""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from web_server import BIG_BYTES, WebServer

from shammah_kernel.events import ToolCall, ToolResult
from shammah_kernel.tools import ALL_TOOLS, ToolContext, ToolError, check_arguments, run_tool
from shammah_kernel.tools.html_text import html_to_text


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    workspace = tmp_path / "work"
    workspace.mkdir()
    # The test web server listens on 127.0.0.1: as if a rule named that host (WebFetch refuses
    # loopback addresses otherwise); no other tool looks at this.
    return ToolContext(workspace=workspace, may_fetch_private=lambda host, port: True)


@pytest.fixture
def web(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebServer]:
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    with WebServer() as server:
        yield server


def call(ctx: ToolContext, name: str, **arguments: object) -> ToolResult:
    return run_tool(ToolCall("call-1", name, arguments), ctx)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- the registry and run_tool ---


def test_registry_names_and_schemas() -> None:
    assert list(ALL_TOOLS) == ["Read", "Glob", "Grep", "Bash", "WebFetch", "Edit", "Write"]
    for name, tool in ALL_TOOLS.items():
        assert tool.name == name and tool.description
        schema = tool.parameters
        assert schema["type"] == "object"
        assert set(schema["required"]) <= set(schema["properties"])  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("name", "arguments", "problem"),
    [
        ("Read", {}, "missing required argument(s): path"),
        ("Read", {"path": 5}, "argument 'path' must be a string, not int"),
        ("Read", {"path": "a", "offset": "2"}, "argument 'offset' must be a integer, not str"),
        ("Read", {"path": "a", "offset": True}, "argument 'offset' must be a integer, not bool"),
        ("Read", {"path": "a", "offset": 0}, "argument 'offset' must be at least 1"),
        ("Read", {"path": "a", "lines": 3}, "unknown argument 'lines'; expected: path, offset"),
        ("Bash", {"command": "ls", "timeout": 601}, "argument 'timeout' must be at most 600"),
        ("Edit", {"path": "a", "old_string": "x"}, "missing required argument(s): new_string"),
        ("Grep", {"pattern": "x", "-i": "yes"}, "argument '-i' must be a boolean, not str"),
    ],
)
def test_run_tool_rejects_bad_arguments(
    ctx: ToolContext, name: str, arguments: dict[str, object], problem: str
) -> None:
    result = run_tool(ToolCall("c7", name, arguments), ctx)
    assert result.call_id == "c7" and result.is_error
    assert result.content.startswith(f"invalid arguments for {name}: {problem}")


def test_check_arguments_accepts_whole_floats_and_rejects_non_objects() -> None:
    assert check_arguments(ALL_TOOLS["Read"], {"path": "a", "offset": 2.0, "limit": 3}) is None
    assert check_arguments(ALL_TOOLS["Read"], {"path": "a", "offset": 2.5}) is not None
    assert check_arguments(ALL_TOOLS["Bash"], ["ls"]) == "arguments must be a JSON object, not list"


def test_run_tool_unknown_tool(ctx: ToolContext) -> None:
    result = call(ctx, "Delete", path="x")
    assert result.is_error
    assert result.content == (
        "unknown tool 'Delete'; the tools are: Read, Glob, Grep, Bash, WebFetch, Edit, Write"
    )


def test_run_tool_turns_a_crash_into_an_error_result(ctx: ToolContext) -> None:
    def broken_output(text: str) -> None:
        raise RuntimeError("the widget is gone")

    result = call(dataclasses.replace(ctx, on_output=broken_output), "Bash", command="echo hi")
    assert result.is_error
    assert result.content == "Bash failed: RuntimeError: the widget is gone"


def test_run_tool_caps_every_result(ctx: ToolContext) -> None:
    (ctx.workspace / "long.txt").write_text("y" * 1000 + "\n", encoding="utf-8")
    result = call(dataclasses.replace(ctx, max_output_chars=200), "Read", path="long.txt")
    assert len(result.content) < 300 and "characters cut" in result.content


# --- paths and specifiers ---


def test_specifiers_are_workspace_relative_inside_and_absolute_outside(ctx: ToolContext) -> None:
    ws = ctx.workspace
    read = ALL_TOOLS["Read"]
    assert read.specifiers({"path": "src/a.py"}, ws) == ("src/a.py",)
    assert read.specifiers({"path": "src/../b.py"}, ws) == ("b.py",)
    assert read.specifiers({"path": str(ws / "c.py")}, ws) == ("c.py",)
    assert read.specifiers({"path": "../secret.txt"}, ws) == (str(ws.parent / "secret.txt"),)
    assert ALL_TOOLS["Edit"].specifiers({"path": "x.py"}, ws) == ("x.py",)
    assert ALL_TOOLS["Write"].specifiers({"path": "/etc/hosts"}, ws) == ("/etc/hosts",)
    assert ALL_TOOLS["Bash"].specifiers({"command": "pytest -q"}, ws) == ("pytest -q",)
    assert ALL_TOOLS["Glob"].specifiers({"pattern": "**/*.py"}, ws) == ("**/*.py",)
    assert ALL_TOOLS["Glob"].specifiers({"pattern": "*.py", "path": "src"}, ws) == ("src/*.py",)
    assert ALL_TOOLS["Grep"].specifiers({"pattern": "x"}, ws) == (".",)
    assert ALL_TOOLS["Grep"].specifiers({"pattern": "x", "path": "src"}, ws) == ("src",)
    url = "https://Docs.Python.org/3/library/re.html"
    assert ALL_TOOLS["WebFetch"].specifiers({"url": url}, ws) == (
        "domain:docs.python.org",
        "https://docs.python.org/3/library/re.html",  # the host as the rules see it
    )


def test_describe_says_what_will_happen(ctx: ToolContext) -> None:
    ws = ctx.workspace
    assert ALL_TOOLS["Read"].describe({"path": "a.py"}, ws) == "Read a.py"
    assert (
        ALL_TOOLS["Read"].describe({"path": "a.py", "offset": 10, "limit": 5}, ws)
        == "Read a.py (lines 10-14)"
    )
    assert ALL_TOOLS["Bash"].describe({"command": "ls -la"}, ws) == "Run: ls -la"
    assert (
        ALL_TOOLS["Bash"].describe({"command": "make", "timeout": 30}, ws)
        == "Run: make (timeout 30 s)"
    )
    assert ALL_TOOLS["WebFetch"].describe({"url": "https://x.org/a"}, ws) == "Fetch https://x.org/a"
    assert ALL_TOOLS["Glob"].describe({"pattern": "**/*.md"}, ws) == "Find files matching **/*.md"
    assert (
        ALL_TOOLS["Grep"].describe({"pattern": "def \\w+", "glob": "*.py", "-i": True}, ws)
        == "Search for /def \\w+/ in . (files *.py), ignoring case"
    )
    assert ALL_TOOLS["Edit"].describe({"path": "a.py", "replace_all": True}, ws) == (
        "Edit a.py (every occurrence)"
    )
    assert ALL_TOOLS["Write"].describe({"path": "n.txt", "content": "a\nb\n"}, ws) == (
        "Write n.txt (2 lines)"
    )
    assert ALL_TOOLS["Bash"].preview({"command": "ls"}, ws) == ""


# --- Read ---


def test_read_numbers_lines_and_reads_a_window(ctx: ToolContext) -> None:
    (ctx.workspace / "a.txt").write_text("alpha\nbeta\r\ngamma\ndelta\n", encoding="utf-8")
    whole = call(ctx, "Read", path="a.txt")
    assert not whole.is_error
    assert whole.content == "     1\talpha\n     2\tbeta\n     3\tgamma\n     4\tdelta"
    window = call(ctx, "Read", path="a.txt", offset=2, limit=2)
    assert window.content == (
        "     2\tbeta\n     3\tgamma\n[showing lines 2-3; the file goes on: read from offset=4]"
    )


def test_read_truncates_huge_files_and_long_lines(ctx: ToolContext) -> None:
    path = ctx.workspace / "big.log"
    path.write_text("".join(f"line {n}\n" for n in range(1, 100_001)) + "z" * 5000, "utf-8")
    result = call(dataclasses.replace(ctx, read_max_lines=5), "Read", path="big.log")
    assert result.content.splitlines()[-2:] == [
        "     5\tline 5",
        "[showing lines 1-5; the file goes on: read from offset=6]",
    ]
    last = call(ctx, "Read", path=str(path), offset=100_001)
    assert last.content.endswith("z" * 2000 + " [... line cut at 2000 characters]")


def test_read_empty_file_and_offset_past_the_end(ctx: ToolContext) -> None:
    (ctx.workspace / "empty.txt").touch()
    (ctx.workspace / "short.txt").write_text("one\n", encoding="utf-8")
    assert call(ctx, "Read", path="empty.txt").content == "empty.txt is empty."
    past = call(ctx, "Read", path="short.txt", offset=5)
    assert not past.is_error and past.content == "short.txt has fewer than 5 lines."


def test_read_errors(ctx: ToolContext) -> None:
    (ctx.workspace / "blob.bin").write_bytes(b"\x89PNG\0\0\x01" * 100)
    (ctx.workspace / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    (ctx.workspace / "dir").mkdir()
    cases = {
        "blob.bin": "blob.bin is a binary file (700 bytes)",
        "latin1.txt": "latin1.txt is a binary file (5 bytes)",
        "missing.txt": "missing.txt does not exist",
        "dir": "dir is a directory; use Glob to list files",
    }
    for path, message in cases.items():
        result = call(ctx, "Read", path=path)
        assert result.is_error and result.content == message


# --- Glob ---


def make_tree(root: Path) -> None:
    for index, name in enumerate(
        ["top.py", "src/pkg/mod.py", "src/pkg/data.json", "src/app.py", "README.md",
         ".venv/lib/site.py", "node_modules/x/index.py", ".git/hooks/hook.py"]
    ):  # fmt: skip
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {name}\nimport os\n", encoding="utf-8")
        os.utime(path, (1_000_000 + index, 1_000_000 + index))


def test_glob_finds_newest_first_and_skips_dependency_dirs(ctx: ToolContext) -> None:
    make_tree(ctx.workspace)
    result = call(ctx, "Glob", pattern="**/*.py")
    assert not result.is_error
    assert result.content.splitlines() == ["src/app.py", "src/pkg/mod.py", "top.py"]
    assert call(ctx, "Glob", pattern="*.py").content == "top.py"
    assert call(ctx, "Glob", pattern="src/**/*.{py,json}").content.splitlines() == [
        "src/app.py",
        "src/pkg/data.json",
        "src/pkg/mod.py",
    ]
    assert call(ctx, "Glob", pattern="*.py", path="src").content == "src/app.py"
    assert call(ctx, "Glob", pattern="[A-Z]*.md").content == "README.md"
    venv = call(ctx, "Glob", pattern=".venv/**/*.py")  # asked for by name, it is searched
    assert venv.content == ".venv/lib/site.py"


def test_glob_caps_results_and_reports_nothing_found(ctx: ToolContext) -> None:
    make_tree(ctx.workspace)
    capped = call(dataclasses.replace(ctx, glob_max_results=2), "Glob", pattern="**/*")
    assert capped.content.splitlines()[-1] == "[showing 2 of 5 files; narrow the pattern]"
    none = call(ctx, "Glob", pattern="**/*.rs")
    assert not none.is_error and none.content == "No files match **/*.rs."
    missing = call(ctx, "Glob", pattern="*", path="nowhere")
    assert missing.is_error and missing.content == "nowhere is not a directory"


# --- Grep ---


def test_grep_finds_lines_with_numbers(ctx: ToolContext) -> None:
    make_tree(ctx.workspace)
    (ctx.workspace / "blob.bin").write_bytes(b"import os\0\0")
    result = call(ctx, "Grep", pattern=r"^import \w+")
    assert not result.is_error
    # Sorted by path; binary files and .git/.venv/node_modules are skipped.
    assert result.content.splitlines() == [
        "README.md:2: import os",
        "src/app.py:2: import os",
        "src/pkg/data.json:2: import os",
        "src/pkg/mod.py:2: import os",
        "top.py:2: import os",
    ]
    assert call(ctx, "Grep", pattern="IMPORT", glob="*.py", path="src", **{"-i": True}).content == (
        "src/app.py:2: import os\nsrc/pkg/mod.py:2: import os"
    )
    assert call(ctx, "Grep", pattern="IMPORT").content == "No matches."
    assert call(ctx, "Grep", pattern="mod", path="src/pkg/mod.py").content == (
        "src/pkg/mod.py:1: # src/pkg/mod.py"
    )


def test_grep_caps_results(ctx: ToolContext) -> None:
    (ctx.workspace / "many.txt").write_text("hit\n" * 50, encoding="utf-8")
    result = call(dataclasses.replace(ctx, grep_max_results=3), "Grep", pattern="hit")
    assert result.content.splitlines() == [
        "many.txt:1: hit",
        "many.txt:2: hit",
        "many.txt:3: hit",
        "[stopped at 3 matches; narrow the pattern or path]",
    ]


def test_grep_errors(ctx: ToolContext) -> None:
    bad = call(ctx, "Grep", pattern="def (")
    assert bad.is_error
    assert bad.content.startswith("unsupported or invalid regular expression (missing ): def ()")
    for python_only in (r"(a)\1", "(?=x)", "(?<=x)y", "(?!x)"):  # RE2 has none of these
        result = call(ctx, "Grep", pattern=python_only)
        assert result.is_error and "no backreferences" in result.content
    missing = call(ctx, "Grep", pattern="x", path="nowhere")
    assert missing.is_error and missing.content == "nowhere does not exist"


# --- Bash ---


def test_bash_runs_in_the_workspace_with_exit_code(ctx: ToolContext) -> None:
    result = call(ctx, "Bash", command="pwd; echo oops >&2; cat; echo done")
    assert not result.is_error
    assert result.content == f"{ctx.workspace}\noops\ndone\n[exit code 0]"
    failed = call(ctx, "Bash", command="echo partial; exit 3")
    assert failed.is_error and failed.content == "partial\n[exit code 3]"
    assert call(ctx, "Bash", command="true").content == "[exit code 0]"


def test_bash_streams_lines_before_the_command_ends(ctx: ToolContext) -> None:
    seen: list[str] = []

    def on_output(text: str) -> None:
        seen.append(text)
        if text == "first\n":  # the command waits for this file, so streaming must work
            (ctx.workspace / "go").touch()

    command = "echo first; while [ ! -f go ]; do sleep 0.02; done; echo second"
    result = call(dataclasses.replace(ctx, on_output=on_output), "Bash", command=command, timeout=5)
    assert seen == ["first\n", "second\n"]
    assert result.content == "first\nsecond\n[exit code 0]"


def test_bash_streams_partial_lines_and_keeps_utf8_whole(ctx: ToolContext) -> None:
    seen: list[str] = []

    def on_output(text: str) -> None:
        seen.append(text)
        if "Continue? " in "".join(seen):
            (ctx.workspace / "go").touch()

    # A prompt without a newline still reaches the cell while the command waits.
    command = (
        "printf 'Continue? '; while [ ! -f go ]; do sleep 0.02; done; "
        "printf 'caf\\xc3'; sleep 0.05; printf '\\xa9\\n'"  # é split across two writes
    )
    stream_ctx = dataclasses.replace(ctx, on_output=on_output)
    result = call(stream_ctx, "Bash", command=command, timeout=5)
    assert "".join(seen) == "Continue? café\n"
    assert result.content == "Continue? café\n[exit code 0]"


def test_bash_timeout_kills_the_process_group(ctx: ToolContext) -> None:
    command = "bash -c 'sleep 30' & echo $! > child.pid; echo started; wait"
    started = time.monotonic()
    result = call(dataclasses.replace(ctx, bash_timeout=0.5), "Bash", command=command)
    assert time.monotonic() - started < 5
    assert result.is_error
    assert result.content == "started\n[timed out after 0.5 s; the command was killed]"
    child = int((ctx.workspace / "child.pid").read_text())
    deadline = time.monotonic() + 3
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child)


def test_bash_should_stop_kills_the_command(ctx: ToolContext) -> None:
    seen: list[str] = []
    stop_ctx = dataclasses.replace(ctx, on_output=seen.append, should_stop=lambda: bool(seen))
    result = call(stop_ctx, "Bash", command="echo working; sleep 30")
    assert result.is_error
    assert result.content == "working\n[stopped by the user; the command was killed]"


def test_bash_caps_output_keeping_head_and_tail(ctx: ToolContext) -> None:
    result = call(dataclasses.replace(ctx, max_output_chars=2000), "Bash", command="seq 1 100000")
    assert result.content.startswith("1\n2\n3\n")
    assert result.content.endswith("99999\n100000\n[exit code 0]")
    assert "characters cut ...]" in result.content and len(result.content) < 2200


def test_bash_does_not_wait_for_background_children(ctx: ToolContext) -> None:
    started = time.monotonic()
    result = call(ctx, "Bash", command="sleep 30 & echo $!")
    try:
        assert time.monotonic() - started < 5
        assert result.content.endswith("[exit code 0]")
    finally:
        os.kill(int(result.content.split()[0]), 9)


# --- WebFetch ---


def test_webfetch_turns_html_into_readable_text(ctx: ToolContext, web: WebServer) -> None:
    result = call(ctx, "WebFetch", url=web.url("/page.html"))
    assert not result.is_error
    assert result.content == (
        "Title: Tool Test Page\n\n"
        "# Welcome\n\n"
        f"Read the guide ({web.url('/docs/guide.html')}) and run `pip install shammah`.\n\n"
        "## Steps\n\n"
        "- first step\n"
        "- second step\n\n"
        "```\ndef hello():\n    return 42\n```"
    )


def test_webfetch_returns_text_as_is(ctx: ToolContext, web: WebServer) -> None:
    assert call(ctx, "WebFetch", url=web.url("/plain.txt")).content == (
        "just plain text\nline two\n"
    )
    assert call(ctx, "WebFetch", url=web.url("/data.json")).content == '{"answer": 42}'
    assert call(ctx, "WebFetch", url=web.url("/latin1.txt")).content == "café"


def test_html_to_text_handles_loose_html() -> None:
    # </head>, </p>, </li> and </td> may be left out in HTML; entities are decoded.
    html = (
        "<html><head><title>T</title><body><p>Fish &amp; chips<p>x<br>y"
        "<table><tr><th>a<th>b<tr><td>1<td>2</table><ol><li>one<li>two</ol>"
        '<a href="#top">top</a> <a href="javascript:go()">go</a> <a href="https://a.b/c">c</a>'
    )
    assert html_to_text(html, "http://site/") == (
        "Title: T\n\nFish & chips\n\nx\ny\n\na b\n1 2\n\n- one\n- two\n\ntop go c (https://a.b/c)"
    )


def test_webfetch_follows_redirects_on_the_same_host_only(ctx: ToolContext, web: WebServer) -> None:
    assert call(ctx, "WebFetch", url=web.url("/redirect")).content.startswith("just plain text")
    away = call(ctx, "WebFetch", url=web.url("/redirect-away"))
    assert not away.is_error
    assert away.content == (
        f"{web.url('/redirect-away')} redirects to http://localhost:{web.port}/plain.txt; "
        "fetch that URL to follow it."
    )
    loop = call(ctx, "WebFetch", url=web.url("/loop"))
    assert loop.is_error and loop.content.startswith("too many redirects (more than 5)")


def test_webfetch_limits_size_and_time(ctx: ToolContext, web: WebServer) -> None:
    big = call(dataclasses.replace(ctx, fetch_max_bytes=10_000), "WebFetch", url=web.url("/big"))
    assert not big.is_error and BIG_BYTES > 10_000
    assert big.content == "x" * 10_000 + (
        "\n[the response is over 10,000 bytes; only its start is shown]"
    )
    started = time.monotonic()
    slow = call(dataclasses.replace(ctx, fetch_timeout=0.3), "WebFetch", url=web.url("/slow"))
    assert time.monotonic() - started < 3
    assert slow.is_error and slow.content == f"timed out after 0.3 s: {web.url('/slow')}"


def test_webfetch_errors(ctx: ToolContext, web: WebServer) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    cases = {
        web.url("/missing"): f"HTTP 404 Not Found from {web.url('/missing')}",
        web.url("/image.png"): f"{web.url('/image.png')} is binary (image/png), not text; "
        "not fetched",
        "file:///etc/passwd": "'file:///etc/passwd' is not an http or https URL",
        "ftp://example.com/x": "'ftp://example.com/x' is not an http or https URL",
    }
    for url, message in cases.items():
        result = call(ctx, "WebFetch", url=url)
        assert result.is_error and result.content == message
    refused = call(ctx, "WebFetch", url=f"http://127.0.0.1:{closed}/")
    assert refused.is_error
    assert refused.content.startswith(f"could not fetch http://127.0.0.1:{closed}/: ")


# --- Edit ---


def test_edit_replaces_one_occurrence(ctx: ToolContext) -> None:
    path = ctx.workspace / "code.py"
    path.write_bytes(b"def f():\r\n    return 1\r\n")
    path.chmod(0o755)
    arguments = {"path": "code.py", "old_string": "return 1", "new_string": "return 2"}
    preview = ALL_TOOLS["Edit"].preview(arguments, ctx.workspace)
    assert preview.splitlines(keepends=True) == [
        "--- a/code.py\n",
        "+++ b/code.py\n",
        "@@ -1,2 +1,2 @@\n",
        " def f():\r\n",
        "-    return 1\r\n",
        "+    return 2\r\n",
    ]
    assert path.read_bytes() == b"def f():\r\n    return 1\r\n"  # the preview changed nothing
    result = call(ctx, "Edit", **arguments)
    assert not result.is_error and result.content == "Edited code.py: replaced 1 occurrence."
    assert path.read_bytes() == b"def f():\r\n    return 2\r\n"  # CRLF kept
    assert stat.S_IMODE(path.stat().st_mode) == 0o755


def test_edit_replace_all(ctx: ToolContext) -> None:
    path = ctx.workspace / "a.txt"
    path.write_text("x = 1\nx = 1\n", encoding="utf-8")
    result = call(ctx, "Edit", path="a.txt", old_string="1", new_string="2", replace_all=True)
    assert result.content == "Edited a.txt: replaced 2 occurrences."
    assert path.read_text(encoding="utf-8") == "x = 2\nx = 2\n"


def test_edit_errors_leave_the_file_alone(ctx: ToolContext) -> None:
    path = ctx.workspace / "a.txt"
    path.write_text("x = 1\nx = 1\n", encoding="utf-8")
    (ctx.workspace / "blob.bin").write_bytes(b"\0\1\2")
    cases = [
        ({"old_string": "y = 1"}, "old_string was not found in a.txt; Read the file and copy"),
        ({"old_string": "x = 1"}, "old_string occurs 2 times in a.txt; include more surrounding"),
        ({"old_string": ""}, "old_string is empty; use Write to create or replace a whole file"),
        ({"old_string": "x", "new_string": "x"}, "old_string and new_string are the same"),
        ({"path": "gone.txt"}, "gone.txt does not exist"),
        ({"path": "blob.bin"}, "blob.bin is a binary file (3 bytes)"),
    ]
    for change, message in cases:
        arguments = {"path": "a.txt", "old_string": "x = 1", "new_string": "z", **change}
        result = call(ctx, "Edit", **arguments)
        assert result.is_error and result.content.startswith(message)
        with pytest.raises(ToolError, match="^" + message[:20]):
            ALL_TOOLS["Edit"].preview(arguments, ctx.workspace)
    assert path.read_text(encoding="utf-8") == "x = 1\nx = 1\n"


# --- Write ---


def test_write_creates_parents_and_files_with_the_umask(ctx: ToolContext) -> None:
    arguments = {"path": "new/deep/file.txt", "content": "hello\nworld"}
    preview = ALL_TOOLS["Write"].preview(arguments, ctx.workspace)
    assert preview == (
        "new file new/deep/file.txt\n--- /dev/null\n+++ b/new/deep/file.txt\n@@ -0,0 +1,2 @@\n"
        "+hello\n+world\n\\ No newline at end of file\n"
    )
    assert not (ctx.workspace / "new").exists()
    result = call(ctx, "Write", **arguments)
    assert not result.is_error and result.content == "Created new/deep/file.txt (2 lines)."
    path = ctx.workspace / "new/deep/file.txt"
    assert path.read_text(encoding="utf-8") == "hello\nworld"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_write_replaces_atomically(ctx: ToolContext, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ctx.workspace / "conf.ini"
    path.write_text("a = 1\nb = 2\n", encoding="utf-8")
    path.chmod(0o600)
    arguments = {"path": "conf.ini", "content": "a = 1\nb = 3\n"}
    write = ALL_TOOLS["Write"]
    assert write.preview(arguments, ctx.workspace) == (
        "--- a/conf.ini\n+++ b/conf.ini\n@@ -1,2 +1,2 @@\n a = 1\n-b = 2\n+b = 3\n"
    )
    unchanged = {**arguments, "content": "a = 1\nb = 2\n"}
    assert write.preview(unchanged, ctx.workspace) == "(no change)"
    inode = path.stat().st_ino
    assert call(ctx, "Write", **arguments).content == "Overwrote conf.ini (2 lines)."
    assert path.read_text(encoding="utf-8") == "a = 1\nb = 3\n"
    assert path.stat().st_ino != inode  # a new file took its place
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def fail_replace(source: object, target: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail_replace)
    failed = call(ctx, "Write", path="conf.ini", content="broken")
    assert failed.is_error and failed.content == "Write failed: OSError: disk full"
    assert path.read_text(encoding="utf-8") == "a = 1\nb = 3\n"
    assert sorted(p.name for p in ctx.workspace.iterdir()) == ["conf.ini"]  # no temp file left


def test_write_errors_and_binary_preview(ctx: ToolContext) -> None:
    (ctx.workspace / "folder").mkdir()
    result = call(ctx, "Write", path="folder", content="x")
    assert result.is_error and result.content == "folder is a directory"
    (ctx.workspace / "blob.bin").write_bytes(b"\0\1")
    preview = ALL_TOOLS["Write"].preview({"path": "blob.bin", "content": "t\n"}, ctx.workspace)
    assert preview.startswith("replaces: blob.bin is a binary file (2 bytes)\n--- /dev/null\n")
