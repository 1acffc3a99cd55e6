"""The service's metadata database: ``CATALOG/service.sqlite`` (SQLite in WAL mode).

Tables::

    meta(key, value)          'version': the catalog version this database mirrors
    classes(name, id, features, entries, position, created, updated)
    images(class, number, path, bytes, width, height, sha256)
    trash(path, since)        files no longer referenced, deleted after a grace period

The catalog folder's ``catalog.json`` (:mod:`os2d.catalog.store`) stays the authority on which
classes exist and which files hold them, so ``os2d detect --catalog DIR`` reads a service's
folder as it is; this database mirrors it with metadata and gives workers a cheap, transactional
version counter. Writers hold the catalog's write lock and a ``BEGIN IMMEDIATE`` transaction.
"""
from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence

DB_FILE = "service.sqlite"
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS classes (
    name TEXT PRIMARY KEY, id TEXT NOT NULL UNIQUE, features TEXT NOT NULL,
    entries INTEGER NOT NULL CHECK (entries >= 1), position INTEGER NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    class TEXT NOT NULL REFERENCES classes(name) ON DELETE CASCADE ON UPDATE CASCADE,
    number INTEGER NOT NULL, path TEXT NOT NULL, bytes INTEGER, width INTEGER, height INTEGER,
    sha256 TEXT, PRIMARY KEY (class, number));
CREATE TABLE IF NOT EXISTS trash (path TEXT PRIMARY KEY, since REAL NOT NULL);
"""


@dataclass(frozen=True)
class ClassRow:
    """One class as the database has it."""

    name: str
    id: str
    features: str
    entries: int
    images: int
    created: float
    updated: float


@dataclass(frozen=True)
class ImageRow:
    """One stored class image."""

    path: str
    bytes: Optional[int] = None
    width: Optional[int] = None
    height: Optional[int] = None
    sha256: Optional[str] = None


def db_path(folder: Path) -> Path:
    return Path(folder) / DB_FILE


def connect(folder: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, foreign keys on."""
    conn = sqlite3.connect(str(db_path(folder)), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@contextlib.contextmanager
def opened(folder: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(folder)
    try:
        yield conn
    finally:
        conn.close()


def initialise(folder: Path) -> None:
    """Create the tables (idempotent); the journal becomes WAL (readers never wait for the writer)."""
    with opened(folder) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        with transaction(conn):
            for statement in _SCHEMA.split(";"):  # executescript would commit on its own
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('version', '-1')")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` (writers) or ``BEGIN`` (a consistent snapshot); rollback on error."""
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def read_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    return int(row[0]) if row is not None else -1


def set_version(conn: sqlite3.Connection, version: int) -> None:
    conn.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(int(version)),))


def read_classes(conn: sqlite3.Connection) -> List[ClassRow]:
    """Every class in catalog order."""
    rows = conn.execute(
        "SELECT c.name, c.id, c.features, c.entries, COUNT(i.number), c.created, c.updated "
        "FROM classes c LEFT JOIN images i ON i.class = c.name GROUP BY c.name ORDER BY c.position").fetchall()
    return [ClassRow(*row) for row in rows]


def find_class(conn: sqlite3.Connection, name: str) -> Optional[ClassRow]:
    row = conn.execute(
        "SELECT c.name, c.id, c.features, c.entries, COUNT(i.number), c.created, c.updated "
        "FROM classes c LEFT JOIN images i ON i.class = c.name WHERE c.name = ? GROUP BY c.name", (name,)).fetchone()
    return None if row is None else ClassRow(*row)


def count_classes(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM classes").fetchone()[0])


def read_images(conn: sqlite3.Connection, name: str) -> List[ImageRow]:
    rows = conn.execute("SELECT path, bytes, width, height, sha256 FROM images WHERE class = ? ORDER BY number",
                        (name,)).fetchall()
    return [ImageRow(*row) for row in rows]


def upsert_class(conn: sqlite3.Connection, *, name: str, class_id: str, features: str, entries: int,
                 images: Sequence[ImageRow], now: Optional[float] = None) -> None:
    """Insert class ``name`` or replace its files (keeping its position and creation time)."""
    now = time.time() if now is None else now
    old = conn.execute("SELECT position, created FROM classes WHERE name = ?", (name,)).fetchone()
    if old is None:
        top = conn.execute("SELECT COALESCE(MAX(position), -1) FROM classes").fetchone()[0]
        conn.execute("INSERT INTO classes VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (name, class_id, features, entries, int(top) + 1, now, now))
    else:
        conn.execute("UPDATE classes SET id = ?, features = ?, entries = ?, updated = ? WHERE name = ?",
                     (class_id, features, entries, now, name))
    conn.execute("DELETE FROM images WHERE class = ?", (name,))
    conn.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(name, n, im.path, im.bytes, im.width, im.height, im.sha256) for n, im in enumerate(images)])


def delete_class(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("DELETE FROM classes WHERE name = ?", (name,))


def trash(conn: sqlite3.Connection, paths: Sequence[str], *, now: Optional[float] = None) -> None:
    now = time.time() if now is None else now
    conn.executemany("INSERT OR IGNORE INTO trash VALUES (?, ?)", [(p, now) for p in paths])


def untrash(conn: sqlite3.Connection, paths: Sequence[str]) -> None:
    conn.executemany("DELETE FROM trash WHERE path = ?", [(p,) for p in paths])


def expired_trash(conn: sqlite3.Connection, *, older_than: float) -> List[str]:
    return [row[0] for row in conn.execute("SELECT path FROM trash WHERE since <= ?", (older_than,))]


def trashed(conn: sqlite3.Connection) -> List[str]:
    return [row[0] for row in conn.execute("SELECT path FROM trash")]
