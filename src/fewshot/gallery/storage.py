"""A gallery's source of truth: one SQLite file (WAL mode), one transaction per change.

Tables: ``meta`` (format, generation, preprocessing), ``model`` (the bound model's config,
weights and fingerprint), ``classes``, ``examples`` (the model input, its embedding, a content
hash, when it was added, where it came from), ``changes`` (what each generation added or
removed, so an index can catch up instead of being rebuilt) and ``calibration``.

Every write is one ``BEGIN IMMEDIATE ... COMMIT`` with ``synchronous=FULL``: once a call
returns, its change survives ``kill -9`` and power loss; until then nothing of it is visible.
SQLite lets many readers work while one writer writes; a second writer waits up to
``timeout`` seconds, then gets a clear error.
"""
from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fewshot.errors import BusyError, FewShotError

FORMAT_VERSION = 1
APPLICATION_ID = 0x46534731  # "FSG1": a fewshot gallery
WRITE_TIMEOUT = 10.0

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE model (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    config TEXT NOT NULL, weights BLOB NOT NULL, fingerprint TEXT NOT NULL, source TEXT NOT NULL);
CREATE TABLE classes (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, added REAL NOT NULL);
CREATE TABLE examples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    class_id INTEGER NOT NULL REFERENCES classes(id),
    image BLOB NOT NULL, hash TEXT NOT NULL UNIQUE, embedding BLOB NOT NULL,
    added REAL NOT NULL, source TEXT NOT NULL);
