"""Galleries hold biometric data: private files, removal that really deletes, no embeddings in the logs."""

import logging
import os
import stat
from contextlib import contextmanager

import numpy as np
import pytest

from edge_facenet.gallery import Gallery
from tests.test_gallery import ColourRecognizer, make_faces

D = 32
FINGERPRINT = "ab" * 32


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(value):
    previous = os.umask(value)
    try:
        yield
    finally:
        os.umask(previous)


def sidecars(path):
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]


def stored_bytes(vector, dtype="<f4"):
    """The blob a gallery stores for an embedding: the L2-normalised vector, little-endian."""
    return (np.asarray(vector, dtype=np.float64) / np.linalg.norm(vector)).astype(np.float32).astype(dtype).tobytes()


def file_bytes(path):
    return b"".join(file.read_bytes() for file in [path, *sidecars(path)] if file.exists())


@pytest.mark.parametrize("mask", [0o022, 0o000, 0o277])
def test_the_file_its_log_and_the_folders_it_creates_are_private_whatever_the_umask(tmp_path, mask):
    path = tmp_path / "new" / "deeper" / "gallery.sqlite3"
    with umask(mask), Gallery(path, FINGERPRINT, D) as gallery:
        gallery.add("ada", np.ones(D))
        wal, shm = sidecars(path)
        assert wal.exists() and shm.exists()  # while a connection is open
        assert [mode(file) for file in (path, wal, shm)] == [0o600, 0o600, 0o600]
    assert mode(tmp_path / "new") == mode(tmp_path / "new" / "deeper") == 0o700


def test_an_existing_file_and_folder_keep_their_modes(tmp_path):
    tmp_path.chmod(0o755)
    path = tmp_path / "gallery.sqlite3"
    Gallery(path, FINGERPRINT, D).close()
    path.chmod(0o640)  # the owner chose to share it with the group

    with Gallery(path, FINGERPRINT, D) as gallery:
        gallery.add("ada", np.ones(D))
        assert mode(path) == 0o640 and mode(sidecars(path)[0]) == 0o640
    assert mode(tmp_path) == 0o755


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_removed_embeddings_leave_the_file_and_its_write_ahead_log(tmp_path, dtype):
    path = tmp_path / "gallery.sqlite3"
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((40, D))
    blob_dtype = "<f4" if dtype == "float32" else "<f2"
    with Gallery(path, FINGERPRINT, D, dtype=dtype) as gallery, Gallery(path, FINGERPRINT, D) as reader:
        gallery.add_many([f"person{i:02d}" for i in range(40)], vectors)
        gallery.add("victim", vectors[:3] + 1.0, source_path="victim.jpg")
        gallery.search(vectors[0])
        reader.search(vectors[0])  # another connection has read the file and stays open
        victim = [stored_bytes(vector, blob_dtype) for vector in vectors[:3] + 1.0]
        assert all(blob in file_bytes(path) for blob in victim)

        assert gallery.remove("victim") == 3

        content = file_bytes(path)
        assert not any(blob in content for blob in victim)
        assert b"victim.jpg" not in content and b"victim" not in content
        assert stored_bytes(vectors[5], blob_dtype) in content  # the others stay
        assert sidecars(path)[0].stat().st_size == 0  # the log was truncated
        assert "victim" not in reader.names()


def test_vacuum_shrinks_the_file_after_removals_and_keeps_the_rest(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    vectors = np.random.default_rng(1).standard_normal((3000, D))
    names = [f"person{i:04d}" for i in range(3000)]
    with Gallery(path, FINGERPRINT, D) as gallery, Gallery(path, FINGERPRINT, D) as other:
        gallery.add_many(names, vectors)
        for name in names[1000:]:
            other.remove(name)  # zeroes the rows and checkpoints the log into the file, which keeps its pages
        size = path.stat().st_size
        shrunk = gallery.vacuum()
        assert shrunk > size // 2 and path.stat().st_size == size - shrunk
        assert len(gallery) == 1000 and [hits[0].name for hits in gallery.search(vectors[:5], k=1)] == names[:5]
    with Gallery(None, FINGERPRINT, D) as memory:
        assert memory.vacuum() == 0


def test_embeddings_dropped_by_re_enrolment_leave_the_file(tmp_path):
    root = (tmp_path / "faces").resolve()
    images = make_faces(root)
    recognizer = ColourRecognizer()
    gallery, _ = Gallery.from_folder(root, recognizer)
    gallery.close()
    bob = recognizer.embed_largest_face(images[root / "bob" / "1.png"])
    path = root / "gallery.sqlite3"
    assert stored_bytes(bob) in file_bytes(path)

    (root / "bob" / "1.png").unlink()
    gallery, report = Gallery.from_folder(root, ColourRecognizer())
    with gallery:
        assert report.removed == (root / "bob" / "1.png",)
        assert stored_bytes(bob) not in file_bytes(path)


def test_no_log_record_holds_an_embedding(tmp_path, caplog):
    root = (tmp_path / "faces").resolve()
    make_faces(root)
    (root / "bob" / "broken.png").write_bytes(b"not a png")
    vector = np.random.default_rng(1).standard_normal(64)
    with caplog.at_level(logging.DEBUG, logger="edge_facenet"):
        gallery, _ = Gallery.from_folder(root, ColourRecognizer())
        with gallery:
            gallery.add("ada", vector)
            gallery.search(vector)
            gallery.remove("ada")
        with Gallery(root / "gallery.sqlite3", ColourRecognizer.fingerprint, 64, dtype="float16") as reopened:
            reopened.search(vector)

    assert caplog.records  # enrolment logs a warning and a summary
    normalised = vector / np.linalg.norm(vector)
    for record in caplog.records:
        message = record.getMessage()
        assert "[" not in message and "array(" not in message
        assert not any(f"{value:.4f}" in message for value in normalised[:8])
