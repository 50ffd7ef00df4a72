"""A persistent face gallery: named identities and their embeddings in one SQLite file.

The file holds three tables and nothing executable (no pickle): ``identities`` (unique names), ``embeddings`` (one
row per enrolled image: a little-endian float32 blob of the L2-normalised embedding, and the source file's path and
sha256 when it came from a file) and ``meta`` (schema version, the embedder's fingerprint, the embedding size).
A gallery is tied to the embedder that filled it: embeddings of two models live in unrelated spaces, so opening a
gallery with another embedder raises :class:`GalleryMismatchError` instead of returning meaningless matches.

Every write runs in one transaction and the journal is SQLite's write-ahead log, so a process killed at any point
leaves the previous or the next state of the gallery on disk, never a mixture. With ``synchronous=NORMAL`` a power
cut may lose the last few committed writes, but it does not corrupt the file.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_facenet import __version__

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
GALLERY_FILENAME = "gallery.sqlite3"
IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".webp")

_SHA256 = re.compile(r"[0-9a-f]{64}")
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
_DROP_EMPTY_IDENTITY = (
    "DELETE FROM identities WHERE name = ? AND NOT EXISTS (SELECT 1 FROM embeddings WHERE identity_id = identities.id)"
)


class GalleryMismatchError(ValueError):
    """The gallery was enrolled with another embedder (fingerprint or embedding size differ)."""


@dataclass(frozen=True)
class Candidate:
    """One search hit.

    Attributes:
        name: The identity.
        similarity: Cosine similarity between the query and the identity's closest enrolled embedding.
    """

    name: str
    similarity: float


@dataclass(frozen=True)
class EnrollmentReport:
    """What :meth:`Gallery.enroll_folder` did, with absolute paths in sorted order.

    Attributes:
        added: Files newly embedded and enrolled.
        unchanged: Files whose content (sha256) was already enrolled for their identity; not embedded again.
        failed: (file, one-line reason) for files that could not be enrolled (unreadable, not an image, no face)
            and for identity folders that could not be listed.
        removed: Previously enrolled files that are gone or whose content changed; their embeddings were dropped.
            A changed file appears here and in ``added``.
    """

    added: tuple[Path, ...]
    unchanged: tuple[Path, ...]
    failed: tuple[tuple[Path, str], ...]
    removed: tuple[Path, ...]


class EnrollingRecognizer(Protocol):
    """What :meth:`Gallery.from_folder` needs of a recognizer."""

    @property
    def fingerprint(self) -> str:
        """sha256 of the embedder's ONNX file."""
        ...

    @property
    def embedding_size(self) -> int:
        """Length of the embeddings."""
        ...

    def embed_largest_face(self, image: np.ndarray) -> np.ndarray | None:
        """Embed the largest face of a BGR uint8 image; None when it shows no face."""
        ...


@dataclass(frozen=True)
class _Index:
    names: tuple[str, ...]  # identities that have embeddings, sorted
    starts: np.ndarray  # first row of each identity in matrix
    matrix: np.ndarray  # R x D float32, rows grouped by identity
    data_version: int


