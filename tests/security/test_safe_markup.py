"""Model and file text reaches the page without raw HTML: `markup` against a CommonMark parser
with raw HTML turned on (as JupyterLab renders a live session's outputs: trusted)."""

from __future__ import annotations

from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from shammah_kernel.markup import code_block, escape_text, inline_code, safe_markdown

# What a renderer would turn into live HTML: tags Markdown itself never writes, handlers, schemes.
_MARKDOWN_TAGS = {
    "p", "em", "strong", "code", "pre", "a", "img", "ul", "ol", "li", "h1", "h2", "h3", "h4",
    "h5", "h6", "blockquote", "hr", "br", "table", "thead", "tbody", "tr", "th", "td", "s",
    "details", "summary", "b", "sub",  # what Shammah itself writes around tool calls, footers
}  # fmt: skip
_SCRIPT_SCHEMES = ("javascript:", "vbscript:", "data:")


class _LiveParts(HTMLParser):
    """Collects tags Markdown never writes, event-handler attributes and script URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _MARKDOWN_TAGS:
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            url = "".join((value or "").split()).lower()
            if name.startswith("on") or (
                name in ("href", "src") and url.startswith(_SCRIPT_SCHEMES)
            ):
                self.found.append(f"{tag} {name}={value}")

    def handle_comment(self, data: str) -> None:
        self.found.append("<!--")


HOSTILE = [
    '<img src=x onerror="document.title=1">',
    "<script>document.title=1</script>",
    "<svg onload=alert(1)>",
    "<div\nonmouseover=alert(1)>hover</div>",
    "`x` <b onclick=alert(1)>b</b> `y`",
    "\\`<img src=x onerror=alert(1)>`",
    "``<img src=x onerror=alert(1)>` ``",
    "```\n</pre><img src=x onerror=alert(1)>\n```",
    "~~~\n<img src=x onerror=alert(1)>\n",
    "    <img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt\\:alert(1))",
    "[click]: javascript:alert(1)\n\n[click]",
    "- [x]: javascript:alert(1)\n\n[x]",
    "<javascript:alert(1)>",
    "&lt;img src=x onerror=alert(1)&gt;",
    "[a](<javascript:alert(1)>)",
    "![i](x onerror=alert(1))",
    "<!-- --><img src=x onerror=alert(1)>",
    "<a href='javascript:alert(1)'>x</a>",
    "| a | b |\n|---|---|\n| <img src=x onerror=alert(1)> | `c` |",
    "> quote\n> <img src=x onerror=alert(1)>",
    "# <img src=x onerror=alert(1)>",
]


def _live_html(markdown: str) -> list[str]:
    """What in the rendered HTML could run script: unknown tags, handlers, script URLs."""
    parser = _LiveParts()
    parser.feed(MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown))
    return parser.found


def test_hostile_replies_render_without_live_html() -> None:
    for text in HOSTILE:
        assert _live_html(safe_markdown(text)) == [], text


def test_formatting_and_code_stay() -> None:
    text = (
        "**bold** and `a < b`\n\n```python\nif a < b:\n    print('<b>')\n```\n[doc](https://x.org)"
    )
    html = MarkdownIt("commonmark").render(safe_markdown(text))
    assert "<strong>bold</strong>" in html
    assert "<code>a &lt; b</code>" in html
    assert 'class="language-python"' in html and "if a &lt; b:" in html
    assert '<a href="https://x.org">doc</a>' in html


def test_helpers_cannot_be_closed_from_inside() -> None:
    nasty = "a ``` b ```` c <img src=x onerror=alert(1)>"
    for markdown in (inline_code(nasty), code_block(nasty), escape_text(nasty)):
        assert _live_html(markdown) == []
    html = MarkdownIt("commonmark").render(code_block("```\n<b>x</b>\n```"))
    assert html.count("<pre>") == 1 and "&lt;b&gt;" in html


_PIECES = st.sampled_from(
    ["<", ">", "&", "`", "``", "```", "~~~", "\n", " ", "    ", "\\", "[", "]", "(", ")", ":",
     "!", "#", "-", "|", "img", "script", " onerror=alert(1)", "javascript:", "x", "$", "*"]
)  # fmt: skip


@settings(max_examples=600, derandomize=True, deadline=None)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_no_generated_text_renders_live_html(text: str) -> None:
    assert _live_html(safe_markdown(text)) == []


class _Sink:
    def __init__(self) -> None:
        self.outputs: list[dict[str, str]] = []

    def display(self, data: dict[str, str], display_id: str | None = None) -> None:
        self.outputs.append(data)

    def update(self, data: dict[str, str], display_id: str) -> None:
        self.outputs.append(data)

    def stream(self, text: str) -> None:
        pass


def test_tool_output_and_description_cannot_leave_their_block() -> None:
    from shammah_kernel.events import ToolCall, ToolResult
    from shammah_kernel.tool_view import ToolCallView

    sink = _Sink()
    name = '<img src=x onerror="alert(1)">'
    description = "Run: echo\n\n<img src=x onerror=alert(1)>"
    view = ToolCallView(sink, ToolCall("c1", name, {}), description, plain=False)
    output = "````\n</code></pre></details><img src=x onerror=alert(1)>\n```\n[x](javascript:y)"
    view.add_output(output)
    view.finish(ToolResult("c1", output))
    markdown = sink.outputs[-1]["text/markdown"]
    assert _live_html(markdown) == []
    assert markdown.endswith("`````\n</details>")  # the output stayed inside its fence


def test_footer_and_notices_are_text() -> None:
    from shammah_kernel.events import GenerationStats, Notice, TurnFinished
    from shammah_kernel.renderer import ReplyRenderer

    sink = _Sink()
    renderer = ReplyRenderer(sink, plain=False)
    renderer.handle(Notice("<img src=x onerror=alert(1)> from a server's error"))
    stats = GenerationStats("<svg onload=alert(1)>", 1, 0, 1, 0.1, 0.1, "stop", adapter="<b>")
    renderer.handle(TurnFinished("", stats))
    for output in sink.outputs:
        assert _live_html(output["text/markdown"]) == [], output
