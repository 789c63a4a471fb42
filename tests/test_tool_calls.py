"""Tests of reading Qwen2.5 tool calls out of replies, whole and streamed."""

from __future__ import annotations

import json

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shammah_kernel.events import ToolCall
from shammah_kernel.tool_calls import ParsedReply, ToolCallStreamFilter, parse_tool_calls


def block(body: str) -> str:
    return f"<tool_call>\n{body}\n</tool_call>"


def test_one_call_in_prose() -> None:
    call = json.dumps({"name": "Bash", "arguments": {"command": "pytest -q"}})
    reply = parse_tool_calls(f"Let me run the tests.\n{block(call)}\nDone.")
    assert reply.calls == [ToolCall("call_0", "Bash", {"command": "pytest -q"})]
    assert reply.text_without_calls == "Let me run the tests.\n\nDone."
    assert reply.problems == []


def test_several_calls_are_numbered_in_order() -> None:
    first = block('{"name": "Read", "arguments": {"path": "a.py"}}')
    second = block('{"name": "Glob", "arguments": {"pattern": "*.py"}}')
    reply = parse_tool_calls(first + second, first_id=3)
    assert [(c.id, c.name) for c in reply.calls] == [("call_3", "Read"), ("call_4", "Glob")]
    assert reply.text_without_calls == ""


def test_text_without_tags_is_untouched() -> None:
    text = "No tools: compare a < b and write <tool_call without the bracket."
    assert parse_tool_calls(text) == ParsedReply(text, [], [])


def test_call_without_closing_tag_at_the_end() -> None:
    reply = parse_tool_calls('Reading.\n<tool_call>\n{"name": "Read", "arguments": {"path": "x"}}')
    assert reply.calls == [ToolCall("call_0", "Read", {"path": "x"})]
    assert reply.text_without_calls == "Reading.\n"


def test_arguments_as_a_json_string_and_other_spellings() -> None:
    bodies = [
        '{"name": "Bash", "arguments": "{\\"command\\": \\"ls\\"}"}',
        '{"name": "Bash", "parameters": {"command": "ls"}, "id": 7}',
        '{"type": "function", "function": {"name": "Bash", "arguments": {"command": "ls"}}}',
        '```json\n{"name": "Bash", "arguments": {"command": "ls"}}\n```',
        '{"name": "Bash", "arguments": {"command": "ls"}}}',  # a stray brace
    ]
    for body in bodies:
        reply = parse_tool_calls(block(body))
        assert reply.calls == [ToolCall("call_0", "Bash", {"command": "ls"})], body
        assert reply.problems == []


def test_missing_arguments_mean_none() -> None:
    assert parse_tool_calls(block('{"name": "Glob"}')).calls == [ToolCall("call_0", "Glob", {})]
    reply = parse_tool_calls(block('{"name": "Glob", "arguments": null}'))
    assert reply.calls == [ToolCall("call_0", "Glob", {})]


def test_malformed_blocks_become_problems_the_model_can_fix() -> None:
    good = block('{"name": "Read", "arguments": {"path": "a"}}')
    cases = {
        '{"name": "Bash", "arguments": {"command": "ls"': "malformed",
        "": "empty",
        '["Bash"]': "got an array",
        '{"arguments": {}}': '"name"',
        '{"name": "Bash", "arguments": [1]}': "got an array",
        '{"name": "Bash", "arguments": "not json"}': "not a JSON object",
        '{"name": "Bash", "arguments": "[1]"}': "got an array",
        "[" * 100_000: "nested too deeply",
    }
    for body, expected in cases.items():
        reply = parse_tool_calls(block(body) + good)
        assert [c.name for c in reply.calls] == ["Read"], body
        assert reply.calls[0].id == "call_0"
        assert len(reply.problems) == 1
        assert reply.problems[0].startswith("Tool call 1 was not run")
        assert expected in reply.problems[0]
        assert "<tool_call>" in reply.problems[0]  # shows the expected format


def test_stream_filter_hides_calls_split_anywhere() -> None:
    text = 'Let me look.<tool_call>\n{"name": "Read", "arguments": {}}\n</tool_call> Found it <b>.'
    stream = ToolCallStreamFilter()
    shown = [stream.feed(char) for char in text]
    assert "".join(shown) + stream.finish() == "Let me look. Found it <b>."
    assert "{" not in "".join(shown)
    assert shown[text.index("<tool_call>") + 1] == ""  # "<" held back, not shown


def test_stream_filter_releases_a_held_back_tag_start_at_the_end() -> None:
    stream = ToolCallStreamFilter()
    assert stream.feed("a <tool_ca") == "a "
    assert stream.finish() == "<tool_ca"
    assert stream.feed("next") == "next"  # ready for another reply


def test_stream_filter_drops_an_unclosed_call() -> None:
    stream = ToolCallStreamFilter()
    assert stream.feed('ok<tool_call>{"name": "Read"') == "ok"
    assert stream.feed("}</tool_ca") == ""
    assert stream.finish() == ""


# Text rich in tag fragments, so that examples often hold tags, partial tags and nesting.
_PIECES = st.sampled_from(
    ["<tool_call>", "</tool_call>", "<", "</", "<tool_", "call>", "tool_call", '{"name": "Read"',
     ', "arguments": {"path": "x"}}', "\n", " ", "a", "é", '"', "}", "{"]
)  # fmt: skip
_TEXT = st.one_of(st.text(), st.lists(_PIECES, max_size=30).map("".join))


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_parse_never_raises_and_ids_are_sequential(text: str) -> None:
    reply = parse_tool_calls(text)
    assert [call.id for call in reply.calls] == [f"call_{i}" for i in range(len(reply.calls))]
    assert all(problem.startswith("Tool call ") for problem in reply.problems)
    assert len(reply.calls) + len(reply.problems) <= text.count("<tool_call>")


@settings(max_examples=300, deadline=None)
@given(_TEXT, st.lists(st.integers(min_value=0, max_value=200), max_size=10))
def test_stream_filter_output_is_the_text_without_calls(text: str, cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(cut % (len(text) + 1) for cut in cuts)})
    stream = ToolCallStreamFilter()
    shown = [stream.feed(text[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert "".join(shown) + stream.finish() == parse_tool_calls(text).text_without_calls


@settings(max_examples=100, deadline=None)
@given(
    st.text(alphabet=st.characters(exclude_characters="<"), max_size=20),
    st.lists(
        st.tuples(st.text(min_size=1, max_size=10), st.dictionaries(st.text(), st.text())),
        max_size=3,
    ),
)
def test_well_formed_calls_round_trip(prose: str, calls: list[tuple[str, dict[str, str]]]) -> None:
    text = prose + "".join(block(json.dumps({"name": n, "arguments": a})) for n, a in calls)
    assume("</tool_call>" not in text)
    reply = parse_tool_calls(text)
    expected = [(n.strip(), a) for n, a in calls if n.strip()]
    assert [(c.name, c.arguments) for c in reply.calls] == expected
    assert reply.text_without_calls == prose