class Gallery:
    """Enrolled identities and exact cosine search over their embeddings, stored in an SQLite file.

    Use a gallery object from one thread at a time (handing it to another thread is fine). Several objects, also in
    other processes, may open one file; each sees the others' committed writes at its next search.

    Args:
        path: The gallery file, created with its folder when missing; None keeps the gallery in memory.
        fingerprint: sha256 (64 lowercase hex digits) of the embedder's ONNX file.
        embedding_size: Length of the embeddings.

    Raises:
        GalleryMismatchError: When the file was enrolled with another fingerprint or embedding size.
        ValueError: When the file is not an SQLite database or not an edge_facenet gallery, or an argument is invalid.
        IsADirectoryError: When ``path`` is a folder.

    Example:
        >>> with Gallery("staff.sqlite3", fingerprint, 128) as gallery:  # doctest: +SKIP
        ...     gallery.add("ada", embedding)
        ...     best = gallery.search(query, k=1)[0][0]
    """

    def __init__(self, path: str | PathLike[str] | None, fingerprint: str, embedding_size: int) -> None:
        if not isinstance(fingerprint, str) or not _SHA256.fullmatch(fingerprint):
            raise ValueError(f"fingerprint must be a sha256 of 64 lowercase hex digits, got {fingerprint!r}")
        if isinstance(embedding_size, bool) or not isinstance(embedding_size, (int, np.integer)) or embedding_size < 1:
            raise ValueError(f"embedding_size must be a positive integer, got {embedding_size!r}")
        self._path = None if path is None else Path(path)
        self._fingerprint = fingerprint
        self._embedding_size = int(embedding_size)
        self._index: _Index | None = None
        self._connection: sqlite3.Connection | None = self._open()

    @property
    def path(self) -> Path | None:
        """The gallery file, or None for an in-memory gallery."""
        return self._path

    @property
    def fingerprint(self) -> str:
        """sha256 of the embedder the gallery belongs to."""
        return self._fingerprint

    @property
    def embedding_size(self) -> int:
        """Length of the stored embeddings."""
        return self._embedding_size

    def add(
        self,
        name: str,
        embeddings: np.ndarray,
        source_path: str | PathLike[str] | None = None,
        source_sha256: str | None = None,
    ) -> int:
        """Enrol embeddings for an identity, creating the identity when it is new.

        Args:
            name: The identity.
            embeddings: One embedding (D,) or several (N, D); each is L2-normalised before it is stored.
            source_path: The file the embeddings came from, if any.
            source_sha256: sha256 of that file, if known.

        Returns:
            The number of embeddings added.

        Raises:
            ValueError: When the name is empty, the embeddings have the wrong shape, are non-finite or all-zero,
                or ``source_sha256`` is not a sha256.
        """
        _check_name(name)
        vectors = _normalised(embeddings, self._embedding_size, "embeddings")
        if len(vectors) == 0:
            raise ValueError(f"embeddings must hold at least one vector, got shape {np.shape(embeddings)}")
        if source_sha256 is not None and not _SHA256.fullmatch(str(source_sha256)):
            raise ValueError(f"source_sha256 must be 64 lowercase hex digits, got {source_sha256!r}")
        source = None if source_path is None else str(source_path)

        with self._write() as connection:
            self._insert(connection, name, [(vector, source, source_sha256) for vector in vectors])
        return len(vectors)

    def remove(self, name: str) -> int:
        """Remove an identity and all its embeddings.

        Returns:
            The number of embeddings removed.

        Raises:
            ValueError: When no identity has that name.
        """
        with self._write() as connection:
            identity_id = self._identity_id(connection, name)
            (removed,) = connection.execute(
                "SELECT count(*) FROM embeddings WHERE identity_id = ?", (identity_id,)
            ).fetchone()
            connection.execute("DELETE FROM identities WHERE id = ?", (identity_id,))
        return removed

    def rename(self, old: str, new: str) -> None:
        """Give an identity a new name, keeping its embeddings.

        Raises:
            ValueError: When ``old`` is unknown, ``new`` is empty or ``new`` already exists.
        """
        _check_name(new)
        with self._write() as connection:
            identity_id = self._identity_id(connection, old)
            if connection.execute("SELECT 1 FROM identities WHERE name = ?", (new,)).fetchone():
                raise ValueError(f"cannot rename {old!r} to {new!r}: an identity named {new!r} already exists")
            connection.execute("UPDATE identities SET name = ? WHERE id = ?", (new, identity_id))

    def names(self) -> list[str]:
        """Return the identities, sorted."""
        return [name for (name,) in self._db().execute("SELECT name FROM identities ORDER BY name")]

    def count(self, name: str | None = None) -> int:
        """Return the number of embeddings of one identity, or of all when ``name`` is None.

        Raises:
            ValueError: When no identity has that name.
        """
        connection = self._db()
        if name is None:
            return connection.execute("SELECT count(*) FROM embeddings").fetchone()[0]
        identity_id = self._identity_id(connection, name)
        return connection.execute("SELECT count(*) FROM embeddings WHERE identity_id = ?", (identity_id,)).fetchone()[0]

    def __len__(self) -> int:
        return self._db().execute("SELECT count(*) FROM identities").fetchone()[0]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return self._db().execute("SELECT 1 FROM identities WHERE name = ?", (name,)).fetchone() is not None

    def search(self, embeddings: np.ndarray, k: int = 5) -> list[list[Candidate]]:
        """Find the identities closest to each query, by exact cosine similarity.

        An identity scores the best (maximum) similarity over its enrolled embeddings, not their mean: with a few
        enrolment photos per person, the one nearest in pose and lighting is a more reliable witness than an average
        that the other photos pull away. The mean would also be defensible; the tests pin the maximum.

        Args:
            embeddings: One query (D,) or several (N, D); normalised here, so unnormalised queries are fine.
            k: How many identities to return per query.

        Returns:
            One list per query (also for a single (D,) query) of up to ``k`` candidates, best first; fewer when the
            gallery holds fewer identities, none when it is empty.

        Raises:
            ValueError: When a query has the wrong length, is non-finite or all-zero, or ``k`` is not positive.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        queries = _normalised(embeddings, self._embedding_size, "query embeddings")
        index = self._current_index()
        if not index.names:
            return [[] for _ in range(len(queries))]

        similarities = queries @ index.matrix.T  # N x R
        scores = np.maximum.reduceat(similarities, index.starts, axis=1)  # N x identities

        top = min(int(k), len(index.names))
        if top < scores.shape[1]:
            best = np.argpartition(-scores, top - 1, axis=1)[:, :top]
        else:
            best = np.broadcast_to(np.arange(top), (len(queries), top))
        best_scores = np.take_along_axis(scores, best, axis=1)
        order = np.argsort(-best_scores, axis=1, kind="stable")
        best = np.take_along_axis(best, order, axis=1)
        best_scores = np.clip(np.take_along_axis(best_scores, order, axis=1), -1.0, 1.0)
        return [
            [Candidate(index.names[i], float(score)) for i, score in zip(ids, row_scores, strict=True)]
            for ids, row_scores in zip(best.tolist(), best_scores.tolist(), strict=True)
        ]

    @classmethod
    def from_folder(
        cls,
        folder: str | PathLike[str],
        recognizer: EnrollingRecognizer,
        path: str | PathLike[str] | None = None,
    ) -> tuple[Gallery, EnrollmentReport]:
        """Open (or create) a gallery and bring it in line with a folder of photos; see :meth:`enroll_folder`.

        Args:
            folder: Holds one sub-folder per identity: ``folder/<name>/<image>``.
            recognizer: Provides ``fingerprint``, ``embedding_size`` and ``embed_largest_face(image)``.
            path: The gallery file; default ``folder/gallery.sqlite3``.

        Returns:
            The open gallery (close it, or use it as a context manager) and the enrolment report.

        Raises:
            FileNotFoundError, NotADirectoryError: When ``folder`` is not an existing folder.
            GalleryMismatchError: When ``path`` holds a gallery of another embedder.
        """
        root = _enrolment_root(folder)
        gallery = cls(
            root / GALLERY_FILENAME if path is None else path, recognizer.fingerprint, recognizer.embedding_size
        )
        try:
            report = gallery.enroll_folder(root, recognizer)
        except BaseException:
            gallery.close()
            raise
        return gallery, report

    def enroll_folder(self, folder: str | PathLike[str], recognizer: EnrollingRecognizer) -> EnrollmentReport:
        """Enrol ``folder/<name>/*`` images and drop the embeddings of files that left the folder.

        Images are ``.jpg .jpeg .png .bmp .webp`` files (any case); other files are reported as failed, while hidden
        entries (name starting with ".") and deeper sub-folders are ignored without a report. A file whose content
        is already enrolled for its identity (same sha256) is skipped without decoding, so re-running on an
        unchanged folder embeds nothing.
        Each identity is committed in its own transaction: an interrupted run keeps the identities it finished, and
        the next run picks up the rest. The folder is the source of truth for identities enrolled from it: an
        identity renamed in the gallery but not on disk is enrolled again under its folder's name.

        Args:
            folder: Holds one sub-folder per identity.
            recognizer: Provides ``fingerprint``, ``embedding_size`` and ``embed_largest_face(image)``, which
                returns a (D,) embedding or None when the image shows no face.

        Returns:
            What was added, left unchanged, failed (each failure is also logged as a warning) and removed.

        Raises:
            FileNotFoundError, NotADirectoryError: When ``folder`` is not an existing folder.
            GalleryMismatchError: When the recognizer is not the gallery's embedder.
            ValueError: When the recognizer returns an embedding of the wrong shape.
        """
        root = _enrolment_root(folder)
        if recognizer.fingerprint != self._fingerprint or recognizer.embedding_size != self._embedding_size:
            raise GalleryMismatchError(
                f"{self._where()} belongs to embedder {self._fingerprint[:12]} ({self._embedding_size}-D), "
                f"not to the recognizer's {str(recognizer.fingerprint)[:12]} ({recognizer.embedding_size}-D)"
            )
        prefix = os.path.join(str(root), "")
        folders, failed = _identity_folders(root)
        unlisted = {path.name for path, _ in failed}
        added: list[Path] = []
        unchanged: list[Path] = []
        removed: list[Path] = []

        for name, files in folders.items():
            outcome = self._enroll_identity(name, files, prefix, recognizer)
            added += outcome.added
            unchanged += outcome.unchanged
            failed += outcome.failed
            removed += outcome.removed

        # Identities whose folder disappeared; a folder that could not be listed keeps its embeddings.
        removed += self._drop_vanished(prefix, keep=set(folders) | unlisted)

        for path, reason in failed:
            logger.warning("not enrolled: %s: %s", path, reason)
        report = EnrollmentReport(
            tuple(sorted(added)), tuple(sorted(unchanged)), tuple(sorted(failed)), tuple(sorted(removed))
        )
        logger.info(
            "enrolled %s: %d added, %d unchanged, %d failed, %d removed",
            root,
            len(report.added),
            len(report.unchanged),
            len(report.failed),
            len(report.removed),
        )
        return report

    def close(self) -> None:
        """Close the database; the gallery cannot be used afterwards. Closing twice is harmless."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._index = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Gallery({self._where()!r}, fingerprint={self._fingerprint[:12]!r}, embedding_size={self._embedding_size})"
        )

    def _where(self) -> str:
        return ":memory:" if self._path is None else str(self._path)

    def _open(self) -> sqlite3.Connection:
        if self._path is None:
            connection = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            if self._path.is_dir():
                raise IsADirectoryError(f"gallery path is a folder, expected a file: {self._path}")
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # absolute(): a file named ":memory:" must stay a file.
            connection = sqlite3.connect(
                self._path.absolute(), isolation_level=None, timeout=10.0, check_same_thread=False
            )
        try:
            self._prepare(connection)
        except BaseException:
            connection.close()
            raise
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        # Only read until the file is known to be a gallery of this embedder, so a wrong file stays untouched.
        try:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                self._create_schema(connection)
            elif not set(_TABLES) <= tables:
                raise ValueError(
                    f"{self._where()} is an SQLite database but not an edge_facenet gallery "
                    f"(it has tables {sorted(tables)}, a gallery has {list(_TABLES)})"
                )
            meta = dict(connection.execute("SELECT key, value FROM meta"))
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{self._where()} is not an edge_facenet gallery: {error}") from None
        self._check_meta(meta)

        connection.execute("PRAGMA foreign_keys = ON")
        if self._path is not None:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")

    def _create_schema(self, connection: sqlite3.Connection) -> None:
        meta = {
            "schema_version": str(SCHEMA_VERSION),
            "fingerprint": self._fingerprint,
            "embedding_size": str(self._embedding_size),
            "producer": f"edge_facenet {__version__}",
        }
        with _transaction(connection):
            for statement in _SCHEMA:
                connection.execute(statement)
            # OR IGNORE: another process may have created the same file a moment ago; its meta wins and is checked.
            connection.executemany("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", meta.items())

    def _check_meta(self, meta: dict[str, str]) -> None:
        try:
            version = int(meta["schema_version"])
            fingerprint = meta["fingerprint"]
            embedding_size = int(meta["embedding_size"])
        except (KeyError, ValueError):
            raise ValueError(
                f"{self._where()} is not an edge_facenet gallery: its meta table lacks a valid schema_version, "
                "fingerprint or embedding_size"
            ) from None
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"{self._where()} has gallery schema version {version}; "
                f"this edge_facenet reads version {SCHEMA_VERSION}"
            )
        if fingerprint != self._fingerprint or embedding_size != self._embedding_size:
            raise GalleryMismatchError(
                f"gallery {self._where()} was enrolled with embedder {fingerprint[:12]} ({embedding_size}-D), not with "
                f"this embedder {self._fingerprint[:12]} ({self._embedding_size}-D); their embeddings cannot be "
                f"compared, so re-enrol: delete the file or use Gallery.from_folder with a new path"
            )

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError(f"gallery {self._where()} is closed")
        return self._connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        connection = self._db()
        self._index = None
        try:
            with _transaction(connection):
                yield connection
        finally:
            self._index = None

    def _identity_id(self, connection: sqlite3.Connection, name: str) -> int:
        row = connection.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [known for (known,) in connection.execute("SELECT name FROM identities ORDER BY name")]
            close = difflib.get_close_matches(str(name), known, n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(f"no identity named {name!r} in the gallery ({len(known)} identities){hint}")
        return row[0]

    def _insert(
        self, connection: sqlite3.Connection, name: str, rows: list[tuple[np.ndarray, str | None, str | None]]
    ) -> None:
        connection.execute("INSERT OR IGNORE INTO identities (name) VALUES (?)", (name,))
        (identity_id,) = connection.execute("SELECT id FROM identities WHERE name = ?", (name,)).fetchone()
        connection.executemany(
            "INSERT INTO embeddings (identity_id, vector, source_path, source_sha256) VALUES (?, ?, ?, ?)",
            [(identity_id, vector.astype("<f4").tobytes(), path, sha256) for vector, path, sha256 in rows],
        )

    def _current_index(self) -> _Index:
        connection = self._db()
        # data_version changes when another connection commits; this connection's own writes reset the index.
        (data_version,) = connection.execute("PRAGMA data_version").fetchone()
        if self._index is not None and self._index.data_version == data_version:
            return self._index

        rows = connection.execute(
            "SELECT i.name, e.vector FROM embeddings e JOIN identities i ON i.id = e.identity_id ORDER BY i.name, e.id"
        ).fetchall()
        row_bytes = 4 * self._embedding_size
        if any(len(vector) != row_bytes for _, vector in rows):
            raise ValueError(f"{self._where()} is corrupt: an embedding is not {self._embedding_size} float32 values")
        names: list[str] = []
        starts: list[int] = []
        for row, (name, _) in enumerate(rows):
            if not names or names[-1] != name:
                names.append(name)
                starts.append(row)
        matrix = np.frombuffer(b"".join(vector for _, vector in rows), dtype="<f4").astype(np.float32)
        self._index = _Index(
            names=tuple(names),
            starts=np.asarray(starts, dtype=np.intp),
            matrix=matrix.reshape(len(rows), self._embedding_size),
            data_version=data_version,
        )
        return self._index

    def _enroll_identity(
        self, name: str, files: list[Path], prefix: str, recognizer: EnrollingRecognizer
    ) -> EnrollmentReport:
        query = (
            "SELECT e.id, e.source_path, e.source_sha256 FROM embeddings e "
            "JOIN identities i ON i.id = e.identity_id WHERE i.name = ?"
        )
        rows = self._db().execute(query, (name,)).fetchall()
        enrolled = {sha256 for _, _, sha256 in rows if sha256 is not None}
        holder: dict[str, Path] = {}  # sha256 -> a file of this folder with that content
        hashed: dict[str, str] = {}  # file path -> sha256, for every file that could be read
        unreadable: set[str] = set()
        new_rows: list[tuple[np.ndarray, str | None, str | None]] = []
        added: list[Path] = []
        unchanged: list[Path] = []
        failed: list[tuple[Path, str]] = []

        for file in files:
            try:
                data = file.read_bytes()
            except OSError as error:
                failed.append((file, f"cannot read file: {_one_line(error)}"))
                unreadable.add(str(file))
                continue
            sha256 = hashlib.sha256(data).hexdigest()
            hashed[str(file)] = sha256
            if sha256 in enrolled or sha256 in holder:
                unchanged.append(file)
                holder.setdefault(sha256, file)
                continue

            image = _decode(data)
            if image is None:
                failed.append((file, "cannot decode image"))
                continue
            embedding = recognizer.embed_largest_face(image)
            if embedding is None:
                failed.append((file, "no face found"))
                continue
            if np.shape(embedding) != (self._embedding_size,):
                raise ValueError(
                    f"recognizer.embed_largest_face returned shape {np.shape(embedding)} for {file}, "
                    f"expected ({self._embedding_size},)"
                )
            new_rows.append(
                (_normalised(embedding, self._embedding_size, f"the embedding of {file}")[0], str(file), sha256)
            )
            added.append(file)
            holder[sha256] = file

        # A row from this folder stays while some file of the identity still has its content (following a renamed
        # file); a file that could not be read keeps its row, since a passing permission problem is no reason to forget.
        stale: list[tuple[int, str]] = []
        moved: list[tuple[str, int]] = []
        for row_id, path, sha256 in rows:
            if path is None or not path.startswith(prefix) or path in unreadable:
                continue
            if sha256 not in holder:
                stale.append((row_id, path))
            elif hashed.get(path) != sha256:
                moved.append((str(holder[sha256]), row_id))

        if stale or moved or new_rows:
            with self._write() as connection:
                connection.executemany("DELETE FROM embeddings WHERE id = ?", [(row_id,) for row_id, _ in stale])
                connection.executemany("UPDATE embeddings SET source_path = ? WHERE id = ?", moved)
                if new_rows:
                    self._insert(connection, name, new_rows)
                connection.execute(_DROP_EMPTY_IDENTITY, (name,))
        return EnrollmentReport(tuple(added), tuple(unchanged), tuple(failed), tuple(Path(path) for _, path in stale))

    def _drop_vanished(self, prefix: str, keep: set[str]) -> list[Path]:
        query = (
            "SELECT e.id, e.source_path, i.name FROM embeddings e "
            "JOIN identities i ON i.id = e.identity_id WHERE substr(e.source_path, 1, ?) = ?"
        )
        rows = self._db().execute(query, (len(prefix), prefix)).fetchall()
        stale = [(row_id, path, name) for row_id, path, name in rows if name not in keep]
        if stale:
            with self._write() as connection:
                connection.executemany("DELETE FROM embeddings WHERE id = ?", [(row_id,) for row_id, _, _ in stale])
                connection.executemany(_DROP_EMPTY_IDENTITY, [(name,) for name in {name for _, _, name in stale}])
        return [Path(path) for _, path, _ in stale]


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    # The connection runs in autocommit mode (isolation_level=None); IMMEDIATE takes the write lock up front, so
    # two writers queue on the busy timeout instead of failing halfway through.
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an identity name must be a non-empty string, got {name!r}")


def _normalised(embeddings: np.ndarray, size: int, what: str) -> np.ndarray:
    array = np.asarray(embeddings)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != size:
        raise ValueError(f"{what} must have shape ({size},) or (N, {size}), got shape {np.shape(embeddings)}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(f"{what} must be real numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"{what} contain an all-zero vector, which has no direction to compare")
    return (array / norms).astype(np.float32)


def _enrolment_root(folder: str | PathLike[str]) -> Path:
    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(f"enrolment folder not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"enrolment folder is a file, expected a folder of <name>/<image> files: {path}")
    return path.resolve()


def _identity_folders(root: Path) -> tuple[dict[str, list[Path]], list[tuple[Path, str]]]:
    folders: dict[str, list[Path]] = {}
    failed: list[tuple[Path, str]] = []
    for entry in sorted(root.iterdir(), key=lambda path: path.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        files = []
        try:
            for file in entry.iterdir():
                if file.name.startswith(".") or file.is_dir():
                    continue
                if file.suffix.lower() in IMAGE_EXTENSIONS:
                    files.append(file)
                else:
                    failed.append((file, f"not an image file (expected {', '.join(IMAGE_EXTENSIONS)})"))
        except OSError as error:
            failed.append((entry, f"cannot list folder: {_one_line(error)}"))
            continue
        folders[entry.name] = sorted(files, key=lambda path: path.name)
    return folders, failed


def _one_line(error: OSError) -> str:
    text = error.strerror or str(error) or type(error).__name__
    return " ".join(text.split())


def _decode(data: bytes) -> np.ndarray | None:
    import cv2

    if not data:
        return None
    try:
        # From bytes in memory rather than cv2.imread: works for any path (unicode too) and decodes the very bytes
        # that were hashed.
        return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None
