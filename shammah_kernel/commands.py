"""Slash commands: parsing, dispatch, help and completion, shared by the kernel and the magics."""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CommandError
from .feedback import ALIASES, Rating, parse_feedback
from .learning_commands import ADAPTER_SUBCOMMANDS, TRAIN_SUBCOMMANDS, adapters, train
from .markup import escape_text, inline_code
from .status_report import (
    history_markdown,
    model_cache_markdown,
    model_status_markdown,
    patterns_markdown,
    status_markdown,
)

if TYPE_CHECKING:
    from .assistant import Assistant
    from .rule_store import RuleStore


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
    return user_path(args[0])


def user_path(text: str) -> Path:
    """A path the user typed, `~` expanded; one clear line for `~nosuchuser` or a NUL byte."""
    if "\0" in text:
        raise CommandError("A path cannot contain a NUL byte.")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # Path.expanduser: the user of `~name` does not exist
        raise CommandError(f"No such user in {text!r}: write the path in full.") from None


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
            f"Switching to **{escape_text(choice.name)}**: fetching it in the background (see "
            f"the status above); the current model answers until it is loaded.{waits}"
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

    sub, rest = (args[0], args[1:]) if args else ("list", [])
    if sub not in COMMANDS["patterns"].subcommands:
        choices = ", ".join(COMMANDS["patterns"].subcommands)
        raise CommandError(f"Unknown /patterns subcommand {sub!r}. Available: {choices}")
    if sub in ("list", "clear") or (sub == "trust" and len(rest) > 1):
        _no_args(f"patterns {sub}", rest)
    store = assistant.rules
    if sub == "list":
        listing = patterns_markdown(store.list(), store.problems(), store.path)
        return CommandResult(listing + _project_state(store))
    if sub == "add":
        kind = Decision.ALLOW
        if rest and rest[0] in {d.value for d in Decision}:
            kind, rest = Decision(rest[0]), rest[1:]
        if not rest:
            raise CommandError("Usage: /patterns add [allow|ask|deny] RULE, e.g. Bash(pytest *)")
        stored = store.add(kind, Rule.parse(" ".join(rest)))
        remembered = inline_code(f"{kind.value} {stored.rule}")
        return CommandResult(f"Remembered {remembered} (id {inline_code(stored.id)}).")
    if sub == "remove":
        if len(rest) != 1:
            raise CommandError("Usage: /patterns remove ID (the ids are in /patterns list)")
        if not store.remove(rest[0]):
            raise CommandError(f"No remembered rule has the id {rest[0]!r}; see /patterns list")
        return CommandResult(f"Removed rule {inline_code(rest[0])}.")
    if sub == "trust":
        return CommandResult(_trust(store, rest[0] if rest else None))
    store.clear()
    return CommandResult(_cleared(store, untrusted=store.forget_trust()))


def _rule_items(rules: Sequence[object]) -> str:
    return "\n".join(f"- {inline_code(str(rule))}" for rule in rules)


def _project_state(store: RuleStore) -> str:
    """How the workspace's own rule file is handled: its allow rules only count once trusted."""
    project = store.project()
    if project is None:
        return ""
    where = inline_code(str(project.file.path))
    allows = [stored.rule for stored in project.file.allows]
    if not allows:
        return f"\n\n**Project rules** in {where}: deny and ask rules only, in force."
    if project.trusted:
        return (
            f"\n\n**Project rules** in {where}: trusted as they are now, so its allow rules "
            "count; a change to the file makes them untrusted again."
        )
    return (
        f"\n\n**Project rules** in {where}: untrusted: its {len(allows)} allow rules are "
        "ignored until `/patterns trust` (its deny and ask rules apply):\n\n" + _rule_items(allows)
    )


def _trust(store: RuleStore, code: str | None) -> str:
    project = store.trust(code)
    where = inline_code(str(project.file.path))
    allows = [stored.rule for stored in project.file.allows]
    if not allows:
        return f"{where} has no allow rules: nothing to trust (its deny and ask rules apply)."
    if not project.trusted:
        confirm = inline_code(f"/patterns trust {store.trust_code(project.file.digest)}")
        return (
            f"{where} asks to allow:\n\n{_rule_items(allows)}\n\n"
            f"To trust exactly these rules, run {confirm} in a new cell (the code is this "
            "session's own, so a notebook shipped with the project cannot trust them for you)."
        )
    return (
        f"The allow rules of {where}, now in force:\n\n{_rule_items(allows)}\n\n"
        f"Trusted this content (SHA-256 {inline_code(project.file.digest[:12])}); any change "
        "to the file makes it untrusted again, and `/patterns clear` forgets the trust."
    )


def _cleared(store: RuleStore, *, untrusted: bool) -> str:
    text = f"Cleared the remembered rules in {inline_code(str(store.path))}."
    project = store.project()
    if project is None:
        return text
    where = inline_code(str(project.file.path))
    trust = " and is no longer trusted, so its allow rules are ignored" if untrusted else ""
    return (
        f"{text} The project rule file {where} is not yours to clear here: it comes with the "
        f"workspace{trust}. Its deny and ask rules still apply, and its allow rules only count "
        "after `/patterns trust`. Edit or delete that file to change them."
    )


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
    return CommandResult(f"Saved {len(conversation.turns)} turn(s) to {inline_code(str(path))}.")


def _restore(assistant: Assistant, args: list[str], body: str = "") -> CommandResult:
    path = _one_path("restore", args)
    count = assistant.session.conversation.restore(path)
    where = inline_code(str(path))
    return CommandResult(f"Restored {count} turn(s) from {where}; the next cell continues them.")


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
            "/patterns list | add RULE | remove ID | trust [CODE] | clear",
            "the remembered tool permission rules, e.g. Bash(pytest *); trust the project's own",
            _patterns,
            subcommands=("list", "add", "remove", "trust", "clear"),
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
