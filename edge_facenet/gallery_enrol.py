"""Enrolling a gallery from a folder of photos: the :class:`~edge_facenet.gallery.Gallery` methods that do it.

:class:`FolderEnrolment` is mixed into ``Gallery`` and works through its private helpers (``_db``, ``_write``,
``_insert``, ``_scrub``); reading and hashing the folder is :mod:`edge_facenet.gallery_folder`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_facenet.gallery_folder import (
    EnrollingRecognizer,
    EnrollmentReport,
    FolderScan,
    enrolment_root,
    one_line,
    scan_folder,
)
from edge_facenet.gallery_index import normalised_rows
from edge_facenet.gallery_storage import GalleryMismatchError
from edge_facenet.images import decode_image

if TYPE_CHECKING:
    from edge_facenet.gallery import Gallery

logger = logging.getLogger(__name__)

GALLERY_FILENAME = "gallery.sqlite3"
_DROP_EMPTY_IDENTITY = (
    "DELETE FROM identities WHERE name = ? AND NOT EXISTS (SELECT 1 FROM embeddings WHERE identity_id = identities.id)"
)


class FolderEnrolment:
    """``Gallery.from_folder`` and ``Gallery.enroll_folder``."""

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
        root = enrolment_root(folder)
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
        unchanged folder embeds nothing. An image found in the folders of two identities is enrolled under neither
        and reported for each (see :mod:`edge_facenet.gallery_folder`).
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
        root = enrolment_root(folder)
        if recognizer.fingerprint != self._fingerprint or recognizer.embedding_size != self._embedding_size:
            raise GalleryMismatchError(
                f"{self._where()} belongs to embedder {self._fingerprint[:12]} ({self._embedding_size}-D), "
                f"not to the recognizer's {str(recognizer.fingerprint)[:12]} ({recognizer.embedding_size}-D)"
            )
        prefix = os.path.join(str(root), "")
        scan = scan_folder(root)
        failed = list(scan.failed)
        added: list[Path] = []
        unchanged: list[Path] = []
        removed: list[Path] = []

        for name, files in scan.identities.items():
            outcome = self._enroll_identity(name, files, prefix, recognizer, scan)
            added += outcome.added
            unchanged += outcome.unchanged
            failed += outcome.failed
            removed += outcome.removed

        # Identities whose folder disappeared; a folder that could not be listed keeps its embeddings.
        removed += self._drop_vanished(prefix, keep=set(scan.identities) | scan.unlisted)
        if removed:
            self._scrub()

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

    def _enroll_identity(
        self, name: str, files: list[Path], prefix: str, recognizer: EnrollingRecognizer, scan: FolderScan
    ) -> EnrollmentReport:
        query = (
            "SELECT e.id, e.source_path, e.source_sha256 FROM embeddings e "
            "JOIN identities i ON i.id = e.identity_id WHERE i.name = ?"
        )
        rows = self._db().execute(query, (name,)).fetchall()
        enrolled = {sha256 for _, _, sha256 in rows if sha256 is not None}
        holder: dict[str, Path] = {}  # sha256 -> a file of this folder with that content
        unreadable = {str(file) for file in scan.unreadable}
        new_rows: list[tuple[np.ndarray, str | None, str | None]] = []
        added: list[Path] = []
        unchanged: list[Path] = []
        failed: list[tuple[Path, str]] = []

        for file in files:
            sha256 = scan.hashes.get(file)
            if sha256 is None:  # unreadable, empty or shared with another identity: reported by the scan
                continue
            if sha256 in enrolled or sha256 in holder:
                unchanged.append(file)
                holder.setdefault(sha256, file)
                continue

            try:
                data = file.read_bytes()
            except OSError as error:
                failed.append((file, f"cannot read file: {one_line(error)}"))
                unreadable.add(str(file))
                continue
            sha256 = hashlib.sha256(data).hexdigest()  # of the bytes decoded, should the file have changed since
            image = decode_image(data)
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
                (normalised_rows(embedding, self._embedding_size, f"the embedding of {file}")[0], str(file), sha256)
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
            elif scan.hashes.get(Path(path)) != sha256:
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
