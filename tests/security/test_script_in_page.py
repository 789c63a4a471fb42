"""No script from a reply, a tool result or a rule text runs in JupyterLab (a live session's
outputs are trusted there, so raw HTML in them would run as the user)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from claude_server import ClaudeServer, ScriptedReply, ToolUse
from conftest import write_config
from lab_harness import (
    SHAMMAH,
    browser_test,
    expect,
    lab_page,
    notebooks,
    run_cell,
    shot,
    wait_done,
    wait_for_kernel,
    write_notebook,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

# Each payload marks the page if any of it runs: a flag on window, and the title.
RUN = "window.shammahPwned=(window.shammahPwned||0)+1;document.title='PWNED'"
PAYLOADS = [
    f'<img src=x onerror="{RUN}">',
    f'<svg onload="{RUN}"></svg>',
    f'<details open ontoggle="{RUN}"><summary>x</summary></details>',
    f"<script>{RUN}</script>",
    f'<iframe srcdoc="<script>parent.{RUN}</script>"></iframe>',
    f'`x` <img src=x onerror="{RUN}"> `y`',
    f'\\`<img src=x onerror="{RUN}">`',
    f'```\n</pre><img src=x onerror="{RUN}">\n```',
    f"[click me](javascript:{RUN})",
    "$\\href{javascript:window.shammahPwned=1}{math link}$",
    f'| a | b |\n|---|---|\n| <img src=x onerror="{RUN}"> | c |',
    f'~~~\n<img src=x onerror="{RUN}">',  # an unclosed fence: code to the end
]
REPLY = "**Bold stays** and `code < stays`:\n\n" + "\n\n".join(PAYLOADS)
OUTPUT = f'<img src=x onerror="{RUN}">'
TOOL_ANSWER = "The tool printed:"
PAYLOAD_FILE = "payload.html"


def hostile_claude(body: dict[str, Any]) -> ScriptedReply:
    """A prompt-injected Claude: HTML in its reply, a tool that prints HTML, then quotes it."""
    last = body["messages"][-1]["content"]
    if isinstance(last, list) and last and last[0].get("type") == "tool_result":
        return ScriptedReply(text=f"{TOOL_ANSWER}\n\n{last[0]['content']}")
    if "print" in str(last):  # the file holds the HTML: a line the gate reads whole, allowed
        tool_use = ToolUse("Bash", {"command": f"cat {PAYLOAD_FILE}"})
        return ScriptedReply(text="Running it.", tool_uses=(tool_use,))
    return ScriptedReply(text=REPLY)


@pytest.fixture
def claude(
    shammah_home: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[ClaudeServer]:
    with ClaudeServer(reply=hostile_claude) as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        write_config(shammah_home, f'[model]\nid = "{tiny_model}"\nroute = "claude"\n')
        (notebooks(tmp_path) / PAYLOAD_FILE).write_text(OUTPUT + "\n")
        rules = {"allow": [f"Bash(cat {PAYLOAD_FILE})", f'Bash(echo "<img src=x onerror={RUN}>")']}
        (shammah_home / "permissions.json").write_text(json.dumps(rules))
        yield server


# Every element under an output: its attributes that could run script, and script-like tags.
LIVE_PARTS = """() => {
  const found = [];
  for (const el of document.querySelectorAll('.jp-OutputArea *')) {
    if (['SCRIPT', 'IFRAME', 'OBJECT', 'EMBED'].includes(el.tagName)) found.push(el.tagName);
    for (const a of el.attributes) {
      const value = a.value.replace(/\\s/g, '').toLowerCase();
      if (a.name.startsWith('on') || value.startsWith('javascript:')) found.push(a.name);
    }
  }
  return found;
}"""


def assert_no_script_ran(page: Page) -> None:
    assert page.evaluate("window.shammahPwned") is None
    assert "PWNED" not in page.title()
    assert page.evaluate(LIVE_PARTS) == []


@browser_test()
def test_no_script_from_a_reply_a_tool_result_or_a_rule_runs(
    claude: ClaudeServer, tmp_path: Path
) -> None:
    cells = ["Tell me about HTML.", "Please print something.", "/patterns list"]
    with lab_page(tmp_path, write_notebook(tmp_path, "hostile.ipynb", cells, SHAMMAH)) as page:
        wait_for_kernel(page, "Shammah")

        reply = run_cell(page, 0)
        wait_done(reply)
        expect(reply.locator(".jp-RenderedMarkdown strong", has_text="Bold stays")).to_be_visible()
        expect(reply.locator(".jp-RenderedMarkdown code", has_text="code < stays")).to_be_visible()
        expect(reply.locator(".jp-RenderedMarkdown", has_text="onerror").first).to_be_visible()
        expect(reply.locator("mjx-container").first).to_be_visible()  # MathJax has typeset
        shot(page, "security-hostile-reply", reply)

        tool = run_cell(page, 1)
        wait_done(tool)
        expect(tool.locator(".jp-RenderedMarkdown p", has_text=TOOL_ANSWER)).to_be_visible()
        block = tool.locator(".jp-RenderedMarkdown details")
        block.locator("summary").first.click()
        expect(block.locator("pre").first).to_contain_text("onerror")
        shot(page, "security-hostile-tool-output", tool)

        rules = run_cell(page, 2)
        wait_done(rules)
        expect(
            rules.locator(".jp-RenderedMarkdown code", has_text=re.compile("onerror"))
        ).to_be_visible()
        shot(page, "security-hostile-rule", rules)
        assert_no_script_ran(page)
