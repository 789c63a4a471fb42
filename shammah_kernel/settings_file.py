"""Reading a settings or rule file safely: a regular file only, a size cap, UTF-8, and a nesting
check before tomllib (whose cost grows with the square of a dotted key's depth)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from shammah_kernel.errors import ConfigError

MAX_SETTINGS_BYTES = 1 << 20  # settings and rule files are a few KiB; more is a mistake


class UnreadableFile(ConfigError):
    """A settings or rule file that exists but cannot be used; the message says why."""


def read_settings_file(path: Path, limit: int = MAX_SETTINGS_BYTES) -> bytes:
    """The bytes of the regular file ``path`` (a symlink to one is fine), at most ``limit``.

    Raises FileNotFoundError when absent and UnreadableFile otherwise: a FIFO, a device such as
    ``/dev/zero`` or a folder is refused before any read, so nothing blocks or fills memory.
    """
    try:
        kind = _file_kind(os.stat(path).st_mode)
        if kind:
            raise UnreadableFile(f"cannot be read (it is {kind}, not a regular file)")
        # O_NONBLOCK: should a FIFO be swapped in after the stat, opening it does not wait.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, UnreadableFile):
        raise
    except (OSError, ValueError) as error:  # ValueError: a NUL byte in the path
        reason = error.strerror if isinstance(error, OSError) else str(error)
        raise UnreadableFile(f"cannot be read ({reason})") from None
    with os.fdopen(descriptor, "rb") as file:
        kind = _file_kind(os.fstat(file.fileno()).st_mode)
        if kind:
            raise UnreadableFile(f"cannot be read (it is {kind}, not a regular file)")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFile(f"cannot be read (larger than {limit // 1024} KiB)")
    return data


def _file_kind(mode: int) -> str:
    """ "" for a regular file, else what it is, in words."""
    if stat.S_ISREG(mode):
        return ""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "a special file"


def decode_settings(data: bytes) -> str:
    """UTF-8 text of a settings or rule file; UnreadableFile when it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"cannot be read (not UTF-8 text at byte {error.start})") from None


# Real settings nest two levels; tomllib's time and memory grow with the square of a dotted
# key's depth (16,000 levels took a GiB), and deep arrays overflow its recursion.
_MAX_NESTING = 32
_MAX_DOTS_PER_LINE = 64
_MARK = re.compile(r"""[\[\]{}.\n#"']""")
_STRING_REST = {  # what follows a string's opening quotes, through its closing ones
    '"""': re.compile(r'(?:[^"\\]|\\.|"{1,2}(?!"))*"{3,5}', re.DOTALL),
    "'''": re.compile(r"(?:[^']|'{1,2}(?!'))*'{3,5}", re.DOTALL),
    '"': re.compile(r'(?:[^"\\\n]|\\.)*"'),
    "'": re.compile(r"[^'\n]*'"),
}


def nesting_problem(text: str) -> str:
    """Why ``text`` nests too deeply to hand to tomllib, or ""; one pass, strings and comments
    skipped (a string that never ends is a problem too: nothing after it would be checked)."""
    depth = dots = at = 0
    while (mark := _MARK.search(text, at)) is not None:
        char, at = mark[0], mark.end()
        if char in "\"'":
            opening = char * 3 if text.startswith(char * 3, mark.start()) else char
            rest = _STRING_REST[opening].match(text, mark.start() + len(opening))
            if rest is None:
                line = text.count("\n", 0, mark.start()) + 1
                return f"a string that does not end, at line {line}"
            dots = 0 if "\n" in rest[0] else dots
            at = rest.end()
        elif char == "#":
            at = len(text) if (end := text.find("\n", at)) < 0 else end
        elif char == "\n":
            dots = 0
        elif char == ".":
            dots += 1
            if dots > _MAX_DOTS_PER_LINE:
                return f"a line with more than {_MAX_DOTS_PER_LINE} dotted parts"
        elif char in "[{":
            depth += 1
            if depth > _MAX_NESTING:
                return f"arrays or tables nested more than {_MAX_NESTING} deep"
        else:
            depth = max(0, depth - 1)
    return ""
