"""`/train` and `/adapters`: what they do and the Markdown they answer with."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import CommandError
from .events import TrainingState

if TYPE_CHECKING:
    from .adapter_library import AdapterInfo
    from .assistant import Assistant

TRAIN_SUBCOMMANDS = ("status", "cancel")
ADAPTER_SUBCOMMANDS = ("list", "load", "unload", "new", "export", "import", "delete")


def train(assistant: Assistant, args: list[str]) -> str:
    learner = assistant.learner
    sub = args[0] if args else ""
    if len(args) > 1 or sub not in ("", *TRAIN_SUBCOMMANDS):
        raise CommandError("Usage: /train | /train status | /train cancel")
    if sub == "status":
        return train_status(assistant)
    if sub == "cancel":
        if not learner.cancel():
            raise CommandError("No training is running.")
        return (
            "Stopping the training after its current step; the adapter in use stays in use and "
            "nothing of this run is kept."
        )
    name = learner.train()
    status = learner.status
    waiting = "" if assistant.worker.answering else " It starts once the model is loaded."
    return (
        f"Training adapter `{name}` on {status.examples} example(s) in the background.{waiting} "
        "Chat keeps working meanwhile (a turn runs between two training steps); the new adapter "
        "answers as soon as it is done. `/train status` shows the progress, `/train cancel` "
        "stops it."
    )


def train_status(assistant: Assistant) -> str:
    from .widgets.status import training_text

    status = assistant.learner.refresh()
    # training_text's last line is the run; the adapter and buffer are said in full below
    idle = status.state is TrainingState.IDLE
    lines = [] if idle else [training_text(status).splitlines()[-1]]
    active = status.active
    base = "No adapter: the base model answers."
    lines.append(f"Adapter answering: `{active}`." if active else base)
    lines.append(assistant.learner.attach_problem)
    lines.append(assistant.collector.buffer_text())
    return "\n\n".join(line for line in lines if line)


def adapters(assistant: Assistant, args: list[str]) -> str:
    sub, rest = (args[0], args[1:]) if args else ("list", [])
    learner, library = assistant.learner, assistant.learner.library
    if sub == "list":
        _arity("list", rest, 0)
        return adapters_markdown(assistant)
    if sub == "load":
        (name,) = _arity("load NAME", rest, 1)
        base = learner.use(name)
        return f"Adapter `{name}` answers now on {base} (applied without reloading the model)."
    if sub == "unload":
        _arity("unload", rest, 0)
        base = learner.use(None)
        return f"No adapter: the base model {base} answers. `/adapters load NAME` brings one back."
    if sub == "new":
        (name,) = _arity("new NAME", rest, 1)
        learner.start_new(name)
        return (
            f"The next training run makes adapter `{name}`, from the examples not yet trained "
            "on; until then the base model answers."
        )
    if sub == "export":
        name, path = _arity("export NAME PATH", rest, 2)
        from .commands import user_path  # commands imports this module: not at its top

        target = library.export(name, user_path(path))
        return f"Exported adapter `{name}` to `{target}` (mlx-lm's format plus shammah.json)."
    if sub == "import":
        (path,) = _arity("import PATH", rest, 1)
        from .commands import user_path

        name = library.import_(user_path(path))
        info = library.info(name)
        note = ""
        if info.base_model != learner.base_model():
            note = f" It was trained on {info.base_model}, not on the model answering now."
        return f"Imported adapter `{name}`; `/adapters load {name}` applies it.{note}"
    if sub == "delete":
        (name,) = _arity("delete NAME", rest, 1)
        if name == learner.status.active:
            learner.use(None)
        if learner.running and name == learner.status.adapter:
            raise CommandError(f"Adapter `{name}` is being trained: /train cancel first.")
        library.delete(name)
        released = assistant.store().release(name)
        return (
            f"Deleted adapter `{name}`; its {released} example(s) are back in the training buffer."
        )
    choices = ", ".join(ADAPTER_SUBCOMMANDS)
    raise CommandError(f"Unknown /adapters subcommand {sub!r}. Available: {choices}")


def _arity(usage: str, args: list[str], count: int) -> list[str]:
    if len(args) != count:
        raise CommandError(f"Usage: /adapters {usage} (quote a path that contains spaces)")
    return args


def adapters_markdown(assistant: Assistant) -> str:
    learner = assistant.learner
    infos = learner.library.list()
    active = learner.refresh().active
    current = learner.library.current(learner.base_model())
    if not infos:
        text = "No adapters yet: rate answers, then `/train` (or wait for automatic training)."
        if current:
            text += f" The next run makes `{current}`."
        return text
    rows = "\n".join(_row(info, active, current) for info in infos)
    return (
        "| adapter | state | base model | examples | loss (val) | trained | size |\n"
        "|---|---|---|---|---|---|---|\n" + rows + f"\n\nFolder: `{learner.library.root}`"
    )


def _row(info: AdapterInfo, active: str, current: str | None) -> str:
    state = "damaged: " + info.problem if info.problem else ""
    if info.name == active:
        state = "**answering**"
    elif info.name == current:
        state = state or "next run trains it"
    loss = "" if info.train_loss is None else f"{info.train_loss:.3f}"
    if info.val_loss is not None:
        loss += f" ({info.val_loss:.3f})"
    seconds = "" if info.seconds is None else f", {info.seconds:.0f}s"
    size = f"{info.size_bytes / 1e6:.1f} MB"
    return (
        f"| `{info.name}` | {state} | {info.base_model} | {info.examples} | {loss} | "
        f"{info.created_at}{seconds} | {size} |"
    )
