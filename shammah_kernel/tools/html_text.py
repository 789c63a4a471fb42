"""HTML as readable text for the model: headings, paragraphs, lists, code, links with their URLs."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import urljoin

DROPPED = frozenset({"script", "style", "nav", "noscript", "template", "svg", "head", "iframe"})
BLOCKS = frozenset(
    {"p", "div", "section", "article", "main", "header", "footer", "aside", "table", "tr",
     "ul", "ol", "dl", "dt", "dd", "blockquote", "figure", "figcaption", "form", "br", "hr"}
)  # fmt: skip
HEADINGS = {f"h{level}": "#" * level for level in range(1, 7)}
# html.parser rescans an unclosed tag from each later `<` (quadratic: `<a ` * 30,000 took
# minutes, holding the GIL); a `<` with no `>` this close after it is text, so it is escaped.
MAX_TAG_CHARS = 262_144
_STRAY_LT = re.compile(r"<(?![A-Za-z/!?])")  # text, not a tag: one data call, not one per `<`
TEXT_LT = "\uffff"  # a `<` that is text, while parsing (a noncharacter: pages do not use it)
FEED_CHARS = 65_536  # the caller's `check` runs between pieces of this size


class _TextParser(HTMLParser):
    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.parts: list[str] = []
        self.title: list[str] = []
        self.dropped = 0  # depth inside elements whose text is not content
        self.in_title = self.in_pre = False
        self.links: list[str] = []  # the href of each open <a>
        self.trailing = 0  # newlines at the end of the text so far
        self.last = "\n"  # its last character

    def emit(self, text: str) -> None:
        if not text:
            return
        if text.startswith("\n") and self.last == " " and not self.in_pre:
            self.parts[-1] = self.parts[-1].rstrip(" ")  # no spaces at line ends
        self.parts.append(text)
        stripped = text.rstrip("\n")
        self.trailing = len(text) - len(stripped) + (self.trailing if not stripped else 0)
        self.last = text[-1]

    def newline(self, count: int = 1) -> None:
        """End the current line, and leave `count - 1` blank lines (none at the very start)."""
        if self.parts:
            self.emit("\n" * max(0, count - self.trailing))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        if tag == "body":
            self.dropped = 0  # an unclosed <head> (HTML allows leaving out </head>) ends here
        if tag in DROPPED:
            self.dropped += 1
        elif self.dropped:
            return
        elif tag in HEADINGS:
            self.newline(2)
            self.emit(HEADINGS[tag] + " ")
        elif tag == "li":
            self.newline()
            self.emit("- ")
        elif tag == "pre":
            self.newline(2)
            self.emit("```\n")
            self.in_pre = True
        elif tag == "code" and not self.in_pre:
            self.emit("`")
        elif tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        elif tag in ("td", "th") and self.last not in " \n":
            self.emit(" ")
        elif tag in BLOCKS:
            self.newline(1 if tag in ("br", "tr", "dt", "dd") else 2)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in DROPPED:
            self.dropped = max(0, self.dropped - 1)
        elif self.dropped:
            return
        elif tag in HEADINGS or tag in BLOCKS:
            self.newline(2 if tag != "tr" else 1)
        elif tag == "pre" and self.in_pre:
            self.newline()
            self.emit("```")
            self.newline(2)
            self.in_pre = False
        elif tag == "code" and not self.in_pre:
            self.emit("`")
        elif tag == "a" and self.links:
            href = self.links.pop()
            if href and not href.startswith(("#", "javascript:", "mailto:")):
                self.emit(f" ({urljoin(self.base_url, href)})")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
        if self.dropped:
            return
        if self.in_pre:
            self.emit(data)
            return
        text = re.sub(r"\s+", " ", data)
        if self.last in " \n":
            text = text.lstrip(" ")
        self.emit(text)


def _defuse(html: str) -> str:
    """`html` with each `<` that cannot start a tag (a stray one, or one with no `>` within
    MAX_TAG_CHARS after it) turned into TEXT_LT; linear, and mostly in C."""
    segments = _STRAY_LT.sub(TEXT_LT, html).split(">")
    for index, segment in enumerate(segments):
        if index == len(segments) - 1:  # after the last `>`: nothing closes
            segments[index] = segment.replace("<", TEXT_LT)
        elif len(segment) > MAX_TAG_CHARS:
            cut = len(segment) - MAX_TAG_CHARS
            segments[index] = segment[:cut].replace("<", TEXT_LT) + segment[cut:]
    return ">".join(segments)


def _no_check() -> object:
    return None


def html_to_text(html: str, base_url: str = "", check: Callable[[], object] = _no_check) -> str:
    """The readable text of an HTML page; links become `text (absolute url)`. `check` runs
    between pieces of the page and may raise to end the work (a deadline, the stop button)."""
    parser = _TextParser(base_url)
    html = _defuse(html)
    for start in range(0, len(html), FEED_CHARS):
        check()
        parser.feed(html[start : start + FEED_CHARS])
    parser.close()
    body = "".join(parser.parts).replace(TEXT_LT, "<").strip()
    title = " ".join("".join(parser.title).replace(TEXT_LT, "<").split())
    return f"Title: {title}\n\n{body}" if title and not body.startswith(f"# {title}") else body
