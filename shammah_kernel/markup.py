"""Markdown that cannot carry script: model text, tool output and file text as safe cell output.

JupyterLab renders the outputs of a live session as trusted: raw HTML in a `text/markdown` output
runs (`<img onerror=...>`, `<script>`). So every piece of text the model or a file controls goes
through here. `safe_markdown` keeps Markdown formatting and code highlighting: code blocks and
code spans are re-emitted in a form no Markdown parser can read differently (their content is
escaped by the renderer itself), and everywhere else `<` and `&` become entities, so no tag,
no entity and no autolink can form; links whose scheme is not http(s) or mailto are broken.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE = re.compile(r"^([ \t]*)(`{3,}|~{3,})(.*)$")
_BACKTICKS = re.compile(r"`+")
_INFO_WORD = re.compile(r"[\w+#.-]*")
# A link destination after `](`, or after `]:` (a reference definition, also inside a list
# item or a quote, so it is checked wherever it stands).
_INLINE_LINK = re.compile(r"\]\((\s*)(\S*)")
_REFERENCE = re.compile(r"(\]):(\s*)(\S*)")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_INLINE_SPECIAL = re.compile(r"([\\`*_~$|])")
_LINE_START = re.compile(r"^([ \t]*)([#>+=-])", re.MULTILINE)
_ORDERED_ITEM = re.compile(r"^([ \t]*\d+)([.)])", re.MULTILINE)


def escape_text(text: str) -> str:
    """`text` shown literally in Markdown: no HTML, entities, links, code, emphasis or math, and
    no line of it starts a heading, quote or list. Plain words and paths stay readable."""
    escaped = text.replace("&", "&amp;").replace("<", "&lt;")
    escaped = _INLINE_SPECIAL.sub(r"\\\1", escaped)
    escaped = escaped.replace("](", "]\\(").replace("]:", "]\\:")
    escaped = _ORDERED_ITEM.sub(r"\1\\\2", escaped)
    return _LINE_START.sub(r"\1\\\2", escaped)


def inline_code(text: str) -> str:
    """`text` as one code span that no backtick run inside it can close (newlines as spaces)."""
    flat = " ".join(text.splitlines()) or " "
    fence = "`" * (_longest_run(flat) + 1)
    pad = " " if flat[0] in "` " or flat[-1] in "` " else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def code_block(text: str, info: str = "text") -> str:
    """`text` as a fenced code block longer than any backtick run inside it."""
    fence = "`" * max(3, _longest_run(text) + 1)
    word = _INFO_WORD.match(info.strip())
    language = word[0] if word else ""
    return f"{fence}{language}\n{text.rstrip(chr(10))}\n{fence}"


def safe_markdown(text: str) -> str:
    """Model Markdown with formatting and code kept, and no raw HTML or script links left."""
    pieces: list[str] = []
    for block in _blocks(text):
        if block.is_code:
            pieces.append("\n" + code_block(block.text, block.info) + "\n")
        else:
            pieces.append(_safe_prose(block.text))
    return "\n".join(pieces)


@dataclass(frozen=True, slots=True)
class _Block:
    text: str
    is_code: bool
    info: str = ""


def _blocks(text: str) -> list[_Block]:
    """Prose and fenced code blocks, in order; an unclosed fence (still streaming) runs to the end.

    A fence is recognised at any indentation (the code is then shown at the left margin), so
    code inside a nested list never falls back to escaped prose.
    """
    blocks: list[_Block] = []
    prose: list[str] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None or (opening[2][0] == "`" and "`" in opening[3]):
            prose.append(lines[i])
            i += 1
            continue
        if prose:
            blocks.append(_Block("\n".join(prose), is_code=False))
            prose = []
        indent, fence = len(opening[1]), opening[2]
        code: list[str] = []
        i += 1
        while i < len(lines):
            closing = _FENCE.match(lines[i])
            if (
                closing is not None
                and closing[2][0] == fence[0]
                and len(closing[2]) >= len(fence)
                and not closing[3].strip()
            ):
                i += 1
                break
            code.append(_dedent(lines[i], indent))
            i += 1
        blocks.append(_Block("\n".join(code), is_code=True, info=opening[3]))
    if prose:
        blocks.append(_Block("\n".join(prose), is_code=False))
    return blocks


def _dedent(line: str, indent: int) -> str:
    stripped = len(line) - len(line.lstrip(" \t"))
    return line[min(indent, stripped) :]


def _safe_prose(text: str) -> str:
    """Escape HTML in prose, keeping one-line code spans as code spans."""
    out: list[str] = []
    for line in text.split("\n"):
        out.append(_safe_line(line))
    return _break_unsafe_links("\n".join(out))


def _safe_line(line: str) -> str:
    """Code spans stay code (re-emitted so nothing else can close them); the rest is escaped.

    Spans never cross lines: a block-level parser reads a line that starts with `<` as HTML
    before it looks for code spans, so a span over lines could hide a tag from this function.
    """
    out: list[str] = []
    position = 0
    while position < len(line):
        opening = _BACKTICKS.search(line, position)
        if opening is None:
            break
        closing = _closing_run(line, opening)
        if closing is None:
            out.append(_escape_prose(line[position : opening.end()]))
            position = opening.end()
            continue
        before = _escape_prose(line[position : opening.start()])
        if (
            len(before) - len(before.rstrip("\\"))
        ) % 2:  # a backslash would escape the span's start
            before += "\\"
        out.append(before + inline_code(line[opening.end() : closing.start()]))
        position = closing.end()
    out.append(_escape_prose(line[position:]))
    return "".join(out)


def _closing_run(line: str, opening: re.Match[str]) -> re.Match[str] | None:
    """The next backtick run of the same length (CommonMark's rule for a code span's end)."""
    for candidate in _BACKTICKS.finditer(line, opening.end()):
        if len(candidate[0]) == len(opening[0]):
            return candidate
    return None


def _escape_prose(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("`", "\\`")


def _break_unsafe_links(text: str) -> str:
    """Escape the `(` or `:` that would make a link to a javascript:, data: or other scheme."""

    def inline(match: re.Match[str]) -> str:
        return match[0] if _safe_destination(match[2]) else "]\\(" + match[1] + match[2]

    def reference(match: re.Match[str]) -> str:
        if _safe_destination(match[3]):
            return match[0]
        return f"{match[1]}\\:{match[2]}{match[3]}"

    return _REFERENCE.sub(reference, _INLINE_LINK.sub(inline, text))


def _safe_destination(destination: str) -> bool:
    plain = destination.replace("\\", "")  # Markdown unescapes `javascript\:` to a colon
    scheme = _SCHEME.match(plain)
    return scheme is None or scheme[1].lower() in _SAFE_SCHEMES


def _longest_run(text: str) -> int:
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)
