"""A persistent face gallery: named identities and their embeddings in one SQLite file.

The file holds three tables, no pickle: ``identities`` (unique names), ``embeddings`` (one row per enrolled image: a
little-endian float32, or float16, blob of the L2-normalised embedding, and the source file's path and sha256 when
it came from a file) and ``meta`` (schema version, the embedder's fingerprint, the embedding size, the stored
precision, and ``rewrites``: a count of deletions and renames that four SQL triggers keep, so that an open gallery
can tell additions, which it reads on their own, from other changes). A gallery is tied to the embedder that filled
it: embeddings of two models live in unrelated spaces, so opening a gallery with another embedder raises
:class:`GalleryMismatchError` instead of returning meaningless matches.

Every write runs in one transaction and the journal is SQLite's write-ahead log, so a process killed at any point
leaves the previous or the next state of the gallery on disk, never a mixture. With ``synchronous=NORMAL`` a power
cut may lose the last few committed writes, but it does not corrupt the file. The file is private to its owner and
removed embeddings are scrubbed from it (see :mod:`edge_facenet.gallery_storage`); search is in
:mod:`edge_facenet.gallery_index`, enrolling from folders in :mod:`edge_facenet.gallery_enrol` and reading them in
:mod:`edge_facenet.gallery_folder`.
"""

from __future__ import annotations

import difflib
import logging
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from edge_facenet._optional import require
from edge_facenet.gallery_enrol import GALLERY_FILENAME, FolderEnrolment
from edge_facenet.gallery_folder import IMAGE_EXTENSIONS, EnrollingRecognizer, EnrollmentReport
from edge_facenet.gallery_index import (
    AUTO_IVF_MIN_EMBEDDINGS,
    DTYPES,
    INDEX_KINDS,
    EmbeddingMatrix,
    IvfIndex,
    exact_search,
    normalised_rows,
    renamed,
    without_identity,
)
from edge_facenet.gallery_storage import (
    SCHEMA_VERSION,
    GalleryMismatchError,
    encode,
    open_database,
    read_embeddings,
    read_new_embeddings,
    rewrite_count,
    scrub_wal,
    transaction,
)

__all__ = [
    "GALLERY_FILENAME",
    "IMAGE_EXTENSIONS",
    "SCHEMA_VERSION",
    "Candidate",
    "EnrollingRecognizer",
    "EnrollmentReport",
    "Gallery",
    "GalleryMismatchError",
]

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Candidate:
    """One search hit.

    Attributes:
        name: The identity.
        similarity: Cosine similarity between the query and the identity's closest enrolled embedding.
    """

    name: str
    similarity: float


