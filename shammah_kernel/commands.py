"""Slash commands: parsing, dispatch, help and completion, shared by the kernel and the magics."""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CommandError
from .feedback import ALIASES, Rating, parse_feedback
from .learning_commands import ADAPTER_SUBCOMMANDS, TRAIN_SUBCOMMANDS, adapters, train
from .status_report import (
    history_markdown,
    model_cache_markdown,
    model_status_markdown,
    patterns_markdown,
    status_markdown,
)

if TYPE_CHECKING:
    from .assistant import Assistant


@dataclass(frozen=True, slots=True)
class CommandResult:
    markdown: str
    show_status: bool = False  # put the live status card (model and training) in the cell


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    usage: str
    summary: str
    run: Callable[[Assistant, list[str], str], CommandResult]
    subcommands: tuple[str, ...] = ()
    takes_path: bool = False


def _no_args(name: str, args: list[str]) -> None:
    if args:
        raise CommandError(f"/{name} takes no arguments (got {' '.join(args)!r})")


def _one_path(name: str, args: list[str]) -> Path:
    if len(args) != 1:
        raise CommandError(f"Usage: /{name} PATH (quote a path that contains spaces)")
    return Path(args[0]).expanduser()


def _help(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    _no_args("help", args)
    # A "|" splits a Markdown table cell even inside backticks: escape it.
    rows = "\n".join(
        "| `" + c.usage.replace("|", "\\|") + f"` | {c.summary} |" for c in COMMANDS.values()
    )
    return CommandResult(
        "**Shammah**: every cell is a message to the assistant; a cell whose first line starts "
        "with `/` is a command.\n\n| command | what it does |\n|---|---|\n" + rows
    )


def _reset(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    _no_args("reset", args)
    count = len(assistant.session.conversation.turns)
    assistant.session.reset()
    return CommandResult(f"Started a new conversation ({count} earlier turn(s) cleared).")


def _history(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    _no_args("history", args)
    return CommandResult(history_markdown(assistant.session.conversation.turns))


def _model(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    sub = args[0] if args else "status"
    if sub == "status":
        _no_args("model status", args[1:])
        return CommandResult(model_status_markdown(assistant))
    if sub == "cache":
        _no_args("model cache", args[1:])
        return CommandResult(model_cache_markdown())
    if sub == "select":
        if len(args) != 2:
            raise CommandError(
                "Usage: /model select SIZE|REPO (0.5B, 1.5B, 3B, 7B, 14B, a repo id, "
                "a local folder, or embedded)"
            )
        choice = assistant.select(args[1])
        waits = (
            " It loads once the training run has finished (or after /train cancel)."
            if assistant.learner.running
            else ""
        )
        return CommandResult(
            f"Switching to **{choice.name}**: fetching it in the background (see the status "
            f"above); the current model answers until it is loaded.{waits}"
        )
    choices = ", ".join(COMMANDS["model"].subcommands)
    raise CommandError(f"Unknown /model subcommand {sub!r}. Available: {choices}")


def _status(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    _no_args("status", args)
    return CommandResult(status_markdown(assistant))


def _claude_usage(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    # A /claude cell with a prompt is a turn, which the kernel runs; this is the bare command.
    raise CommandError("Usage: /claude PROMPT (the rest of the cell is the message)")


def claude_prompt(code: str) -> str | None:
    """The prompt of a `/claude PROMPT` cell (all text after the command), else None."""
    stripped = code.strip()
    if stripped != "/claude" and not stripped.startswith(("/claude ", "/claude\n")):
        return None
    return stripped[len("/claude") :].strip()


def _patterns(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    from .permissions import Decision, Rule

    store = assistant.rules
    sub, rest = (args[0], args[1:]) if args else ("list", [])
    if sub == "list":
        _no_args("patterns list", rest)
        return CommandResult(patterns_markdown(store.list(), store.problems(), store.path))
    if sub == "add":
        kind = Decision.ALLOW
        if rest and rest[0] in {d.value for d in Decision}:
            kind, rest = Decision(rest[0]), rest[1:]
        if not rest:
            raise CommandError("Usage: /patterns add [allow|ask|deny] RULE, e.g. Bash(pytest *)")
        stored = store.add(kind, Rule.parse(" ".join(rest)))
        return CommandResult(f"Remembered `{kind.value} {stored.rule}` (id `{stored.id}`).")
    if sub == "remove":
        if len(rest) != 1:
            raise CommandError("Usage: /patterns remove ID (the ids are in /patterns list)")
        if not store.remove(rest[0]):
            raise CommandError(f"No remembered rule has the id {rest[0]!r}; see /patterns list")
        return CommandResult(f"Removed rule `{rest[0]}`.")
    if sub == "clear":
        _no_args("patterns clear", rest)
        store.clear()
        return CommandResult(f"Cleared the remembered rules in `{store.path}`.")
    raise CommandError(f"Unknown /patterns subcommand {sub!r}. Available: list, add, remove, clear")


def _rate(rating: Rating) -> Callable[[Assistant, list[str], str], CommandResult]:
    def run(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
        return CommandResult(assistant.give_feedback(parse_feedback(rating, args, body)))

    return run


def _feedback(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    if not args or args[0] not in ALIASES:
        raise CommandError("Usage: /feedback high|medium|normal [note] (better answer below)")
    return _rate(ALIASES[args[0]])(assistant, args[1:], body)


def _train(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    return CommandResult(train(assistant, args), show_status=args[:1] != ["cancel"])


def _adapters(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    return CommandResult(adapters(assistant, args))


def _save(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    path = _one_path("save", args)
    conversation = assistant.session.conversation
    conversation.save(path, model=assistant.choice.name)
    return CommandResult(f"Saved {len(conversation.turns)} turn(s) to `{path}`.")


def _restore(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    path = _one_path("restore", args)
    count = assistant.session.conversation.restore(path)
    return CommandResult(f"Restored {count} turn(s) from `{path}`; the next cell continues them.")


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("help", "/help", "this list", _help),
        Command(
            "status", "/status", "the assistant's state: model, conversation, settings", _status
        ),
        Command("reset", "/reset", "start a new conversation", _reset),
        Command("history", "/history", "show the conversation so far", _history),
        Command(
            "model",
            "/model status | select SIZE|REPO | cache",
            "which model answers and why; switch models; list the cached models",
            _model,
            subcommands=("status", "select", "cache"),
        ),
        Command(
            "critical",
            "/critical [note]",
            "a strategy error, never do this (10x); the better answer goes on the next lines",
            _rate(Rating.CRITICAL),
        ),
        Command(
            "medium",
            "/medium [note]",
            "works, but prefer another approach (3x); the better answer goes on the next lines",
            _rate(Rating.MEDIUM),
        ),
        Command("good", "/good [note]", "remember this answer's pattern (1x)", _rate(Rating.GOOD)),
        Command(
            "feedback",
            "/feedback high|medium|normal [note]",
            "the same as /critical, /medium, /good",
            _feedback,
            subcommands=("high", "medium", "normal"),
        ),
        Command(
            "train",
            "/train | /train status | /train cancel",
            "train an adapter on the rated examples now, in the background; its progress; stop it",
            _train,
            subcommands=TRAIN_SUBCOMMANDS,
        ),
        Command(
            "adapters",
            "/adapters list | load NAME | unload | new NAME | export NAME PATH | import PATH "
            "| delete NAME",
            "the trained LoRA adapters: list, switch (no reload), start a new one, share them",
            _adapters,
            subcommands=ADAPTER_SUBCOMMANDS,
        ),
        Command(
            "patterns",
            "/patterns list | add RULE | remove ID | clear",
            "the remembered tool permission rules, e.g. Bash(pytest *)",
            _patterns,
            subcommands=("list", "add", "remove", "clear"),
        ),
        Command(
            "claude",
            "/claude PROMPT",
            "ask Claude this turn (needs an Anthropic key); the conversation carries over",
            _claude_usage,
        ),
        Command(
            "save", "/save PATH", "write the conversation to a JSON file", _save, takes_path=True
        ),
        Command(
            "restore",
            "/restore PATH",
            "load a conversation saved with /save",
            _restore,
            takes_path=True,
        ),
    )
}


def is_command(code: str) -> bool:
    return code.lstrip().startswith("/")


def run_command(assistant: Assistant, code: str) -> CommandResult:
    """Run the command on the cell's first line; raises CommandError for misuse."""
    first_line, _, body = code.strip().partition("\n")
    try:
        words = shlex.split(first_line[1:])
    except ValueError as e:
        raise CommandError(f"Could not parse {first_line!r}: {e}") from e
    if not words:
        raise CommandError("An empty command. Type /help for the list.")
    name, args = words[0], words[1:]
    command = COMMANDS.get(name)
    if command is None:
        close = difflib.get_close_matches(name, COMMANDS, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join('/' + c for c in close)}?" if close else ""
        raise CommandError(f"Unknown command /{name}.{hint} Type /help for the list.")
    return command.run(assistant, args, body)


def complete(code: str, cursor_pos: int) -> tuple[list[str], int, int]:
    """Completions for the word at the cursor: command names, subcommands, or paths."""
    line_start = code.rfind("\n", 0, cursor_pos) + 1
    line = code[line_start:cursor_pos]
    if line_start != 0 or not line.startswith("/"):
        return [], cursor_pos, cursor_pos
    words = line[1:].split(" ")
    word = words[-1]
    start = cursor_pos - len(word)
    if len(words) == 1:
        names = sorted(n for n in COMMANDS if n.startswith(word))
        return [f"/{n}" for n in names], start - 1, cursor_pos
    command = COMMANDS.get(words[0])
    if command is None or len(words) > 2:
        return [], cursor_pos, cursor_pos
    if command.takes_path:
        return _complete_path(word), start, cursor_pos
    return [s for s in command.subcommands if s.startswith(word)], start, cursor_pos


def _complete_path(prefix: str) -> list[str]:
    folder, _, stem = prefix.rpartition("/")
    base = Path(folder or ".").expanduser()
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return []
    head = f"{folder}/" if folder else ""
    return [
        head + entry.name + ("/" if entry.is_dir() else "")
        for entry in entries
        if entry.name.startswith(stem) and (stem.startswith(".") or not entry.name.startswith("."))
    ]
