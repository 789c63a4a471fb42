"""The example store: weighted training examples in SQLite (`examples.db` in the Shammah home).

Append-only named migrations, WAL, and a commit per write, so an example reported as saved
survives the kernel being killed. A file that is not this store (garbage, truncated, a folder,
another schema) is moved aside as ``examples.db.broken-<timestamp>`` and a new store begins;
`take_notice` says so once. Known secret values are scrubbed from what is written, from what is
read (secrets registered after a row was written), and, once, from rows written before scrubbing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .errors import ShammahError
from .events import Message, Role
from .secrets import known_secrets, scrub

# The columns of `examples`, in order: a file whose table differs is another schema.
COLUMNS = (
    "id",
    "created_at",
    "messages",
    "answer",
    "rejected",
    "weight",
    "note",
    "source",
    "adapter",
)
SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's companions, moved aside with a broken file


def _scrub_rows(db: sqlite3.Connection) -> None:
    """Scrub the secret values known now from every example written before scrubbing began."""
    rows = db.execute("SELECT id, messages, answer, rejected, note FROM examples").fetchall()
    for row_id, messages, answer, rejected, note in rows:
        clean = (_scrub_context(messages), scrub(answer), _scrub_optional(rejected), scrub(note))
        if clean != (messages, answer, rejected, note):
            db.execute(
                "UPDATE examples SET messages = ?, answer = ?, rejected = ?, note = ? WHERE id = ?",
                (*clean, row_id),
            )


Migration = str | Callable[[sqlite3.Connection], None]  # SQL, or a step over the rows

MIGRATIONS: tuple[tuple[str, Migration], ...] = (
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
    ("0002_scrub_secrets", _scrub_rows),
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
        self._notice = ""
        try:
            self._db = _open(path)
        except (sqlite3.DatabaseError, _NotTheStore) as error:
            moved = _move_aside(path)
            self._notice = (
                f"The example store {path} could not be read ({error}); it was moved to "
                f"{moved.name} and a new, empty store was started."
            )
            self._db = _open(path)

    def take_notice(self) -> str:
        """What happened to a broken store when this one opened, once ("" afterwards)."""
        notice, self._notice = self._notice, ""
        return notice

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
        secrets = known_secrets()
        context = json.dumps(
            [{"role": m.role.value, "content": scrub(m.content, secrets)} for m in messages]
        )
        clean = [None if t is None else scrub(t, secrets) for t in (answer, rejected, note)]
        row = (_now(), context, clean[0], clean[1], weight, clean[2])
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO examples (created_at, messages, answer, rejected, weight, note,"
                " source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*row, source),
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
        secrets = known_secrets()  # once, not per field
        return [_example(row, secrets) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _NotTheStore(ShammahError):
    """The file is an SQLite database, but not an example store (another schema, damage)."""


def _open(path: Path) -> sqlite3.Connection:
    """A connection to the store at `path`, migrated and checked; raises if it is not one."""
    if path.exists() and not path.is_file():
        raise _NotTheStore("not a file")
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if tables and "migrations" not in tables:  # someone else's database: leave it whole
            raise _NotTheStore(f"another schema (tables {', '.join(sorted(tables))})")
        _migrate(db)
        columns = tuple(row[1] for row in db.execute("PRAGMA table_info(examples)"))
        if columns != COLUMNS:
            raise _NotTheStore(f"its examples table has columns {', '.join(columns) or 'none'}")
        if (check := db.execute("PRAGMA quick_check").fetchone()[0]) != "ok":
            raise _NotTheStore(f"damaged: {check}")
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    done = {row[0] for row in db.execute("SELECT name FROM migrations")}
    for name, step in MIGRATIONS:
        if name in done:
            continue
        db.execute("BEGIN")
        try:
            db.execute(step) if isinstance(step, str) else step(db)
            db.execute("INSERT INTO migrations VALUES (?, ?)", (name, _now()))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _move_aside(path: Path) -> Path:
    """Rename a broken store (and SQLite's side files) out of the way; returns its new path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    moved = path.with_name(f"{path.name}.broken-{stamp}")
    n = 1
    while moved.exists():
        n += 1
        moved = path.with_name(f"{path.name}.broken-{stamp}-{n}")
    try:
        os.rename(path, moved)
        for suffix in SIDE_FILES:
            side = path.with_name(path.name + suffix)
            if side.exists():
                os.rename(side, moved.with_name(moved.name + suffix))
    except OSError as error:
        message = f"The example store {path} is broken and cannot be moved aside: {error}"
        raise ShammahError(message) from None
    return moved


def _scrub_context(messages: str) -> str:
    """The JSON context with each message's content scrubbed (the JSON itself is not edited)."""
    try:
        context = json.loads(messages)
        clean = [{**m, "content": scrub(str(m["content"]))} for m in context]
    except (ValueError, TypeError, KeyError, RecursionError):
        return scrub(messages)
    return messages if clean == context else json.dumps(clean)


def _scrub_optional(text: str | None) -> str | None:
    return None if text is None else scrub(text)


def _example(row: tuple[object, ...], secrets: tuple[str, ...]) -> Example:
    messages = tuple(
        Message(Role(m["role"]), scrub(m["content"], secrets)) for m in json.loads(str(row[2]))
    )
    return Example(
        int(row[0]),  # type: ignore[call-overload]
        str(row[1]),
        messages,
        scrub(str(row[3]), secrets),
        None if row[4] is None else scrub(str(row[4]), secrets),
        float(row[5]),  # type: ignore[arg-type]
        scrub(str(row[6]), secrets),
        str(row[7]),
        None if row[8] is None else str(row[8]),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
