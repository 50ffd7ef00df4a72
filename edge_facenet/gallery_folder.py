"""Reading an enrolment folder of ``<folder>/<name>/<image>`` files for :meth:`Gallery.enroll_folder`.

The folder is scanned once before anything is embedded: every image file is read and hashed, so that an image found
in the folders of two identities (the same sha256) is known before either identity is enrolled. One of its two
labels is wrong, or it shows both people: it is enrolled under neither (an earlier enrolment of it is dropped) and
every copy is reported as failed, naming another copy, until all but one copy are removed.
Only one level of sub-folders is read, so symbolic-link loops cannot make the scan run forever: a link that loops
is reported as unreadable, and an identity folder that links back to the enrolment folder or above it is reported.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Protocol

import numpy as np

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".webp")


@dataclass(frozen=True)
class EnrollmentReport:
    """What :meth:`Gallery.enroll_folder` did, with absolute paths in sorted order.

    Attributes:
        added: Files newly embedded and enrolled.
        unchanged: Files whose content (sha256) was already enrolled for their identity; not embedded again.
        failed: (file, one-line reason) for files that could not be enrolled (unreadable, empty, not an image, no
            face, or the same image as a file of another identity) and for identity folders that could not be listed.
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
class FolderScan:
    """An enrolment folder as read before enrolment.

    Attributes:
        identities: Identity name -> its image files, sorted by name.
        hashes: sha256 of every image file to enrol (readable, not empty, not shared with another identity).
        failed: (path, reason) for what cannot be enrolled, found while scanning.
        unlisted: Identities whose folder could not be listed; their earlier embeddings stay.
        unreadable: Files that could not be read (perhaps for a moment); their earlier embeddings stay.
    """

    identities: dict[str, list[Path]]
    hashes: dict[Path, str]
    failed: list[tuple[Path, str]]
    unlisted: set[str]
    unreadable: set[Path]


def enrolment_root(folder: str | PathLike[str]) -> Path:
    """The resolved enrolment folder.

    Raises:
        FileNotFoundError, NotADirectoryError: When ``folder`` is not an existing folder.
    """
    path = Path(folder)
    if not path.exists():
        raise FileNotFoundError(f"enrolment folder not found: {path}")
    if not path.is_dir():
        raise NotADirectoryError(f"enrolment folder is a file, expected a folder of <name>/<image> files: {path}")
    return path.resolve()


def scan_folder(root: Path) -> FolderScan:
    """List the identity folders of a resolved enrolment folder and hash their image files."""
    identities, failed, unlisted = _identity_folders(root)
    hashes: dict[Path, str] = {}
    unreadable: set[Path] = set()
    for files in identities.values():
        for file in files:
            try:
                data = file.read_bytes()
            except OSError as error:
                failed.append((file, f"cannot read file: {one_line(error)}"))
                unreadable.add(file)
                continue
            if not data:
                failed.append((file, "empty file"))
                continue
            hashes[file] = hashlib.sha256(data).hexdigest()

    holders: dict[str, dict[str, Path]] = {}  # sha256 -> identity -> its first file with that content
    for name, files in identities.items():
        for file in files:
            if file in hashes:
                holders.setdefault(hashes[file], {}).setdefault(name, file)
    shared = [
        (file, name, holders[hashes[file]])
        for name, files in identities.items()
        for file in files
        if file in hashes and len(holders[hashes[file]]) > 1
    ]
    for file, name, holder in shared:
        other_name, other = next((other_name, other) for other_name, other in holder.items() if other_name != name)
        failed.append((file, f"same image as {other} of identity {other_name!r}; enrolled under neither"))
        del hashes[file]
    return FolderScan(identities, hashes, failed, unlisted, unreadable)


def one_line(error: OSError) -> str:
    """The reason of an OSError on one line, without the path."""
    text = error.strerror or str(error) or type(error).__name__
    return " ".join(text.split())


def _identity_folders(root: Path) -> tuple[dict[str, list[Path]], list[tuple[Path, str]], set[str]]:
    folders: dict[str, list[Path]] = {}
    failed: list[tuple[Path, str]] = []
    unlisted: set[str] = set()
    for entry in sorted(root.iterdir(), key=lambda path: path.name):
        if entry.name.startswith(".") or not entry.is_dir():
            continue  # is_dir() is False for a link that loops
        if entry.is_symlink() and _links_back(entry, root):
            failed.append((entry, "identity folder links back to the enrolment folder; not followed"))
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
            failed.append((entry, f"cannot list folder: {one_line(error)}"))
            unlisted.add(entry.name)
            continue
        folders[entry.name] = sorted(files, key=lambda path: path.name)
    return folders, failed, unlisted


def _links_back(entry: Path, root: Path) -> bool:
    try:
        target = entry.resolve()
    except (OSError, RuntimeError):  # a loop: RuntimeError before Python 3.13
        return True
    return target == root or target in root.parents
