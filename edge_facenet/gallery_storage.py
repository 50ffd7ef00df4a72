"""The gallery's SQLite file: private creation, transactions, embedding blobs and reading them into memory.

Galleries hold biometric data. A gallery file is created readable and writable by its owner only (0600) whatever the
umask, and so are the ``-wal`` and ``-shm`` files beside it, which SQLite creates with the database file's mode;
folders made for a gallery are 0700. A file that already exists keeps its mode. Deleted rows are overwritten with
zeros (``PRAGMA secure_delete``) and :func:`scrub_wal` truncates the write-ahead log, so that removed embeddings do
not stay readable in the file or its log.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np

from edge_facenet import __version__
from edge_facenet.gallery_index import DTYPES, EmbeddingMatrix, grouped_rows, spare_rows, with_new_rows

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
# float16 galleries are version 2, so that an edge_facenet that reads float32 blobs only refuses them clearly.
_SCHEMA_VERSIONS = {"float32": SCHEMA_VERSION, "float16": 2}
_TABLES = ("meta", "identities", "embeddings")
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS identities (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    """CREATE TABLE IF NOT EXISTS embeddings (
        id INTEGER PRIMARY KEY,
        identity_id INTEGER NOT NULL REFERENCES identities (id) ON DELETE CASCADE,
        vector BLOB NOT NULL,
        source_path TEXT,
        source_sha256 TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS embeddings_by_identity ON embeddings (identity_id)",
    "CREATE INDEX IF NOT EXISTS embeddings_by_source ON embeddings (source_path)",
)
# Triggers that count, in meta's "rewrites", every change other than adding rows: deleted or moved embeddings,
# renamed or deleted identities. A reader that saw the count unchanged reads only the rows added since (ids grow).
# A plain UPDATE (no UPSERT) so that any SQLite 3 can read the schema; the row is made with the triggers.
_BUMP_REWRITES = "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'rewrites'"
_TRIGGERS = {
    "rewrites_on_embedding_delete": "AFTER DELETE ON embeddings",
    "rewrites_on_embedding_update": "AFTER UPDATE OF vector, identity_id ON embeddings",
    "rewrites_on_identity_update": "AFTER UPDATE OF id, name ON identities",
    "rewrites_on_identity_delete": "AFTER DELETE ON identities",
}
_BLOB_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
_ROWS_PER_FETCH = 1 << 16


class GalleryMismatchError(ValueError):
    """The gallery was enrolled with another embedder (fingerprint or embedding size differ)."""


def open_database(
    path: Path | None, fingerprint: str, embedding_size: int, dtype: str | None
) -> tuple[sqlite3.Connection, str]:
    """Open a gallery file (creating it when missing, or an in-memory gallery for None) and check its meta.

    Only reads until the file is known to be a gallery of this embedder, so a wrong file stays untouched.

    Args:
        path: The gallery file, or None.
        fingerprint: The embedder's sha256.
        embedding_size: Length of the embeddings.
        dtype: The stored precision of a new gallery; None for float32.

    Returns:
        The autocommit connection and the gallery's stored precision.

    Raises:
        GalleryMismatchError: When the file was enrolled with another fingerprint or embedding size.
        ValueError: When the file is not an SQLite database or not an edge_facenet gallery.
        IsADirectoryError: When ``path`` is a folder.
    """
    where = ":memory:" if path is None else str(path)
    if path is None:
        connection = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    else:
        if path.is_dir():
            raise IsADirectoryError(f"gallery path is a folder, expected a file: {path}")
        create_private(path)
        # absolute(): a file named ":memory:" must stay a file.
        connection = sqlite3.connect(path.absolute(), isolation_level=None, timeout=10.0, check_same_thread=False)
    try:
        try:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                _create_schema(connection, fingerprint, embedding_size, dtype or "float32")
            elif not set(_TABLES) <= tables:
                raise ValueError(
                    f"{where} is an SQLite database but not an edge_facenet gallery "
                    f"(it has tables {sorted(tables)}, a gallery has {list(_TABLES)})"
                )
            meta = dict(connection.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{where} is not an edge_facenet gallery: {error}") from None
        stored_dtype = _check_meta(meta, fingerprint, embedding_size, where)
        _add_triggers(connection, where)

        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA secure_delete = ON")  # deleted rows are overwritten with zeros
        if path is not None:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        connection.close()
        raise
    return connection, stored_dtype


def read_identity(path: Path) -> tuple[str, int]:
    """The fingerprint and embedding size a gallery file was enrolled with, read without writing to it.

    Raises:
        FileNotFoundError: When there is no file at ``path``.
        ValueError: When the file is not an edge_facenet gallery.
    """
    if not path.is_file():
        raise FileNotFoundError(f"gallery file not found: {path}")
    try:
        with closing(sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)) as connection:
            meta = dict(connection.execute("SELECT key, value FROM meta"))
        return meta["fingerprint"], int(meta["embedding_size"])
    except (sqlite3.DatabaseError, KeyError, ValueError) as error:
        raise ValueError(f"{path} is not an edge_facenet gallery: {error}") from None


