"""SQLite backend: one file, WAL, an append-only log of writes (kine's shape).

Every write appends a row; the row's AUTOINCREMENT id is the revision. A
unique index on (key, prev_revision) lets the database itself refuse the
loser of a compare-and-swap race, so correctness never depends on this
process being the only writer. The live value of a key is its newest row
unless that row is a deletion. Compaction drops rows that a newer row of
the same key supersedes at or below the compaction revision.

WAL with synchronous=NORMAL keeps every committed write across a crash of
the process (kill -9); only an OS crash or power loss can lose the last
commits. Pass durable=True for synchronous=FULL.

Watches follow the writes of this process only (they are published in
process, no polling): one API server per file. Several API servers share
state through the etcd backend instead.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from kapal.errors import AlreadyExists, Conflict, NotFound, Temporary
from kapal.kube.storage.hub import WatchHub
from kapal.kube.storage.interface import Compacted, Event, KeyValue, ListResult, prefix_end

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS kv_key_prev ON kv (key, prev_revision);
CREATE INDEX IF NOT EXISTS kv_key_revision ON kv (key, revision);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

# A created row's create_revision is its own revision (unknown before the insert, so stored as 0).
_CREATE_REV = "CASE WHEN created = 1 THEN revision ELSE create_revision END"


class SQLiteBackend:
    def __init__(self, path: str | Path, durable: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._hub = WatchHub()

    # --- reads ---------------------------------------------------------------------------------------------------

    def _newest(self, key: str) -> tuple[int, int, int, int, bytes] | None:
        """(revision, created, deleted, create_revision, value) of the key's newest row."""
        return self._db.execute(
            f"SELECT revision, created, deleted, {_CREATE_REV}, value FROM kv WHERE key = ? "
            "ORDER BY revision DESC LIMIT 1", (key,)).fetchone()

    def _revision(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kv'").fetchone()
        return row[0] if row else 0

    def _compacted(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE name = 'compacted'").fetchone()
        return row[0] if row else 0

    async def get(self, key: str) -> KeyValue | None:
        row = self._newest(key)
        if row is None or row[2]:
            return None
        return KeyValue(key, row[4], row[3], row[0])

    async def list(self, prefix: str, revision: int = 0, limit: int = 0, start: str = "") -> ListResult:
        current = self._revision()
        if revision and revision < self._compacted():
            raise Compacted(revision, self._compacted())
        if revision > current:
            raise Conflict(f"revision {revision} is in the future (current: {current})")
        at = revision or current
        rows = self._db.execute(
            "SELECT kv.key, kv.revision, CASE WHEN kv.created = 1 THEN kv.revision ELSE kv.create_revision END, "
            "kv.value FROM kv JOIN (SELECT MAX(revision) AS r FROM kv WHERE key >= ? AND key < ? AND revision <= ? "
            "GROUP BY key) m ON m.r = kv.revision WHERE kv.deleted = 0 ORDER BY kv.key LIMIT ?",
            (max(prefix, start), prefix_end(prefix), at, limit + 1 if limit else -1)).fetchall()
        more = bool(limit) and len(rows) > limit
        items = [KeyValue(k, v, c, r) for k, r, c, v in rows[: limit or None]]
        return ListResult(items, at, more)

    async def count(self, prefix: str) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM kv JOIN (SELECT MAX(revision) AS r FROM kv WHERE key >= ? AND key < ? "
            "GROUP BY key) m ON m.r = kv.revision WHERE kv.deleted = 0", (prefix, prefix_end(prefix))).fetchone()
        return row[0]

    # --- writes --------------------------------------------------------------------------------------------------

    def _append(self, key: str, value: bytes, *, created: bool, deleted: bool, create_revision: int,
                prev_revision: int) -> int:
        try:
            cur = self._db.execute(
                "INSERT INTO kv (key, created, deleted, create_revision, prev_revision, value) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key, int(created), int(deleted), create_revision, prev_revision, value))
        except sqlite3.IntegrityError:
            raise Conflict(f"key {key} was written concurrently; retry with its current revision") from None
        except sqlite3.OperationalError as e:
            raise Temporary(f"storage is busy: {e}") from e
        return int(cur.lastrowid or 0)

    def _publish(self, event_type: str, kv: KeyValue, prev: KeyValue | None) -> KeyValue:
        self._hub.publish(Event(event_type, kv, prev))
        log.debug("sqlite %s %s rev=%d", event_type, kv.key, kv.mod_revision)
        return kv

    async def create(self, key: str, value: bytes) -> KeyValue:
        newest = self._newest(key)
        if newest is not None and not newest[2]:
            raise AlreadyExists(f"key {key} already exists")
        try:
            rev = self._append(key, value, created=True, deleted=False, create_revision=0,
                               prev_revision=newest[0] if newest else 0)
        except Conflict:
            raise AlreadyExists(f"key {key} already exists") from None
        return self._publish("ADDED", KeyValue(key, value, rev, rev), None)

    async def update(self, key: str, value: bytes, expected_revision: int) -> KeyValue:
        newest = self._newest(key)
        if newest is None or newest[2]:
            raise NotFound(f"key {key} not found")
        if newest[0] != expected_revision:
            raise Conflict(f"key {key} is at revision {newest[0]}, not {expected_revision}")
        rev = self._append(key, value, created=False, deleted=False, create_revision=newest[3],
                           prev_revision=newest[0])
        prev = KeyValue(key, newest[4], newest[3], newest[0])
        return self._publish("MODIFIED", KeyValue(key, value, newest[3], rev), prev)

    async def delete(self, key: str, expected_revision: int = 0) -> KeyValue:
        newest = self._newest(key)
        if newest is None or newest[2]:
            raise NotFound(f"key {key} not found")
        if expected_revision and newest[0] != expected_revision:
            raise Conflict(f"key {key} is at revision {newest[0]}, not {expected_revision}")
        rev = self._append(key, newest[4], created=False, deleted=True, create_revision=newest[3],
                           prev_revision=newest[0])
        prev = KeyValue(key, newest[4], newest[3], newest[0])
        return self._publish("DELETED", KeyValue(key, newest[4], newest[3], rev), prev)

    # --- watch and compaction ------------------------------------------------------------------------------------

    def _replay(self, prefix: str, after: int) -> list[Event]:
        compacted = self._compacted()
        if after < compacted:
            raise Compacted(after, compacted)
        rows = self._db.execute(
            "SELECT kv.key, kv.revision, kv.created, kv.deleted, kv.create_revision, kv.value, "
            "p.revision, p.deleted, p.value FROM kv LEFT JOIN kv p ON p.revision = kv.prev_revision "
            "WHERE kv.revision > ? AND kv.key >= ? AND kv.key < ? ORDER BY kv.revision",
            (after, prefix, prefix_end(prefix))).fetchall()
        events = []
        for key, rev, created, deleted, create_rev, value, prev_rev, prev_deleted, prev_value in rows:
            create_rev = rev if created else create_rev
            prev = None
            if prev_rev is not None and not prev_deleted and not created:
                prev = KeyValue(key, prev_value, create_rev, prev_rev)
            kind = "ADDED" if created else "DELETED" if deleted else "MODIFIED"
            events.append(Event(kind, KeyValue(key, value, create_rev, rev), prev))
        return events

    def watch(self, prefix: str, after: int) -> AsyncIterator[Event]:
        return self._hub.watch(prefix, after, self._replay)

    async def compact(self, revision: int) -> None:
        revision = min(revision, self._revision())
        if revision <= self._compacted():
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute(
                "DELETE FROM kv WHERE revision <= ?1 AND (deleted = 1 OR revision < "
                "(SELECT MAX(k2.revision) FROM kv k2 WHERE k2.key = kv.key AND k2.revision <= ?1))", (revision,))
            self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('compacted', ?)", (revision,))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        log.info("sqlite compacted to revision %d", revision)

    async def current_revision(self) -> int:
        return self._revision()

    async def compacted_revision(self) -> int:
        return self._compacted()

    async def close(self) -> None:
        self._db.close()