CREATE INDEX examples_by_class ON examples(class_id);
CREATE TABLE changes (generation INTEGER NOT NULL, op TEXT NOT NULL, class_id INTEGER NOT NULL, example_id INTEGER);
CREATE INDEX changes_by_generation ON changes(generation);
CREATE TABLE calibration (id INTEGER PRIMARY KEY CHECK (id = 1), fingerprint TEXT NOT NULL, report TEXT NOT NULL);
"""


@dataclass(frozen=True)
class NewExample:
    """One example to store: model input bytes, its content hash, its embedding, where it came from."""

    image: bytes
    hash: str
    embedding: np.ndarray
    source: str


@dataclass
class AddOutcome:
    """What one add stored: the class, the new example ids, and the images already stored."""

    class_id: int
    created: bool
    example_ids: list[int] = field(default_factory=list)
    duplicates: list[tuple[str, int, str]] = field(default_factory=list)  # (source, example id, its class)


@dataclass(frozen=True)
class Change:
    generation: int
    op: str  # "add" or "remove" (an example), "drop" (a class)
    class_id: int
    example_id: int | None


class GalleryStore:
    """The SQLite file of one gallery; open an existing one, or :meth:`create` a new one."""

    def __init__(self, path: str | Path, timeout: float = WRITE_TIMEOUT) -> None:
        self.path, self.timeout = Path(path), timeout
        if not self.path.exists():
            raise FewShotError(f"no gallery at {self.path}; create one with `fewshot gallery create {self.path} --run RUN`")
        if self.path.is_dir():
            raise FewShotError(f"{self.path} is a folder, not a gallery file")
        self.connection = self._connect(create=False)
        self._check_format()

    @classmethod
    def create(cls, path: str | Path, meta: dict[str, str], model: tuple[str, bytes, str, str]) -> GalleryStore:
        """A new, empty gallery file with ``meta`` and the model ``(config, weights, fingerprint, source)``."""
        path = Path(path)
        if path.exists():
            raise FewShotError(f"{path} already exists; choose another path or delete it first")
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(path, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            with connection:
                connection.execute("BEGIN")
                for statement in _SCHEMA.strip().split(";\n"):
                    connection.execute(statement)
                rows = {"format": str(FORMAT_VERSION), "generation": "0", "created": str(time.time()), **meta}
                connection.executemany("INSERT INTO meta VALUES (?, ?)", sorted(rows.items()))
                connection.execute("INSERT INTO model VALUES (1, ?, ?, ?, ?)", model)
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                connection.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            connection.close()
        except sqlite3.Error as error:
            path.unlink(missing_ok=True)
            raise _translate(error, path) from None
        return cls(path)

    def _connect(self, create: bool) -> sqlite3.Connection:
        uri = self.path.absolute().as_uri() + ("" if create else "?mode=rw")
        try:
            connection = sqlite3.connect(uri, uri=True, timeout=self.timeout, isolation_level=None,
                                         check_same_thread=False)
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as error:
            raise _translate(error, self.path) from None
        return connection

    def _check_format(self) -> None:
        try:
            application_id = self.connection.execute("PRAGMA application_id").fetchone()[0]
            version = self.connection.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as error:
            self.connection.close()
            raise _translate(error, self.path) from None
        if application_id != APPLICATION_ID:
            self.connection.close()
            raise FewShotError(f"{self.path} is an SQLite file but not a fewshot gallery; "
                               f"create one with `fewshot gallery create PATH --run RUN`")
        if version > FORMAT_VERSION:
            self.connection.close()
            raise FewShotError(f"{self.path} is a gallery of format {version}, newer than this fewshot reads "
                               f"({FORMAT_VERSION}); upgrade fewshot (pip install -U fewshot)")

    def close(self) -> None:
        self.connection.close()

    # -- reading -------------------------------------------------------------------------------------------

    def _all(self, sql: str, args: Sequence = ()) -> list[tuple]:
        try:
            return self.connection.execute(sql, args).fetchall()
        except sqlite3.Error as error:
            raise _translate(error, self.path) from None

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """A read transaction: every query inside sees the same committed state."""
        try:
            self.connection.execute("BEGIN")
        except sqlite3.Error as error:
            raise _translate(error, self.path) from None
        try:
            yield
        finally:
            self.connection.execute("COMMIT")

    def meta(self) -> dict[str, str]:
        return dict(self._all("SELECT key, value FROM meta"))

    def generation(self) -> int:
        return int(self._all("SELECT value FROM meta WHERE key = 'generation'")[0][0])

    def model(self) -> tuple[str, bytes, str, str]:
        """``(config, weights, fingerprint, source)`` of the bound model."""
        return self._all("SELECT config, weights, fingerprint, source FROM model")[0]

    def data_version(self) -> int:
        """SQLite's ``PRAGMA data_version``: it changes when another connection commits."""
        return self._all("PRAGMA data_version")[0][0]

    def fingerprint(self) -> str:
        return self._all("SELECT fingerprint FROM model")[0][0]

    def class_names(self, ids: Sequence[int] | None = None) -> dict[int, str]:
        if ids is None:
            return dict(self._all("SELECT id, name FROM classes"))
        out: dict[int, str] = {}
        ids = list(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            out.update(self._all(f"SELECT id, name FROM classes WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        return out

    def class_id(self, name: str) -> int | None:
        rows = self._all("SELECT id FROM classes WHERE name = ?", (name,))
        return rows[0][0] if rows else None

    def classes(self, offset: int = 0, limit: int | None = None) -> list[tuple[int, str, int, float]]:
        """``(id, name, examples, added)`` of the classes, oldest first."""
        return self._all(
            "SELECT c.id, c.name, (SELECT COUNT(*) FROM examples e WHERE e.class_id = c.id), c.added "
            "FROM classes c ORDER BY c.id LIMIT ? OFFSET ?", (-1 if limit is None else limit, offset))

    def counts(self) -> tuple[int, int]:
        """``(classes, examples)``."""
        return (self._all("SELECT COUNT(*) FROM classes")[0][0], self._all("SELECT COUNT(*) FROM examples")[0][0])

    def examples_of(self, class_id: int) -> list[tuple[int, float, str]]:
        """``(id, added, source)`` of a class's examples."""
        return self._all("SELECT id, added, source FROM examples WHERE class_id = ? ORDER BY id", (class_id,))

    def image(self, example_id: int) -> tuple[bytes, int] | None:
        """The stored model input of an example and its class id."""
        rows = self._all("SELECT image, class_id FROM examples WHERE id = ?", (example_id,))
        return rows[0] if rows else None

    def embeddings(self, dim: int, after: int = 0, batch: int = 100_000
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(example ids, class ids, embeddings)`` of all examples with id above ``after``, in id order."""
        last = after
        while True:
            rows = self._all("SELECT id, class_id, embedding FROM examples WHERE id > ? ORDER BY id LIMIT ?",
                             (last, batch))
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            classes = np.fromiter((r[1] for r in rows), np.int64, len(rows))
            vectors = np.frombuffer(b"".join(r[2] for r in rows), np.float32).reshape(len(rows), dim)
            yield ids, classes, vectors
            last = int(ids[-1])

    def embeddings_of(self, example_ids: Sequence[int], dim: int) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        ids = list(example_ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self._all(f"SELECT id, embedding FROM examples WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            out.update((r[0], np.frombuffer(r[1], np.float32, dim)) for r in rows)
        return out

    def images(self, batch: int = 10_000) -> Iterator[list[tuple[int, bytes]]]:
        """``(example id, model input)`` of every example, in batches."""
        last = 0
        while True:
            rows = self._all("SELECT id, image FROM examples WHERE id > ? ORDER BY id LIMIT ?", (last, batch))
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def changes_since(self, generation: int) -> list[Change]:
        rows = self._all("SELECT generation, op, class_id, example_id FROM changes WHERE generation > ? "
                         "ORDER BY generation, rowid", (generation,))
        return [Change(*row) for row in rows]

    def calibration(self) -> tuple[str, str] | None:
        """``(fingerprint, report JSON)`` of the stored calibration, if any."""
        rows = self._all("SELECT fingerprint, report FROM calibration")
        return rows[0] if rows else None

    def integrity(self) -> str:
        return self._all("PRAGMA integrity_check")[0][0]

    # -- writing -------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        """One write transaction and its new generation; all of it commits, or none of it."""
        connection = self.connection
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise _translate(error, self.path, self.timeout) from None
        try:
            generation = self.generation() + 1
            connection.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
            yield connection, generation
            connection.execute("COMMIT")
        except BaseException as error:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise _translate(error, self.path, self.timeout) from None
            raise

    def add(self, name: str, examples: Sequence[NewExample]) -> AddOutcome:
        """Store ``examples`` under class ``name`` (created if new), skipping images already stored."""
        now = time.time()
        try:
            return self._add(name, examples, now)
        except _NothingNew as nothing:
            return nothing.outcome

    def _add(self, name: str, examples: Sequence[NewExample], now: float) -> AddOutcome:
        with self.write() as (connection, generation):
            row = connection.execute("SELECT id FROM classes WHERE name = ?", (name,)).fetchone()
            created = row is None
            if created:
                class_id = connection.execute("INSERT INTO classes (name, added) VALUES (?, ?)", (name, now)).lastrowid
            else:
                class_id = row[0]
            outcome = AddOutcome(class_id, created)
            for example in examples:
                stored = connection.execute(
                    "SELECT e.id, c.name FROM examples e JOIN classes c ON c.id = e.class_id WHERE e.hash = ?",
                    (example.hash,)).fetchone()
                if stored:
                    outcome.duplicates.append((example.source, stored[0], stored[1]))
                    continue
                example_id = connection.execute(
                    "INSERT INTO examples (class_id, image, hash, embedding, added, source) VALUES (?, ?, ?, ?, ?, ?)",
                    (class_id, example.image, example.hash, np.ascontiguousarray(example.embedding, np.float32).tobytes(),
                     now, example.source)).lastrowid
                outcome.example_ids.append(example_id)
                connection.execute("INSERT INTO changes VALUES (?, 'add', ?, ?)", (generation, class_id, example_id))
            if created and not outcome.example_ids:
                raise _NothingNew(outcome)
        return outcome

    def remove_class(self, class_id: int) -> list[int]:
        """Delete a class and its examples; their ids."""
        with self.write() as (connection, generation):
            ids = [r[0] for r in connection.execute("SELECT id FROM examples WHERE class_id = ?", (class_id,))]
            connection.execute("DELETE FROM examples WHERE class_id = ?", (class_id,))
            connection.execute("DELETE FROM classes WHERE id = ?", (class_id,))
            connection.executemany("INSERT INTO changes VALUES (?, 'remove', ?, ?)",
                                   [(generation, class_id, i) for i in ids])
            connection.execute("INSERT INTO changes VALUES (?, 'drop', ?, NULL)", (generation, class_id))
        return ids

    def remove_example(self, example_id: int, class_id: int, drop_class: bool) -> None:
        """Delete one example (and its class, when it was the class's last)."""
        with self.write() as (connection, generation):
            connection.execute("DELETE FROM examples WHERE id = ?", (example_id,))
            connection.execute("INSERT INTO changes VALUES (?, 'remove', ?, ?)", (generation, class_id, example_id))
            if drop_class:
                connection.execute("DELETE FROM classes WHERE id = ?", (class_id,))
                connection.execute("INSERT INTO changes VALUES (?, 'drop', ?, NULL)", (generation, class_id))

    def set_calibration(self, fingerprint: str, report: str) -> None:
        with self.write() as (connection, _):
            connection.execute("INSERT OR REPLACE INTO calibration VALUES (1, ?, ?)", (fingerprint, report))

    def replace_model(self, model: tuple[str, bytes, str, str], embeddings: Iterator[list[tuple[int, bytes]]],
                      meta: dict[str, str]) -> None:
        """Bind another model: its row, every example's new embedding ``(id, float32 bytes)``, and ``meta``;
        the calibration, made for the old model, is dropped."""
        with self.write() as (connection, _):
            connection.execute("UPDATE model SET config = ?, weights = ?, fingerprint = ?, source = ? WHERE id = 1",
                               model)
            for batch in embeddings:
                connection.executemany("UPDATE examples SET embedding = ? WHERE id = ?", [(e, i) for i, e in batch])
            connection.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", sorted(meta.items()))
            connection.execute("DELETE FROM calibration")
            connection.execute("DELETE FROM changes")


class _NothingNew(Exception):
    """Raised inside :meth:`GalleryStore.add` to roll back a new class whose images were all stored already."""

    def __init__(self, outcome: AddOutcome) -> None:
        super().__init__("nothing new")
        self.outcome = outcome


def _translate(error: sqlite3.Error, path: Path, timeout: float | None = None) -> FewShotError:
    """The :class:`FewShotError` a user should see for an SQLite error on ``path``."""
    message = str(error).lower()
    if "locked" in message or "busy" in message:
        waited = f" (waited {timeout:g} s)" if timeout is not None else ""
        return BusyError(f"another process is writing to {path}{waited}; try again when it has finished")
    if "full" in message:
        return FewShotError(f"the disk holding {path} is full; nothing of this change was stored. Free some space "
                            f"and try again")
    if "not a database" in message or "malformed" in message or "corrupt" in message:
        return FewShotError(f"{path} is not a fewshot gallery or is corrupt ({error}); restore it from a backup or "
                            f"create a new one with `fewshot gallery create`")
    if "readonly" in message or "unable to open" in message:
        return FewShotError(f"cannot write to {path} ({error}); check its permissions and those of its folder")
    return FewShotError(f"gallery {path}: {error}")
