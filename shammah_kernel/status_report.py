"""The Markdown that `/status`, `/model status` and `/history` show."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .blas import find_openblas, openblas_loaded
from .events import EngineState, Turn
from .markup import escape_text, inline_code, safe_markdown

if TYPE_CHECKING:
    from .assistant import Assistant
    from .rule_store import StoredRule


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def blas_line() -> str:
    if openblas_loaded():
        return "system OpenBLAS preloaded (fast CPU path)"
    library = find_openblas()
    if library is None:
        return "MLX's bundled reference BLAS (slow; install libopenblas0-pthread for ~20x prefill)"
    return f"MLX's bundled reference BLAS ({library} is installed but was not preloaded)"


def _memory_line(active: int, peak: int) -> str:
    import psutil  # lazily: the kernel's start should not pay for it

    rss = psutil.Process(os.getpid()).memory_info().rss
    return f"MLX {_size(active)} active, {_size(peak)} peak; kernel process {_size(rss)}"


def _parameters(count: int) -> str:
    return f"{count / 1e6:.0f}M" if count >= 1e6 else f"{count / 1e3:.0f}K"


def model_status_markdown(assistant: Assistant) -> str:
    choice, answering, status = assistant.choice, assistant.answering, assistant.worker.status
    state = status.state.value
    if status.state is not EngineState.READY:
        state += f": {status.detail}"
    rows = [("model", escape_text(choice.name)), ("why", escape_text(choice.reason))]
    if answering != choice:
        rows.append(("answering", escape_text(f"{answering.name}: {answering.reason}")))
    rows.append(("state", escape_text(state)))
    if status.hint:
        rows.append(("what to do", escape_text(status.hint)))
    backend = assistant.worker.backend
    if backend is not None:
        on_disk = _size(_folder_bytes(backend.model_dir))
        rows += [
            ("folder", inline_code(str(backend.model_dir))),
            ("size", f"{_parameters(backend.parameter_count)} parameters, {on_disk} on disk"),
            ("device", f"{backend.device.upper()} (setting: {assistant.config.model.device})"),
            ("memory", _memory_line(*backend.memory_bytes())),
        ]
    rows.append(("BLAS", blas_line()))
    return _table(rows)


def model_cache_markdown() -> str:
    from .download import cached_models

    models = cached_models()
    if not models:
        return "*No models in the Hugging Face cache yet.* `/model select SIZE` downloads one."
    rows = "\n".join(
        f"| {_code_cell(m.repo_id)} | {_size(m.size_bytes)} | {_code_cell(str(m.path))} |"
        for m in models
    )
    return "| model | size | folder |\n|---|---|---|\n" + rows


def status_markdown(assistant: Assistant) -> str:
    o = assistant.session.options
    turns = assistant.session.conversation.turns
    status = assistant.worker.status
    config = inline_code(str(assistant.config_file))
    if not assistant.config_file.exists():
        config += " (not present: defaults)"
    claude = assistant.session.claude
    rows = [
        ("model", escape_text(f"{status.model} ({status.state.value})")),
        ("route", f"{assistant.session.route}; Claude: {claude.name if claude else 'no key set'}"),
        ("conversation", f"{len(turns)} turn(s)"),
        ("adapter", _adapter_line(assistant)),
        (
            "generation",
            f"max_tokens {o.max_tokens}, temperature {o.temperature}, top_p {o.top_p}, "
            f"context_length {o.context_length}",
        ),
        ("config", config),
        ("config problems", escape_text("; ".join(str(p) for p in assistant.problems) or "none")),
    ]
    return _table(rows) + "\n\nMore on the model: `/model status`; on training: `/train status`."


def _adapter_line(assistant: Assistant) -> str:
    learner = assistant.learner
    training = learner.refresh()
    line = inline_code(training.active) if training.active else "none (the base model answers)"
    if learner.attach_problem:
        line += f"; {escape_text(learner.attach_problem)}"
    if learner.running:
        line += f"; training {inline_code(training.adapter)} ({training.state.value})"
    return f"{line}; {assistant.collector.buffer_text()}"


def history_markdown(turns: Sequence[Turn]) -> str:
    if not turns:
        return "*The conversation is empty.*"
    parts = []
    for number, turn in enumerate(turns, 1):
        mark = " *(interrupted)*" if turn.interrupted else ""
        user, answer = safe_markdown(turn.user), safe_markdown(turn.assistant)
        parts.append(f"**[{number}] You:**\n\n{user}\n\n**Shammah{mark}:**\n\n{answer}")
    return "\n\n---\n\n".join(parts)


def _table(rows: Sequence[tuple[str, str]]) -> str:
    body = "\n".join(f"| {key} | {_cell(value)} |" for key, value in rows)
    return "| | |\n|---|---|\n" + body


def _code_cell(text: str) -> str:
    return _cell(inline_code(text))


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def patterns_markdown(rules: Sequence[StoredRule], problems: Sequence[object], path: Path) -> str:
    where = inline_code(str(path))
    lines = [f"Rules remembered in {where} (and a project's `.shammah/permissions.json`):", ""]
    if rules:
        lines += ["| id | kind | rule | file |", "|---|---|---|---|"]
        lines += [
            f"| `{r.id}` | {r.kind.value} | {_code_cell(str(r.rule))} "
            f"| {_code_cell(str(r.source))} |"
            for r in rules
        ]
    else:
        lines.append("*No remembered rules.* Approve a call with **Always** or use /patterns add.")
    lines += [f"\n**Problem:** {escape_text(str(p))}" for p in problems]
    return "\n".join(lines)
