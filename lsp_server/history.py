"""Chat history per workspace folder, in SQLite under the user's data directory.

One database file per workspace folder (named by a hash of the folder URI), in WAL mode so two
servers on the same workspace read and write it concurrently without losing each other's turns.
A chat turn (the user's message and the assistant's reply) is written in one transaction after
the reply ends, so a server killed mid-reply (`kill -9`) leaves every completed turn intact and
no half turn; a cancelled reply is kept with `finish_reason = "cancelled"` and left out of later
prompts. The sample kept history in memory and clipped it to `max_context_length` tokens,
oldest pair first; the clipping happens in `runtime.prompts.build_chat_prompt`.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Optional

from lsp_server.protocol import Turn

NO_FOLDER = "(no workspace folder)"
MAX_PROMPT_TURNS = 200
LOCKED_RETRY_S = 30.0  # give up on a database another process keeps locked this long  # rows read to build a prompt; clipping to tokens happens after

_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    time REAL NOT NULL,
    finish_reason TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def default_data_dir(setting: Optional[str] = None) -> Path:
    """The `dataDir` setting, else QUILL_DATA_DIR, else the platform's user data dir."""
    if setting:
        return Path(setting).expanduser()
    if os.environ.get("QUILL_DATA_DIR"):
        return Path(os.environ["QUILL_DATA_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("quill", appauthor=False))


def database_path(data_dir: Path, folder: Optional[str]) -> Path:
    """Where the history of `folder` (a workspace folder URI, or None) is kept."""
    key = folder or NO_FOLDER
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
    return data_dir / "history" / f"{digest}.sqlite3"


def _retry_when_locked(fn):
    """Retry a whole operation while another process holds the database.

    `busy_timeout` covers ordinary lock waits, but SQLite answers SQLITE_BUSY at once in a few
    cases (two processes creating the database and switching it to WAL together, a WAL
    recovery in progress); the operation is then simply run again.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        deadline = time.monotonic() + LOCKED_RETRY_S
        while True:
            try:
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err):
                    raise
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    return wrapper


class HistoryStore:
    """Reads and appends the turns of one workspace folder; safe to use from any thread."""

    def __init__(self, data_dir: Path, folder: Optional[str]):
        self.folder = folder or NO_FOLDER
        self.path = database_path(data_dir, folder)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._create()

    @_retry_when_locked
    def _create(self) -> None:
        with closing(self._connect()) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('folder', ?)", (self.folder,))

    def _connect(self) -> sqlite3.Connection:
        # a connection per call: sqlite3 connections must not cross threads, and opening is cheap
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.execute("PRAGMA busy_timeout=30000")
        db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across process crashes
        return db

    @_retry_when_locked
    def append_turn(self, user: str, reply: str, finish_reason: str) -> None:
        """Record one exchange atomically: both rows or neither."""
        now = time.time()
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO turns (role, content, time) VALUES ('user', ?, ?)", (user, now)
                )
                db.execute(
                    "INSERT INTO turns (role, content, time, finish_reason) "
                    "VALUES ('assistant', ?, ?, ?)",
                    (reply, time.time(), finish_reason),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @_retry_when_locked
    def turns(self, limit: Optional[int] = None) -> list[Turn]:
        """All turns, oldest first (the newest `limit` if given)."""
        query = "SELECT role, content, time, finish_reason FROM turns ORDER BY id DESC"
        args: tuple = ()
        if limit is not None:
            query += " LIMIT ?"
            args = (limit,)
        with closing(self._connect()) as db:
            rows = db.execute(query, args).fetchall()
        return [Turn(role, content, t, reason) for role, content, t, reason in reversed(rows)]

    def prompt_messages(self) -> list[dict]:
        """Completed exchanges as chat messages for the next prompt (cancelled ones left out)."""
        turns = self.turns(limit=MAX_PROMPT_TURNS)
        messages: list[dict] = []
        for user, reply in zip(turns, turns[1:]):
            if user.role == "user" and reply.role == "assistant":
                if reply.finish_reason != "cancelled":
                    messages.append({"role": "user", "content": user.content})
                    messages.append({"role": "assistant", "content": reply.content})
        return messages

    @_retry_when_locked
    def clear(self) -> int:
        """Delete every turn; returns how many rows went."""
        with closing(self._connect()) as db:
            cursor = db.execute("DELETE FROM turns")
            return cursor.rowcount
