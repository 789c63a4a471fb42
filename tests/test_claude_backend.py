"""ClaudeBackend through the real anthropic SDK against the scripted Messages API server."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import anthropic
import pytest
from claude_server import Behavior, ClaudeServer, ScriptedReply, ToolUse, split_reply

from shammah_kernel.claude_backend import MALFORMED_INPUT, ClaudeBackend, resolve_api_key
from shammah_kernel.errors import ClaudeError
from shammah_kernel.events import GenerationOptions, Message, Role, ToolCall

KEY = "sk-ant-test-S3CRET-key-0123456789"
MODEL = "claude-test-model"
REPLY = "def add(a, b):\n    return a + b\n\nThat adds two numbers."
LONG_REPLY = " ".join(f"word{n}" for n in range(60))
QUESTION = [Message(Role.USER, "Write add.")]
READ_SCHEMA = {
    "type": "object",
    "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
    "required": ["path"],
}
TOOLS = [
    ("read_file", "Read a text file.", READ_SCHEMA),
    ("list_files", "List the project's files.", {"type": "object", "properties": {}}),
]
READ = ToolUse("read_file", {"path": "src/app.py", "limit": 40, "note": 'naïve "quoted"'})


@pytest.fixture
def server() -> Iterator[ClaudeServer]:
    with ClaudeServer(reply=REPLY) as running:
        yield running


def backend_for(server: ClaudeServer, **kwargs: float) -> ClaudeBackend:
    return ClaudeBackend(KEY, model=MODEL, base_url=server.url, **kwargs)  # type: ignore[arg-type]


def failure(server: ClaudeServer, behavior: Behavior, **kwargs: float) -> ClaudeError:
    server.queue(behavior)
    with pytest.raises(ClaudeError) as caught:
        backend_for(server, **kwargs).generate(QUESTION, GenerationOptions())
    return caught.value


def test_streamed_deltas_concatenate_to_the_reply(server: ClaudeServer) -> None:
    deltas: list[str] = []
    reply = backend_for(server).generate(QUESTION, GenerationOptions(), on_text=deltas.append)
    assert deltas == split_reply(REPLY)
    assert reply.text == "".join(deltas) == REPLY
    assert not reply.interrupted
    stats = reply.stats
    assert stats.model == f"Claude ({MODEL})"
    assert stats.prompt_tokens > 0 and stats.reused_tokens == 0
    assert stats.generated_tokens == len(deltas)
    assert stats.finish_reason == "stop"
    assert stats.prompt_seconds >= 0 and stats.generation_seconds >= 0


def test_system_prompt_turns_and_model_are_sent(server: ClaudeServer) -> None:
    messages = [
        Message(Role.SYSTEM, "You are Shammah."),
        Message(Role.USER, "Hi"),
        Message(Role.ASSISTANT, "Hello!"),
        Message(Role.USER, "Write add."),
    ]
    backend = backend_for(server)
    backend.generate(messages, GenerationOptions(max_tokens=77, temperature=0.0))
    (request,) = server.requests
    assert request.path.startswith("/v1/messages")
    assert request.api_key == KEY
    body = request.body
    assert body["model"] == MODEL and body["stream"] is True and body["max_tokens"] == 77
    assert body["system"] == "You are Shammah."
    assert body["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Write add."},
    ]
    # anthropic 2.x dropped sampling parameters; current models reject them
    assert "temperature" not in body and "top_p" not in body
    assert backend.name == f"Claude ({MODEL})"


def test_without_a_system_message_no_system_is_sent(server: ClaudeServer) -> None:
    backend_for(server).generate(QUESTION, GenerationOptions())
    assert "system" not in server.requests[0].body


def test_base_url_none_honours_anthropic_base_url(
    server: ClaudeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    backend = ClaudeBackend(KEY, model=MODEL)
    assert backend.base_url == server.url
    assert backend.generate(QUESTION, GenerationOptions()).text == REPLY
    assert len(server.requests) == 1


def test_resolve_api_key_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    assert resolve_api_key("") == ""
    assert resolve_api_key(" from-config ") == "from-config"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "")
    assert resolve_api_key("from-config") == "from-config"
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")
    assert resolve_api_key("from-config") == "from-env"
    assert resolve_api_key("") == "from-env"


def test_an_empty_key_is_refused_before_any_request() -> None:
    with pytest.raises(ClaudeError, match="no Claude API key: check ANTHROPIC_API_KEY"):
        ClaudeBackend("", model=MODEL)


@pytest.mark.parametrize(
    ("status", "expected", "retryable"),
    [
        (
            401,
            "Claude rejected the API key (401): check ANTHROPIC_API_KEY or api_key in config.toml",
            False,
        ),
        (403, f"Claude refused access (403): this API key may not use '{MODEL}'", False),
        (404, f"Claude has no model '{MODEL}' (404): check claude_model in config.toml", False),
        (429, "Claude's rate limit was reached (429): wait a moment and try again", True),
        (500, "Claude had a server error (500 api_error): try again", True),
        (529, "Claude is overloaded (529): try again in a moment", True),
    ],
)
def test_http_errors_map_to_short_claude_errors(
    server: ClaudeServer, status: int, expected: str, retryable: bool
) -> None:
    error = failure(server, Behavior(status=status))
    assert str(error) == expected
    assert error.retryable is retryable
    assert len(server.requests) == 1  # max_retries=0: no hidden SDK retries


def test_a_bad_request_shows_the_server_reason_without_the_key(server: ClaudeServer) -> None:
    error = failure(server, Behavior(status=400, error_message=f"prompt is too long; key {KEY}"))
    assert str(error).startswith("Claude refused the request (400 invalid_request_error): prompt")
    assert KEY not in str(error) and "***" in str(error)
    assert not error.retryable


def test_an_error_event_mid_stream_is_retryable(server: ClaudeServer) -> None:
    server.queue(Behavior(error_after=2))
    deltas: list[str] = []
    with pytest.raises(ClaudeError) as caught:
        backend_for(server).generate(QUESTION, GenerationOptions(), on_text=deltas.append)
    assert str(caught.value) == (
        "Claude is overloaded (529): try again in a moment; the reply broke off midway"
    )
    assert caught.value.retryable
    assert deltas == split_reply(REPLY)[:2]


def test_a_slow_server_maps_to_a_timeout(server: ClaudeServer) -> None:
    error = failure(server, Behavior(delay=5.0), timeout=0.5)
    assert str(error) == "Claude did not answer within 0.5 s (timeout): try again"
    assert error.retryable


def test_a_stall_mid_stream_maps_to_a_timeout(server: ClaudeServer) -> None:
    error = failure(server, Behavior(drip=5.0), timeout=0.5)
    assert "(timeout)" in str(error) and error.retryable


def test_an_unreachable_server_says_offline() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = ClaudeBackend(KEY, model=MODEL, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ClaudeError) as caught:
        backend.generate(QUESTION, GenerationOptions())
    assert str(caught.value) == f"cannot reach Claude at http://127.0.0.1:{port}: offline?"
    assert caught.value.retryable


def test_should_stop_ends_a_slow_drip_early(server: ClaudeServer) -> None:
    server.reply = LONG_REPLY
    server.queue(Behavior(drip=0.05))
    deltas: list[str] = []
    reply = backend_for(server).generate(
        QUESTION, GenerationOptions(), on_text=deltas.append, should_stop=lambda: len(deltas) >= 3
    )
    assert reply.interrupted
    assert reply.text == "".join(split_reply(LONG_REPLY)[:3]) == "".join(deltas)
    assert reply.stats.finish_reason == "interrupted"


def test_sdk_retries_when_asked(server: ClaudeServer) -> None:
    server.queue(Behavior(status=529))
    reply = backend_for(server, max_retries=1).generate(QUESTION, GenerationOptions())
    assert reply.text == REPLY
    assert len(server.requests) == 2


def test_the_scripted_server_answers_without_streaming(server: ClaudeServer) -> None:
    client = anthropic.Anthropic(api_key=KEY, base_url=server.url, max_retries=0)
    message = client.messages.create(
        model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
    )
    assert message.content[0].type == "text" and message.content[0].text == REPLY
    assert message.stop_reason == "end_turn"


def test_the_key_never_shows_in_errors_reprs_or_logs(
    server: ClaudeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    behaviors = [Behavior(status=s) for s in (400, 401, 403, 404, 429, 500, 529)]
    behaviors += [Behavior(error_after=1), Behavior(delay=5.0)]
    errors = [failure(server, b, timeout=0.5) for b in behaviors]
    backend = backend_for(server)
    backend.generate(QUESTION, GenerationOptions())
    shown = [str(backend), repr(backend)]
    shown += [text for e in errors for text in (str(e), repr(e), repr(e.args), repr(vars(e)))]
    assert all(KEY not in text for text in shown)
    assert all(e.__cause__ is None and e.__suppress_context__ for e in errors)
    assert "anthropic" in caplog.text  # the SDK did log at DEBUG
    assert KEY not in caplog.text


def test_a_tool_use_reply_becomes_tool_calls(server: ClaudeServer) -> None:
    server.reply = ScriptedReply("Let me look at the file. ", (READ, ToolUse("list_files")))
    assert len(READ.json_pieces()) > 5  # the input arrives in many partial_json pieces
    deltas: list[str] = []
    reply = backend_for(server).generate(
        QUESTION, GenerationOptions(), tools=TOOLS, on_text=deltas.append
    )
    assert deltas == split_reply("Let me look at the file. ")
    assert reply.text == "Let me look at the file. "
    assert reply.tool_calls == (
        ToolCall("toolu_scripted_0", "read_file", READ.input),
        ToolCall("toolu_scripted_1", "list_files", {}),
    )
    assert reply.stats.finish_reason == "tool_calls" and not reply.interrupted


def test_tools_are_sent_with_their_input_schema(server: ClaudeServer) -> None:
    backend = backend_for(server)
    backend.generate(QUESTION, GenerationOptions(), tools=TOOLS)
    backend.generate(QUESTION, GenerationOptions())
    with_tools, without = (request.body for request in server.requests)
    assert with_tools["tools"] == [
        {"name": "read_file", "description": "Read a text file.", "input_schema": READ_SCHEMA},
        {
            "name": "list_files",
            "description": "List the project's files.",
            "input_schema": {"type": "object", "properties": {}},
        },
    ]
    assert "tools" not in without


def test_tool_calls_and_results_are_sent_as_the_api_requires(server: ClaudeServer) -> None:
    read = ToolCall("toolu_1", "read_file", {"path": "src/app.py"})
    listing = ToolCall("toolu_2", "list_files", {})
    broken = ToolCall("toolu_3", "read_file", {MALFORMED_INPUT: '{"path": '})
    messages = [
        Message(Role.SYSTEM, "You are Shammah."),
        Message(Role.USER, "What does app.py do?"),
        Message(Role.ASSISTANT, "Let me look.", tool_calls=(read, listing)),
        Message(Role.TOOL, "print('hi')", tool_call_id="toolu_1"),
        Message(Role.TOOL, "denied: not now", tool_call_id="toolu_2", is_error=True),
        Message(Role.ASSISTANT, "  \n", tool_calls=(broken,)),
        Message(Role.TOOL, "", tool_call_id="toolu_3", is_error=True),
        Message(Role.USER, "Go on."),
    ]
    backend_for(server).generate(messages, GenerationOptions(), tools=TOOLS)
    body = server.requests[0].body
    assert body["system"] == "You are Shammah."
    assert body["messages"] == [
        {"role": "user", "content": "What does app.py do?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": read.arguments},
                {"type": "tool_use", "id": "toolu_2", "name": "list_files", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "print('hi')",
                    "is_error": False,
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "denied: not now",
                    "is_error": True,
                },
            ],
        },
        {  # a whitespace-only text block would be refused: only the call goes
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_3",
                    "name": "read_file",
                    "input": {MALFORMED_INPUT: '{"path": '},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_3",
                    "content": "(no output)",  # empty content is refused when is_error
                    "is_error": True,
                }
            ],
        },
        {"role": "user", "content": "Go on."},  # the API joins consecutive user turns
    ]


def test_malformed_tool_input_is_kept_raw(server: ClaudeServer) -> None:
    truncated = '{"path": "src/app.py", "lim'
    server.reply = ScriptedReply(
        tool_uses=(
            ToolUse("read_file", raw_json=truncated),
            ToolUse("read_file", raw_json="[1, 2]"),  # valid JSON, but not an object
            READ,
        ),
        stop_reason="max_tokens",
    )
    reply = backend_for(server).generate(QUESTION, GenerationOptions(), tools=TOOLS)
    assert reply.text == ""
    assert reply.tool_calls == (
        ToolCall("toolu_scripted_0", "read_file", {MALFORMED_INPUT: truncated}),
        ToolCall("toolu_scripted_1", "read_file", {MALFORMED_INPUT: "[1, 2]"}),
        ToolCall("toolu_scripted_2", "read_file", READ.input),
    )
    assert reply.stats.finish_reason == "length"


def test_an_interrupt_keeps_only_the_tool_calls_that_ended(server: ClaudeServer) -> None:
    server.reply = ScriptedReply(tool_uses=(READ, ToolUse("list_files", {"depth": 2})))
    # message_start, then READ's start, pieces and stop, then the next block's start and a piece
    stop_at = 1 + 1 + len(READ.json_pieces()) + 1 + 2
    events = 0

    def should_stop() -> bool:
        nonlocal events
        events += 1
        return events >= stop_at

    reply = backend_for(server).generate(
        QUESTION, GenerationOptions(), tools=TOOLS, should_stop=should_stop
    )
    assert reply.interrupted and reply.stats.finish_reason == "interrupted"
    assert reply.tool_calls == (ToolCall("toolu_scripted_0", "read_file", READ.input),)


def test_the_scripted_server_answers_tool_use_without_streaming(server: ClaudeServer) -> None:
    server.reply = ScriptedReply("Reading.", (READ,))
    client = anthropic.Anthropic(api_key=KEY, base_url=server.url, max_retries=0)
    message = client.messages.create(
        model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "Hi"}]
    )
    text, tool_use = message.content
    assert text.type == "text" and text.text == "Reading."
    assert tool_use.type == "tool_use" and tool_use.id == "toolu_scripted_0"
    assert tool_use.name == "read_file" and tool_use.input == READ.input
    assert message.stop_reason == "tool_use"
