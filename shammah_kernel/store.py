"""The example store: weighted training examples in SQLite (`examples.db` in the Shammah home).

Append-only named migrations, WAL, and a commit per write, so an example reported as saved
survives the kernel being killed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .events import Message, Role

MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_examples",
        """
        CREATE TABLE examples (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            messages TEXT NOT NULL,      -- JSON [{role, content}]: the context the model saw
            answer TEXT NOT NULL,        -- the answer to learn
            rejected TEXT,               -- the answer it replaces, if any
            weight REAL NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            source TEXT NOT NULL,        -- claude-sample, ...
            adapter TEXT                 -- the adapter that trained on it, once one has
        )
        """,
    ),
)


@dataclass(frozen=True, slots=True)
class Example:
    id: int
    created_at: str
    messages: tuple[Message, ...]
    answer: str
    rejected: str | None
    weight: float
    note: str
    source: str
    adapter: str | None


class ExampleStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()  # one connection, shared by the kernel and its threads
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT)"
            )
            done = {row[0] for row in self._db.execute("SELECT name FROM migrations")}
            for name, sql in MIGRATIONS:
                if name in done:
                    continue
                self._db.execute("BEGIN")
                self._db.execute(sql)
                self._db.execute("INSERT INTO migrations VALUES (?, ?)", (name, _now()))
                self._db.execute("COMMIT")

    def add(
        self,
        messages: Sequence[Message],
        answer: str,
        *,
        source: str,
        weight: float = 1.0,
        note: str = "",
        rejected: str | None = None,
    ) -> int:
        context = json.dumps([{"role": m.role.value, "content": m.content} for m in messages])
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO examples (created_at, messages, answer, rejected, weight, note,"
                " source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_now(), context, answer, rejected, weight, note, source),
            )
        return int(cursor.lastrowid or 0)

    def delete(self, example_id: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM examples WHERE id = ?", (example_id,))

    def for_adapter(self, adapter: str) -> list[Example]:
        """What a training run for ``adapter`` learns: the buffer and what it trained on before."""
        return self._select("WHERE adapter IS NULL OR adapter = ?", (adapter,))

    def mark_trained(self, example_ids: Sequence[int], adapter: str) -> None:
        """Record that ``adapter`` trained on these examples: they leave the buffer."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE examples SET adapter = ? WHERE id = ?", [(adapter, i) for i in example_ids]
            )
            self._db.execute("COMMIT")

    def release(self, adapter: str) -> int:
        """Put the examples ``adapter`` trained on back in the buffer (it was deleted)."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE examples SET adapter = NULL WHERE adapter = ?", (adapter,)
            )
        return cursor.rowcount

    def untrained_count(self) -> int:
        """Examples no adapter has trained on yet: the training buffer."""
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM examples WHERE adapter IS NULL").fetchone()
        return int(row[0])

    def export_jsonl(self, path: Path) -> int:
        """The examples in mlx-lm's chat JSONL, each with its weight; returns how many."""
        examples = self.examples()
        lines = []
        for example in examples:
            chat = [{"role": m.role.value, "content": m.content} for m in example.messages]
            chat.append({"role": "assistant", "content": example.answer})
            lines.append(json.dumps({"messages": chat, "weight": example.weight}))
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return len(examples)

    def examples(self) -> list[Example]:
        return self._select()

    def _select(self, where: str = "", parameters: tuple[object, ...] = ()) -> list[Example]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, created_at, messages, answer, rejected, weight, note, source, adapter"
                f" FROM examples {where} ORDER BY id",
                parameters,
            ).fetchall()
        return [_example(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _example(row: tuple[object, ...]) -> Example:
    messages = tuple(Message(Role(m["role"]), m["content"]) for m in json.loads(str(row[2])))
    return Example(
        int(row[0]),  # type: ignore[call-overload]
        str(row[1]),
        messages,
        str(row[3]),
        None if row[4] is None else str(row[4]),
        float(row[5]),  # type: ignore[arg-type]
        str(row[6]),
        str(row[7]),
        None if row[8] is None else str(row[8]),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