class Gallery(FolderEnrolment):
    """Enrolled identities and cosine search over their embeddings, stored in an SQLite file.

    Use a gallery object from one thread at a time (handing it to another thread is fine). Several objects, also in
    other processes, may open one file; each sees the others' committed writes at its next search. That search reads
    only the embeddings added since, and applies the object's own removals and renames to the loaded matrix (a
    removal copies it once and makes an IVF index be rebuilt); after a removal or rename by another object, or a
    re-enrolment that dropped files, it reads all of them again (2 to 3 s for a million) and rebuilds an IVF index
    (about 8 s more for a million).

    Args:
        path: The gallery file, created (owner-only, 0600) with its folder (0700) when missing; None keeps the
            gallery in memory.
        fingerprint: sha256 (64 lowercase hex digits) of the embedder's ONNX file.
        embedding_size: Length of the embeddings.
        dtype: Precision of the in-memory search matrix, ``"float32"`` or ``"float16"`` (half the memory, similarities
            within 1e-3, search about 1.5x slower); a new file also stores embeddings in it. A file keeps the precision
            it was created with: embeddings added later are stored in it whatever ``dtype`` says. None: the file's
            (float32 for a new file).
        index: ``"exact"`` (default) searches every embedding; ``"ivf"`` uses an approximate faiss IVF index (the
            ``ann`` extra; recall@1 about 0.999 of exact); ``"auto"`` uses it from
            :data:`~edge_facenet.gallery_index.AUTO_IVF_MIN_EMBEDDINGS` embeddings on and exact search below.

    Raises:
        GalleryMismatchError: When the file was enrolled with another fingerprint or embedding size.
        ValueError: When the file is not an SQLite database or not an edge_facenet gallery, or an argument is invalid.
        IsADirectoryError: When ``path`` is a folder.
        ImportError: When ``index`` is ``"ivf"`` or ``"auto"`` and faiss is not installed.

    Example:
        >>> with Gallery("staff.sqlite3", fingerprint, 128) as gallery:  # doctest: +SKIP
        ...     gallery.add("ada", embedding)
        ...     best = gallery.search(query, k=1)[0][0]
    """

    def __init__(
        self,
        path: str | PathLike[str] | None,
        fingerprint: str,
        embedding_size: int,
        dtype: str | None = None,
        index: str = "exact",
    ) -> None:
        if not isinstance(fingerprint, str) or not _SHA256.fullmatch(fingerprint):
            raise ValueError(f"fingerprint must be a sha256 of 64 lowercase hex digits, got {fingerprint!r}")
        if isinstance(embedding_size, bool) or not isinstance(embedding_size, (int, np.integer)) or embedding_size < 1:
            raise ValueError(f"embedding_size must be a positive integer, got {embedding_size!r}")
        if dtype is not None and dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(map(repr, DTYPES))} or None, got {dtype!r}")
        if index not in INDEX_KINDS:
            raise ValueError(f"index must be one of {', '.join(map(repr, INDEX_KINDS))}, got {index!r}")
        if index != "exact":
            require("faiss", "ann")
        self._path = None if path is None else Path(path)
        self._fingerprint = fingerprint
        self._embedding_size = int(embedding_size)
        self._dtype = dtype
        self._index_kind = index
        self._index: EmbeddingMatrix | None = None
        self._ann: IvfIndex | None = None
        self._changed = False
        # ("remove", identity id, largest row id left) or ("rename", identity id, new name), of the write under way.
        self._change: tuple[str, int, int | str] | None = None
        # (count before, count after, change) of this object's writes that changed the rewrite count since the load.
        self._own_rewrites: list[tuple[int, int, tuple[str, int, int | str] | None]] = []
        connection, self._stored_dtype = open_database(self._path, fingerprint, self._embedding_size, dtype)
        self._connection: sqlite3.Connection | None = connection
        if dtype is not None and dtype != self._stored_dtype:
            logger.info("%s stores %s embeddings; searching them as %s", self._where(), self._stored_dtype, dtype)

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

    @property
    def dtype(self) -> str:
        """Precision of the in-memory search matrix: ``"float32"`` or ``"float16"``."""
        return self._dtype or self._stored_dtype

    @property
    def stored_dtype(self) -> str:
        """Precision of the embeddings in the file, fixed when it was created."""
        return self._stored_dtype

    @property
    def index(self) -> str:
        """The search index: ``"exact"``, ``"ivf"`` or ``"auto"``."""
        return self._index_kind

    @property
    def memory_bytes(self) -> int:
        """Bytes of the in-memory search matrix and IVF index; 0 until a search loads them."""
        return (0 if self._index is None else self._index.nbytes) + (0 if self._ann is None else self._ann.nbytes)

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
        vectors = normalised_rows(embeddings, self._embedding_size, "embeddings")
        if len(vectors) == 0:
            raise ValueError(f"embeddings must hold at least one vector, got shape {np.shape(embeddings)}")
        if source_sha256 is not None and not _SHA256.fullmatch(str(source_sha256)):
            raise ValueError(f"source_sha256 must be 64 lowercase hex digits, got {source_sha256!r}")
        source = None if source_path is None else str(source_path)

        with self._write() as connection:
            self._insert(connection, name, [(vector, source, source_sha256) for vector in vectors])
        return len(vectors)

    def add_many(
        self,
        names: Sequence[str],
        embeddings: np.ndarray,
        source_paths: Sequence[str | None] | None = None,
    ) -> int:
        """Enrol many embeddings in one transaction, each under its own name (names may repeat).

        Much faster than one :meth:`add` per embedding: use it to fill large galleries.

        Args:
            names: The identity of each embedding; new identities are created.
            embeddings: (N, D) embeddings, one per name; each is L2-normalised before it is stored.
            source_paths: The file each embedding came from, or None per embedding or for all.

        Returns:
            The number of embeddings added.

        Raises:
            ValueError: When a name is empty, the lengths differ, or the embeddings have the wrong shape, are
                non-finite or all-zero; nothing is added then.
        """
        if isinstance(names, str):
            raise ValueError(f"names must be a sequence of names, one per embedding, got the string {names!r}")
        names = list(names)
        for name in names:
            _check_name(name)
        if np.ndim(embeddings) != 2:
            raise ValueError(f"embeddings must have shape (N, {self._embedding_size}), got {np.shape(embeddings)}")
        vectors = normalised_rows(embeddings, self._embedding_size, "embeddings")
        sources = [None] * len(names) if source_paths is None else [None if p is None else str(p) for p in source_paths]
        if not len(names) == len(vectors) == len(sources):
            raise ValueError(
                f"names, embeddings and source_paths must have one entry per embedding, got {len(names)} names, "
                f"{len(vectors)} embeddings and {len(sources)} source paths"
            )
        if not names:
            return 0

        with self._write() as connection:
            connection.executemany(
                "INSERT OR IGNORE INTO identities (name) VALUES (?)", ((n,) for n in dict.fromkeys(names))
            )
            connection.executemany(
                "INSERT INTO embeddings (identity_id, vector, source_path) "
                "SELECT id, ?, ? FROM identities WHERE name = ?",
                zip(encode(vectors, self._stored_dtype), sources, names, strict=True),
            )
        return len(names)

    def remove(self, name: str) -> int:
        """Remove an identity and all its embeddings, also from the bytes of the file and its write-ahead log.

        The deleted rows are overwritten with zeros and the log is checkpointed and truncated; while another
        connection is reading, the log keeps them until the next checkpoint (a warning says so). The file keeps its
        size until :meth:`vacuum`.

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
            # SQLite gives a new row the largest id plus one, which may be an id just deleted: rows added after this
            # removal are those above the largest id left now.
            (largest,) = connection.execute("SELECT coalesce(max(id), 0) FROM embeddings").fetchone()
            self._change = ("remove", identity_id, largest)
        self._scrub()
        return removed

    def vacuum(self) -> int:
        """Rewrite the file without its free pages (SQLite ``VACUUM``), so that it shrinks after removals.

        Removed embeddings are already overwritten with zeros (see :meth:`remove`); this returns their space to the
        file system. It rewrites the whole file (seconds at a million embeddings) and needs a moment when no other
        connection is reading.

        Returns:
            Bytes by which the file shrank (0 for an in-memory gallery).

        Raises:
            ValueError: When another connection kept the file busy for the whole busy timeout (10 s).
        """
        if self._path is None:
            return 0
        before = self._path.stat().st_size
        try:
            self._db().execute("VACUUM")
        except sqlite3.OperationalError as error:
            raise ValueError(f"cannot vacuum {self._where()}: {error} (another process is using it)") from None
        self._scrub()
        return max(0, before - self._path.stat().st_size)

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
            self._change = ("rename", identity_id, new)

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
        """Find the identities closest to each query, by cosine similarity (exact unless an IVF index is in use).

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
        queries = normalised_rows(embeddings, self._embedding_size, "query embeddings")
        index = self._current_index()
        if not index.names:
            return [[] for _ in range(len(queries))]

        ann = self._current_ann(index)
        hits = exact_search(index, queries, int(k)) if ann is None else ann.search(queries, int(k))
        return [[Candidate(index.names[i], similarity) for i, similarity in row] for row in hits]

    def close(self) -> None:
        """Close the database; the gallery cannot be used afterwards. Closing twice is harmless."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        self._index = None
        self._ann = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Gallery({self._where()!r}, fingerprint={self._fingerprint[:12]!r}, "
            f"embedding_size={self._embedding_size}, dtype={self.dtype!r}, index={self._index_kind!r})"
        )

    def _where(self) -> str:
        return ":memory:" if self._path is None else str(self._path)

    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise ValueError(f"gallery {self._where()} is closed")
        return self._connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        connection = self._db()
        self._change = None
        try:
            with transaction(connection):
                before = rewrite_count(connection)
                yield connection
                after = rewrite_count(connection)
            if after != before:  # this write deleted or renamed: remember what, to apply it to the loaded matrix
                self._own_rewrites.append((before, after, self._change))
        finally:
            self._changed = True  # the next search reads what was added, or everything after a deletion

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
        blobs = encode(np.stack([vector for vector, _, _ in rows]), self._stored_dtype)
        connection.executemany(
            "INSERT INTO embeddings (identity_id, vector, source_path, source_sha256) VALUES (?, ?, ?, ?)",
            [(identity_id, blob, path, sha256) for blob, (_, path, sha256) in zip(blobs, rows, strict=True)],
        )

    def _current_index(self) -> EmbeddingMatrix:
        connection = self._db()
        # data_version changes when another connection commits; this connection's own writes set _changed.
        (data_version,) = connection.execute("PRAGMA data_version").fetchone()
        if self._index is not None and not self._changed and self._index.data_version == data_version:
            return self._index

        self._changed = False
        update, rows_kept = None, True
        if self._index is not None:
            update = read_new_embeddings(
                connection, self._index, self._embedding_size, self._stored_dtype, self._where()
            )
            if update is None and self._own_rewrites:  # this object's removals and renames, applied in memory
                current, self._index = self._index, None  # a removal reuses its memory: read all should this fail
                replayed, rows_kept = self._replay_own_rewrites(current)
                if replayed is not None:
                    update = read_new_embeddings(
                        connection, replayed, self._embedding_size, self._stored_dtype, self._where()
                    )
        self._own_rewrites.clear()
        if update is None:
            # TODO: removals and renames by other connections, and files dropped by enroll_folder, make the next
            # search read the whole gallery again (2-3 s at a million embeddings) and rebuild an IVF index.
            self._index = self._ann = None
            self._index = read_embeddings(
                connection, self._embedding_size, self._stored_dtype, self.dtype, self._where()
            )
            return self._index

        self._index, appended = update
        if self._ann is not None:
            if rows_kept and appended and self._ann.can_grow_to(self._index):
                self._ann.grow(self._index)
            else:
                self._ann = None
        return self._index

    def _replay_own_rewrites(self, index: EmbeddingMatrix) -> tuple[EmbeddingMatrix | None, bool]:
        # Valid only while nobody else deleted or renamed in between: each write must start at the count the
        # previous one ended with. Returns the snapshot (None when that fails) and whether its rows kept their places.
        count, rows_kept = index.rewrites, True
        for before, after, change in self._own_rewrites:
            if before != count or change is None:
                return None, False
            kind, identity_id, value = change
            if kind == "remove":
                last_row_id = min(index.last_row_id, int(value))
                index = without_identity(index, identity_id, rewrites=after, last_row_id=last_row_id)
                rows_kept = False
            else:
                index = renamed(index, identity_id, str(value), rewrites=after)
            count = after
        return index, rows_kept

    def _current_ann(self, index: EmbeddingMatrix) -> IvfIndex | None:
        if self._index_kind == "exact" or (self._index_kind == "auto" and len(index.matrix) < AUTO_IVF_MIN_EMBEDDINGS):
            return None
        if self._ann is None or self._ann.source is not index:
            began = time.perf_counter()
            self._ann = IvfIndex(index)
            logger.info(
                "built an IVF index of %d embeddings (%d lists, %d probed) in %.1f s",
                len(index.matrix),
                self._ann.nlist,
                self._ann.nprobe,
                time.perf_counter() - began,
            )
        return self._ann

    def _scrub(self) -> None:
        if self._path is not None:
            scrub_wal(self._db(), self._where())


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an identity name must be a non-empty string, got {name!r}")