def create_private(path: Path) -> None:
    """Create a missing gallery file (0600) and its missing folders (0700); an existing file is left as it is."""
    missing: list[Path] = []
    folder = path.parent
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            continue  # another process made it a moment ago
        os.chmod(folder, 0o700)  # mkdir applies the umask to the mode

    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    except FileExistsError:
        return
    try:
        os.fchmod(descriptor, 0o600)  # a umask such as 0o277 would leave the owner unable to write
    finally:
        os.close(descriptor)


@contextmanager
def transaction(connection: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    """Run a block in one transaction of an autocommit connection (``isolation_level=None``).

    ``IMMEDIATE`` (for writes) takes the write lock up front, so two writers queue on the busy timeout instead of
    failing halfway through; ``DEFERRED`` (for reads) gives several statements one snapshot of the database.
    """
    connection.execute(f"BEGIN {mode}")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def encode(vectors: np.ndarray, stored_dtype: str) -> list[bytes]:
    """One little-endian blob per row of (N, D) embeddings, in the gallery's stored precision."""
    array = np.ascontiguousarray(vectors, dtype=_BLOB_DTYPES[stored_dtype])
    return [row.tobytes() for row in array]


def read_embeddings(
    connection: sqlite3.Connection, embedding_size: int, stored_dtype: str, dtype: str, where: str
) -> EmbeddingMatrix:
    """Read every embedding into one (rows, D) matrix of ``dtype``, rows grouped by identity in identity-id order.

    Raises:
        ValueError: When a blob does not hold ``embedding_size`` values of ``stored_dtype``.
    """
    # Read before the snapshot: a commit in between makes the next search read again, never miss a change.
    (data_version,) = connection.execute("PRAGMA data_version").fetchone()
    with transaction(connection, "DEFERRED"):
        rewrites = rewrite_count(connection)
        (rows,) = connection.execute("SELECT count(*) FROM embeddings").fetchone()
        spare = spare_rows(rows, embedding_size, dtype)  # room to add rows later without copying these
        row_ids, identity_ids = _read_rows(
            connection, "SELECT id, identity_id, vector FROM embeddings", (), spare[:rows], stored_dtype, where
        )
        names_by_id = dict(connection.execute("SELECT id, name FROM identities"))
    last_row_id = int(row_ids.max()) if rows else 0
    fields = {"data_version": data_version, "last_row_id": last_row_id, "rewrites": rewrites}
    return grouped_rows(spare[:rows], identity_ids, names_by_id, spare, **fields)


def read_new_embeddings(
    connection: sqlite3.Connection, current: EmbeddingMatrix, embedding_size: int, stored_dtype: str, where: str
) -> tuple[EmbeddingMatrix, bool] | None:
    """Bring a snapshot up to date by reading only the embeddings added since it was read.

    Returns:
        The new snapshot and whether it kept the old rows' indices (see
        :func:`~edge_facenet.gallery_index.with_new_rows`); None when rows were deleted, moved or renamed since,
        or the file cannot count such changes: then read everything with :func:`read_embeddings`.

    Raises:
        ValueError: When a blob does not hold ``embedding_size`` values of ``stored_dtype``.
    """
    if not has_change_counter(connection):
        return None
    (data_version,) = connection.execute("PRAGMA data_version").fetchone()
    with transaction(connection, "DEFERRED"):
        rewrites = rewrite_count(connection)
        if rewrites != current.rewrites:
            return None
        (rows,) = connection.execute("SELECT count(*) FROM embeddings WHERE id > ?", (current.last_row_id,)).fetchone()
        query = "SELECT id, identity_id, vector FROM embeddings WHERE id > ? ORDER BY id"
        vectors = np.empty((rows, embedding_size), dtype=current.matrix.dtype)
        row_ids, identity_ids = _read_rows(connection, query, (current.last_row_id,), vectors, stored_dtype, where)
        names_by_id = dict(
            connection.execute(
                "SELECT id, name FROM identities WHERE id IN (SELECT identity_id FROM embeddings WHERE id > ?)",
                (current.last_row_id,),
            )
        )
    fields = {"data_version": data_version, "rewrites": rewrites}
    if not rows:
        return replace(current, last_row_id=current.last_row_id, **fields), True
    return with_new_rows(current, vectors, identity_ids, names_by_id, last_row_id=int(row_ids[-1]), **fields)


def has_change_counter(connection: sqlite3.Connection) -> bool:
    """Whether the file counts its deletions and renames (see ``_TRIGGERS``), so that it can be read incrementally."""
    query = f"SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name IN ({', '.join('?' * len(_TRIGGERS))})"
    if connection.execute(query, tuple(_TRIGGERS)).fetchone()[0] != len(_TRIGGERS):
        return False
    return connection.execute("SELECT 1 FROM meta WHERE key = 'rewrites'").fetchone() is not None


def _read_rows(
    connection: sqlite3.Connection,
    query: str,
    parameters: tuple[int, ...],
    matrix: np.ndarray,
    stored_dtype: str,
    where: str,
) -> tuple[np.ndarray, np.ndarray]:
    # Fills matrix with the vectors of the query's (id, identity_id, vector) rows; returns the two ids of each row.
    rows, embedding_size = matrix.shape
    blob_dtype = _BLOB_DTYPES[stored_dtype]
    row_bytes = blob_dtype.itemsize * embedding_size
    row_ids = np.empty(rows, dtype=np.int64)
    identity_ids = np.empty(rows, dtype=np.int64)
    cursor = connection.execute(query, parameters)
    filled = 0
    while chunk := cursor.fetchmany(_ROWS_PER_FETCH):
        assert filled + len(chunk) <= rows, "the rows were counted in the same transaction"
        blobs = [blob for _, _, blob in chunk]
        if set(map(len, blobs)) != {row_bytes}:
            raise ValueError(f"{where} is corrupt: an embedding is not {embedding_size} {stored_dtype} values")
        values = np.frombuffer(b"".join(blobs), dtype=blob_dtype).reshape(len(chunk), embedding_size)
        matrix[filled : filled + len(chunk)] = values
        row_ids[filled : filled + len(chunk)] = [row_id for row_id, _, _ in chunk]
        identity_ids[filled : filled + len(chunk)] = [identity for _, identity, _ in chunk]
        filled += len(chunk)
    return row_ids, identity_ids


def rewrite_count(connection: sqlite3.Connection) -> int:
    """The file's count of deletions and renames (0 for a file that has never counted them)."""
    row = connection.execute("SELECT value FROM meta WHERE key = 'rewrites'").fetchone()
    return 0 if row is None else int(row[0])


def _add_triggers(connection: sqlite3.Connection, where: str) -> None:
    if has_change_counter(connection):
        return
    try:
        with transaction(connection):
            connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('rewrites', '0')")
            for name, event in _TRIGGERS.items():
                connection.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {event} BEGIN {_BUMP_REWRITES}; END")
    except sqlite3.OperationalError as error:  # a read-only file: searches then read everything after a change
        logger.info("%s: cannot add the change-counting triggers (%s); every change reloads the gallery", where, error)


def _create_schema(connection: sqlite3.Connection, fingerprint: str, embedding_size: int, stored_dtype: str) -> None:
    meta = {
        "schema_version": str(_SCHEMA_VERSIONS[stored_dtype]),
        "fingerprint": fingerprint,
        "embedding_size": str(embedding_size),
        "dtype": stored_dtype,
        "producer": f"edge_facenet {__version__}",
    }
    with transaction(connection):
        for statement in _SCHEMA:
            connection.execute(statement)
        # OR IGNORE: another process may have created the same file a moment ago; its meta wins and is checked.
        connection.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", meta.items())


def _check_meta(meta: dict[str, str], fingerprint: str, embedding_size: int, where: str) -> str:
    try:
        version = int(meta["schema_version"])
        stored_fingerprint = meta["fingerprint"]
        stored_size = int(meta["embedding_size"])
    except (KeyError, ValueError):
        raise ValueError(
            f"{where} is not an edge_facenet gallery: its meta table lacks a valid schema_version, "
            "fingerprint or embedding_size"
        ) from None
    stored_dtype = meta.get("dtype", "float32")  # galleries from before float16 storage lack the key
    if stored_dtype not in DTYPES or version != _SCHEMA_VERSIONS[stored_dtype]:
        raise ValueError(
            f"{where} has gallery schema version {version} with {stored_dtype!r} embeddings; "
            "this edge_facenet reads version 1 (float32) and 2 (float16)"
        )
    if stored_fingerprint != fingerprint or stored_size != embedding_size:
        raise GalleryMismatchError(
            f"gallery {where} was enrolled with embedder {stored_fingerprint[:12]} ({stored_size}-D), not with "
            f"this embedder {fingerprint[:12]} ({embedding_size}-D); their embeddings cannot be "
            f"compared, so re-enrol: delete the file or use Gallery.from_folder with a new path"
        )
    return stored_dtype


def scrub_wal(connection: sqlite3.Connection, where: str) -> None:
    """Copy the write-ahead log into the file and truncate it, so that deleted content leaves the ``-wal`` file."""
    busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    if busy:
        logger.warning(
            "%s: another connection kept reading, so deleted embeddings stay in its -wal file until the next "
            "checkpoint (the last connection to close runs one)",
            where,
        )
