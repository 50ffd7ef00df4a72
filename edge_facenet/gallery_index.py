"""Search structures over a gallery's embeddings: the exact in-memory matrix and an optional faiss IVF index.

:class:`~edge_facenet.gallery.Gallery` loads its embeddings into an :class:`EmbeddingMatrix` (rows grouped by
identity) and answers queries with :func:`exact_search`, or with an :class:`IvfIndex` built from that matrix when
the gallery was opened with ``index="ivf"``, or with ``index="auto"`` from :data:`AUTO_IVF_MIN_EMBEDDINGS` up.
Both score an identity by the best (maximum) similarity over its embeddings.

Measured on a 2-core x86 CPU with 128-D embeddings, one per identity, 1M identities: exact top-5 search takes about
25 ms per query with a float32 matrix (512 MB) and about 40 ms with a float16 one (256 MB; numpy has no fast float16
product, so rows are widened to float32 in cache-sized blocks by two threads); the IVF index takes about 8 ms at
recall@1 0.999 of exact, but costs about 8 s to build and another 0.5 GB for its own float32 copy of the rows.
Rows added to a gallery in use are appended to the loaded matrix and to the IVF index (rebuilt once it has doubled),
and the gallery's own removals and renames are applied to it (:func:`without_identity`, :func:`renamed`); other
changes make the gallery read everything again.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from edge_facenet._optional import require

logger = logging.getLogger(__name__)

DTYPES = ("float32", "float16")
INDEX_KINDS = ("exact", "ivf", "auto")
# index="auto" searches with the IVF index from this many embeddings on: where exact float32 top-5 search of one
# query passes 50 ms on a 2-core CPU (measured 20 ms at 1M, 50 ms at 2M; float16 passes it near 1.4M).
AUTO_IVF_MIN_EMBEDDINGS = 2_000_000

_BLOCK_ROWS = 2048  # rows widened from float16 at a time: 2048 x 128 float32 = 1 MB, about one L2 cache
_PARALLEL_MIN_ROWS = 1 << 17  # float16 matrices from this size are widened by several threads
_SIMILARITY_BUDGET = 1 << 25  # similarities (queries x rows) computed at once: 128 MB of float32
_TOP_K_BLOCK = 1024
_MOVE_ROWS = 1 << 15  # rows moved at a time when a removal closes the gap in the matrix
# A float16 bit pattern shifted left by 13 and with the sign moved to bit 31 is the float32 bit pattern of the same
# value times 2**-112 (normal and subnormal values alike); the query is scaled by 2**112 instead of every row.
_FLOAT16_EXPONENT_SHIFT = np.float32(2.0**112)
_FLOAT16_KEEP_BITS = np.int32(-0x70000001)  # 0x8FFFFFFF: drops bits 28-30 that the int16 sign extension left
_IVF_LISTS_PER_SQRT = 2.0  # nlist = 2 sqrt(rows)
_IVF_PROBED_FRACTION = 0.25  # nprobe = nlist / 4: recall@1 0.999 at 1M, 0.998 at 50k on random identities
_IVF_TRAINING_PER_LIST = 50  # faiss asks for at least 39 training points per list

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


@dataclass(frozen=True, eq=False)
class EmbeddingMatrix:
    """A gallery's embeddings in memory, rows grouped by identity in the order of the identities' database ids.

    Attributes:
        names: The identities that have embeddings, in the order of their groups of rows.
        starts: The first row of each identity, or None when every identity has exactly one row.
        matrix: (rows, D) unit embeddings, float32 or float16, C-contiguous.
        data_version: SQLite's ``PRAGMA data_version`` of the connection when the rows were read.
        identity_ids: The database id of each identity in ``names`` (ascending).
        last_row_id: The largest embedding id read (0 for none): later rows have larger ids.
        rewrites: The gallery's count of changes that delete, move or rename rows when the rows were read (see
            :mod:`edge_facenet.gallery_storage`); while it stands still, the file only gained rows.
        spare: Memory for rows appended later: ``matrix`` is its first rows; None when it has no room to spare.
            Its pages are untouched until rows are written there, so the operating system backs them only then.
    """

    names: tuple[str, ...]
    starts: np.ndarray | None
    matrix: np.ndarray
    data_version: int
    identity_ids: np.ndarray | None = None
    last_row_id: int = 0
    rewrites: int = 0
    spare: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        """Bytes held by the matrix and the row groups (spare rows take memory only once written)."""
        return self.matrix.nbytes + (0 if self.starts is None else self.starts.nbytes)

    @cached_property
    def row_identity(self) -> np.ndarray:
        """The identity index of every row."""
        if self.starts is None:
            return np.arange(len(self.matrix))
        return np.repeat(np.arange(len(self.names)), np.diff(np.append(self.starts, len(self.matrix))))


def grouped_rows(
    matrix: np.ndarray,
    identity_ids: np.ndarray,
    names_by_id: dict[int, str],
    spare: np.ndarray | None = None,
    **fields: int,
) -> EmbeddingMatrix:
    """Group rows by identity (stable: an identity's rows keep their order) into an :class:`EmbeddingMatrix`.

    Args:
        matrix: (rows, D) embeddings.
        identity_ids: The database id of each row's identity.
        names_by_id: The name of every id in ``identity_ids``.
        spare: Memory that ``matrix`` is the first rows of, kept for later rows unless the rows must be reordered.
        fields: ``data_version``, ``last_row_id`` and ``rewrites`` of the snapshot.
    """
    rows = len(matrix)
    if rows and (np.diff(identity_ids) < 0).any():  # rows added to an older identity: group them
        order = np.argsort(identity_ids, kind="stable")
        matrix, identity_ids, spare = matrix[order], identity_ids[order], None
    starts = np.flatnonzero(np.diff(identity_ids, prepend=identity_ids[:1] - 1)) if rows else np.zeros(0, np.intp)
    group_ids = identity_ids[starts].astype(np.int64)
    return EmbeddingMatrix(
        names=tuple(names_by_id[identity] for identity in group_ids.tolist()),
        starts=None if len(starts) == rows else starts,
        matrix=np.ascontiguousarray(matrix),
        identity_ids=group_ids,
        spare=spare,
        **fields,
    )


def without_identity(embeddings: EmbeddingMatrix, identity_id: int, **fields: int) -> EmbeddingMatrix:
    """The snapshot less one identity's rows, made by moving the later rows up in the snapshot's own memory.

    Moving rows within memory already in use is several times faster than copying into new memory, which the
    operating system must first provide page by page. The old snapshot is invalid afterwards: use the new one only.

    Args:
        embeddings: The snapshot.
        identity_id: The database id of the identity to drop; one the snapshot lacks changes nothing but ``fields``.
        fields: ``rewrites`` and ``last_row_id`` of the new snapshot.
    """
    assert embeddings.identity_ids is not None, "snapshots made by grouped_rows know their identity ids"
    group = int(np.searchsorted(embeddings.identity_ids, identity_id))
    if group == len(embeddings.identity_ids) or embeddings.identity_ids[group] != identity_id:
        return replace(embeddings, **fields)
    rows = len(embeddings.matrix)
    starts = np.arange(rows) if embeddings.starts is None else embeddings.starts
    first, stop = int(starts[group]), int(starts[group + 1]) if group + 1 < len(starts) else rows
    buffer = embeddings.matrix if embeddings.spare is None else embeddings.spare
    _move_rows_up(buffer, stop, rows, first)
    left = rows - (stop - first)
    kept = np.concatenate([starts[:group], starts[group + 1 :] - (stop - first)]).astype(np.intp)
    return replace(
        embeddings,
        names=embeddings.names[:group] + embeddings.names[group + 1 :],
        starts=None if len(kept) == left else kept,
        matrix=buffer[:left],
        identity_ids=np.delete(embeddings.identity_ids, group),
        spare=buffer,
        **fields,
    )


def _move_rows_up(buffer: np.ndarray, start: int, stop: int, to: int) -> None:
    # buffer[to : to + stop - start] = buffer[start:stop] for to < start, through a small bounce buffer: numpy would
    # copy the whole overlapping source first.
    bounce = np.empty((min(_MOVE_ROWS, stop - start), buffer.shape[1]), dtype=buffer.dtype)
    for first in range(start, stop, _MOVE_ROWS):
        count = min(_MOVE_ROWS, stop - first)
        bounce[:count] = buffer[first : first + count]
        buffer[to + first - start : to + first - start + count] = bounce[:count]


def renamed(embeddings: EmbeddingMatrix, identity_id: int, name: str, **fields: int) -> EmbeddingMatrix:
    """The snapshot with one identity under a new name (the rows are shared, not copied)."""
    assert embeddings.identity_ids is not None, "snapshots made by grouped_rows know their identity ids"
    group = int(np.searchsorted(embeddings.identity_ids, identity_id))
    if group == len(embeddings.identity_ids) or embeddings.identity_ids[group] != identity_id:
        return replace(embeddings, **fields)
    names = (*embeddings.names[:group], name, *embeddings.names[group + 1 :])
    return replace(embeddings, names=names, **fields)


def spare_rows(rows: int, size: int, dtype: np.dtype | str) -> np.ndarray:
    """Memory for ``rows`` rows and a quarter more (at least 64) to append into later."""
    return np.empty((rows + max(rows // 4, 64), size), dtype=dtype)


def with_new_rows(
    embeddings: EmbeddingMatrix, vectors: np.ndarray, identity_ids: np.ndarray, names_by_id: dict[int, str], **fields
) -> tuple[EmbeddingMatrix, bool]:
    """Add rows read after a snapshot to it, without reading the snapshot's rows again.

    Rows of identities newer than every identity of the snapshot (the usual enrolment) are written into its spare
    memory (which grows by a quarter when full, one copy); rows for an older identity make the matrix be regrouped
    (one copy).

    Args:
        embeddings: The snapshot; it stays valid (its rows are never written). Extend only the newest snapshot of a
            chain: snapshots extended from one another share their spare memory.
        vectors: (M, D) new rows in the order of their ids.
        identity_ids: The database id of each new row's identity.
        names_by_id: The name of every new identity (existing ones may be left out).
        fields: ``data_version``, ``last_row_id`` and ``rewrites`` of the new snapshot.

    Returns:
        The new snapshot, and whether its rows are the old rows followed by the new ones (row indices kept).
    """
    old_ids = embeddings.identity_ids
    assert old_ids is not None, "snapshots made by grouped_rows know their identity ids"
    vectors = vectors.astype(embeddings.matrix.dtype, copy=False)
    rows, new = len(embeddings.matrix), len(vectors)
    appendable = (np.diff(identity_ids) >= 0).all() and (not len(old_ids) or identity_ids[0] >= old_ids[-1])
    if not appendable:
        names = dict(zip(old_ids.tolist(), embeddings.names, strict=True)) | names_by_id
        combined = np.concatenate([old_ids[embeddings.row_identity], identity_ids])
        return grouped_rows(np.concatenate([embeddings.matrix, vectors]), combined, names, **fields), False

    spare = embeddings.spare
    if spare is None or len(spare) < rows + new:
        spare = spare_rows(rows + new, vectors.shape[1], embeddings.matrix.dtype)
        spare[:rows] = embeddings.matrix
    spare[rows : rows + new] = vectors
    matrix = spare[: rows + new]

    last = old_ids[-1] if len(old_ids) else -1
    fresh = np.flatnonzero(np.diff(identity_ids, prepend=last))  # new rows that start an identity
    old_starts = np.arange(rows) if embeddings.starts is None else embeddings.starts
    starts = np.concatenate([old_starts, rows + fresh]).astype(np.intp)
    group_ids = np.concatenate([old_ids, identity_ids[fresh]]).astype(np.int64)
    snapshot = EmbeddingMatrix(
        names=embeddings.names + tuple(names_by_id[identity] for identity in identity_ids[fresh].tolist()),
        starts=None if len(starts) == rows + new else starts,
        matrix=matrix,
        identity_ids=group_ids,
        spare=spare,
        **fields,
    )
    return snapshot, True


def exact_search(embeddings: EmbeddingMatrix, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Score every identity against each query and keep the best ``k``.

    Args:
        embeddings: The gallery in memory.
        queries: (N, D) float32 unit queries.
        k: Identities to return per query.

    Returns:
        Per query, up to ``k`` (identity index, similarity) pairs, best first.
    """
    rows = max(1, len(embeddings.matrix))
    batch = max(1, _SIMILARITY_BUDGET // rows)
    results: list[list[tuple[int, float]]] = []
    for first in range(0, len(queries), batch):
        scores = similarities(embeddings.matrix, queries[first : first + batch])  # N x rows
        if embeddings.starts is not None:
            scores = np.maximum.reduceat(scores, embeddings.starts, axis=1)  # N x identities
        for row in scores:
            best = top_k(row, k)
            results.append(list(zip(best.tolist(), np.clip(row[best], -1.0, 1.0).tolist(), strict=True)))
    return results


def similarities(matrix: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Inner products of (N, D) float32 queries with every row of a float32 or float16 matrix, as (N, rows) float32."""
    if matrix.dtype == np.float32:
        return queries @ matrix.T

    # rows x N, filled block by block, so that its transpose is cheap for one query
    out = np.empty((len(matrix), len(queries)), dtype=np.float32)
    scaled = np.ascontiguousarray((queries * _FLOAT16_EXPONENT_SHIFT).T)
    bits = matrix.view(np.int16)
    workers = min(os.cpu_count() or 1, 4) if len(matrix) >= _PARALLEL_MIN_ROWS else 1
    if workers == 1:
        _widened_products(bits, scaled, out, 0, len(matrix))
    else:
        bounds = np.linspace(0, len(matrix), workers + 1).astype(int)
        jobs = [
            _thread_pool().submit(_widened_products, bits, scaled, out, start, stop)
            for start, stop in itertools.pairwise(bounds.tolist())
        ]
        for job in jobs:
            job.result()
    return out.T


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values of a 1-D array, largest first (ties: lower index first)."""
    count = len(scores)
    if k < count:
        candidates = _above_kth_block_maximum(scores, k)  # ascending indices
        if len(candidates) > k:
            values = scores[candidates]
            kth = np.partition(values, len(values) - k)[len(values) - k]
            above = candidates[values > kth]
            candidates = np.concatenate([above, candidates[values == kth][: k - len(above)]])
    else:
        candidates = np.arange(count)
    return candidates[np.argsort(-scores[candidates], kind="stable")]


class IvfIndex:
    """Approximate inner-product search over an :class:`EmbeddingMatrix` with a faiss IVF-Flat index.

    The rows are clustered into ``nlist = 2 sqrt(rows)`` lists (k-means on a random sample of 50 rows per list) and a
    query scans the ``nprobe = nlist / 4`` lists whose centroids are nearest. The index keeps its own float32 copy of
    the rows and returns exact inner products for the rows it scans. Below 78 rows (two lists' worth of training
    points) it is a flat, exact faiss index.

    Args:
        embeddings: The gallery in memory; the index serves this snapshot only.

    Attributes:
        source: The snapshot the index was built from.
        nlist: Number of inverted lists (1 for the flat index).
        nprobe: Lists scanned per query.

    Raises:
        ImportError: When faiss is not installed (the ``ann`` extra).
    """

    def __init__(self, embeddings: EmbeddingMatrix) -> None:
        faiss = require("faiss", "ann")
        matrix = embeddings.matrix
        rows, size = matrix.shape
        lists = _list_count(rows)
        self.source = embeddings
        self._built_rows = rows
        self.nlist = lists
        self.nprobe = max(1, math.ceil(lists * _IVF_PROBED_FRACTION))

        self._quantizer = faiss.IndexFlatIP(size)
        if lists == 1:
            self._index = self._quantizer
        else:
            self._index = faiss.IndexIVFFlat(self._quantizer, size, lists, faiss.METRIC_INNER_PRODUCT)
            training = np.random.default_rng(0).choice(rows, min(rows, _IVF_TRAINING_PER_LIST * lists), replace=False)
            self._index.train(np.ascontiguousarray(matrix[np.sort(training)], dtype=np.float32))
            self._index.nprobe = self.nprobe
        self._add(matrix)

    def can_grow_to(self, embeddings: EmbeddingMatrix) -> bool:
        """Whether :meth:`grow` keeps the index fit for ``embeddings``: at most twice the rows it was built with."""
        rows = len(embeddings.matrix)
        return rows <= 2 * self._built_rows and (self.nlist > 1 or _list_count(rows) == 1)

    def grow(self, embeddings: EmbeddingMatrix) -> None:
        """Serve a newer snapshot whose first rows are this index's rows (same order): add only the new rows.

        The lists keep the centroids they were trained with, so grow an index only while :meth:`can_grow_to` says so.
        """
        self._add(embeddings.matrix[len(self.source.matrix) :])
        self.source = embeddings

    def _add(self, rows: np.ndarray) -> None:
        for start in range(0, len(rows), 1 << 16):
            self._index.add(np.ascontiguousarray(rows[start : start + (1 << 16)], dtype=np.float32))

    @property
    def nbytes(self) -> int:
        """Approximate bytes held by the index: its copy of the rows, their ids and the centroids."""
        rows, size = self.source.matrix.shape
        return rows * (4 * size + 8) + self.nlist * 4 * size

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """Approximate :func:`exact_search`: per (N, D) float32 unit query, up to ``k`` (identity, similarity)."""
        row_identity = self.source.row_identity
        rows = len(row_identity)
        # Fetch more rows than k when identities have several, and more again for a query whose rows belong to
        # fewer than k identities.
        fetch = min(rows, k if self.source.starts is None else 4 * k)
        found, labels = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch)
        results = [_first_per_identity(row_identity, *row, k) for row in zip(labels, found, strict=True)]
        for position, query in enumerate(queries):
            more = fetch
            while len(results[position]) < k and more < rows:
                more = min(rows, 4 * more)
                found, labels = self._index.search(np.ascontiguousarray(query[None], dtype=np.float32), more)
                results[position] = _first_per_identity(row_identity, labels[0], found[0], k)
        return results


def _list_count(rows: int) -> int:
    return int(max(1, min(round(_IVF_LISTS_PER_SQRT * math.sqrt(rows)), rows // 39)))  # faiss: >= 39 per list


def _first_per_identity(
    row_identity: np.ndarray, labels: np.ndarray, found: np.ndarray, k: int
) -> list[tuple[int, float]]:
    hits: list[tuple[int, float]] = []
    seen: set[int] = set()
    for label, similarity in zip(labels.tolist(), found.tolist(), strict=True):
        if label < 0:  # faiss pads with -1 when the probed lists hold fewer rows than asked for
            break
        identity = int(row_identity[label])
        if identity not in seen:
            seen.add(identity)
            hits.append((identity, min(1.0, max(-1.0, similarity))))
            if len(hits) == k:
                break
    return hits


def _above_kth_block_maximum(scores: np.ndarray, k: int) -> np.ndarray:
    # k blocks have a maximum at least as large as the k-th largest block maximum, so the k best scores are all at
    # or above it; usually only a handful of other scores are, so the selection runs on a few elements.
    count = len(scores)
    blocks = count // _TOP_K_BLOCK
    if blocks < k:
        return np.arange(count)
    maxima = scores[: blocks * _TOP_K_BLOCK].reshape(blocks, _TOP_K_BLOCK).max(axis=1)
    if count > blocks * _TOP_K_BLOCK:
        maxima = np.append(maxima, scores[blocks * _TOP_K_BLOCK :].max())
    threshold = np.partition(maxima, len(maxima) - k)[len(maxima) - k]
    return np.flatnonzero(scores >= threshold)


def _widened_products(bits: np.ndarray, scaled: np.ndarray, out: np.ndarray, start: int, stop: int) -> None:
    block = np.empty((min(_BLOCK_ROWS, stop - start), bits.shape[1]), dtype=np.int32)
    for first in range(start, stop, _BLOCK_ROWS):
        last = min(first + _BLOCK_ROWS, stop)
        widened = block[: last - first]
        np.left_shift(bits[first:last], 13, out=widened, dtype=np.int32)
        np.bitwise_and(widened, _FLOAT16_KEEP_BITS, out=widened)
        np.matmul(widened.view(np.float32), scaled, out=out[first:last])


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="edge_facenet-gallery")
        return _pool


def normalised_rows(embeddings: np.ndarray, size: int, what: str) -> np.ndarray:
    """(D,) or (N, D) real numbers as (N, D) float32 unit rows.

    Raises:
        ValueError: Naming ``what``, for a wrong shape or dtype, NaN or infinite values, or an all-zero row.
    """
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
