import hashlib
import logging
import shutil
import sqlite3
from contextlib import closing

import cv2
import numpy as np
import pytest

from edge_facenet.gallery import Candidate, Gallery, GalleryMismatchError

D = 4
FINGERPRINT = "ab" * 32
OTHER_FINGERPRINT = "cd" * 32

RED, GREEN, BLUE, CYAN, BLACK = (0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 0), (0, 0, 0)


def unit(*values):
    vector = np.asarray(values, dtype=np.float64)
    return vector / np.linalg.norm(vector)


def at_similarity(similarity):
    """A unit vector whose cosine similarity to (1, 0, 0, 0) is ``similarity``."""
    return np.array([similarity, np.sqrt(1 - similarity**2), 0, 0])


def raw_connection(path):
    """A plain autocommit SQLite connection, to look at or tamper with a gallery file from outside."""
    return closing(sqlite3.connect(path, isolation_level=None))


def ranking(candidates):
    return [(candidate.name, round(candidate.similarity, 4)) for candidate in candidates]


@pytest.fixture
def gallery():
    with Gallery(None, FINGERPRINT, D) as gallery:
        yield gallery


class ColourRecognizer:
    """Stands in for the real recognizer, which gets its own tests once it exists.

    The embedding is the image shrunk to 4x4 BGR pixels (48 values, zero-padded to 64), so images of different
    solid colours embed orthogonally and an image embeds like itself; an all-black image shows "no face".
    """

    fingerprint = hashlib.sha256(b"colour recognizer").hexdigest()
    embedding_size = 64

    def __init__(self, fail_on=None):
        self.calls = 0
        self.fail_on = fail_on

    def embed_largest_face(self, image):
        self.calls += 1
        if self.fail_on is not None and np.array_equal(image[0, 0], self.fail_on):
            raise RuntimeError("the recognizer broke")
        if not image.any():
            return None
        embedding = np.zeros(self.embedding_size, dtype=np.float32)
        embedding[:48] = cv2.resize(image, (4, 4), interpolation=cv2.INTER_AREA).ravel() / 255.0
        return embedding


def write_image(path, colour, size=16):
    image = np.zeros((size, size, 3), dtype=np.uint8)
    image[:] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix, image)
    assert ok
    encoded.tofile(path)  # works for unicode paths, unlike cv2.imwrite on some platforms
    return image


def make_faces(root):
    """alice: two red photos, bob: one green, carol: one blue. Returns {path: image}."""
    return {
        root / "alice" / "1.png": write_image(root / "alice" / "1.png", RED),
        root / "alice" / "2.JPG": write_image(root / "alice" / "2.JPG", RED),
        root / "bob" / "1.png": write_image(root / "bob" / "1.png", GREEN),
        root / "carol" / "1.bmp": write_image(root / "carol" / "1.bmp", BLUE),
    }


@pytest.fixture
def faces(tmp_path):
    root = (tmp_path / "faces").resolve()
    make_faces(root)
    return root


def test_search_returns_the_identity_of_a_known_vector(gallery):
    gallery.add("alice", unit(1, 0, 0, 0))
    gallery.add("bob", unit(0, 1, 0, 0))
    gallery.add("carol", unit(0, 0, 1, 0))

    (candidates,) = gallery.search(np.array([0.9, 0.1, 0, 0]), k=2)

    assert [candidate.name for candidate in candidates] == ["alice", "bob"]
    assert candidates[0].similarity == pytest.approx(0.9 / np.hypot(0.9, 0.1), abs=1e-6)
    assert candidates[1].similarity == pytest.approx(0.1 / np.hypot(0.9, 0.1), abs=1e-6)
    assert isinstance(candidates[0], Candidate) and isinstance(candidates[0].similarity, float)


def test_identity_scores_its_best_embedding_not_the_mean(gallery):
    # alice: one embedding at similarity 1.0 and one at 0.0 (mean 0.5); bob: two at 0.6 (mean 0.6).
    gallery.add("alice", np.stack([unit(1, 0, 0, 0), unit(0, 0, 0, 1)]))
    gallery.add("bob", np.stack([unit(0.6, 0.8, 0, 0), unit(0.6, 0, 0.8, 0)]))

    (candidates,) = gallery.search(unit(1, 0, 0, 0))

    assert ranking(candidates) == [("alice", 1.0), ("bob", 0.6)]


def test_top_k_is_sorted_and_capped_by_the_number_of_identities(gallery):
    for name, similarity in [("a", 0.2), ("b", 0.9), ("c", 0.5), ("d", -0.3)]:
        gallery.add(name, at_similarity(similarity))
    queries = np.stack([unit(1, 0, 0, 0), -unit(1, 0, 0, 0)])

    top2, reversed2 = gallery.search(queries, k=2)
    (everyone,) = gallery.search(queries[0], k=10)

    assert ranking(top2) == [("b", 0.9), ("c", 0.5)]
    assert ranking(reversed2) == [("d", 0.3), ("a", -0.2)]
    assert ranking(everyone) == [("b", 0.9), ("c", 0.5), ("a", 0.2), ("d", -0.3)]


def test_empty_gallery_returns_no_candidates(gallery):
    assert gallery.search(unit(1, 0, 0, 0)) == [[]]
    assert gallery.search(np.ones((2, D))) == [[], []]
    assert len(gallery) == 0 and gallery.count() == 0 and gallery.names() == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (np.ones(D + 1), r"shape \(4,\) or \(N, 4\), got shape \(5,\)"),
        (np.ones((2, D - 1)), r"got shape \(2, 3\)"),
        (np.ones((1, 2, D)), r"got shape \(1, 2, 4\)"),
        (np.array([1.0, np.nan, 0, 0]), "NaN or infinite"),
        (np.array([1.0, np.inf, 0, 0]), "NaN or infinite"),
        (np.zeros(D), "all-zero"),
        (np.array(["a", "b", "c", "d"]), "real numbers"),
    ],
)
def test_bad_queries_raise_value_error_saying_what_arrived(gallery, query, message):
    gallery.add("alice", unit(1, 0, 0, 0))
    with pytest.raises(ValueError, match=message):
        gallery.search(query)


def test_bad_additions_and_k_raise_value_error(gallery):
    with pytest.raises(ValueError, match=r"got shape \(3,\)"):
        gallery.add("alice", np.ones(3))
    with pytest.raises(ValueError, match="at least one"):
        gallery.add("alice", np.ones((0, D)))
    with pytest.raises(ValueError, match="non-empty"):
        gallery.add(" ", np.ones(D))
    with pytest.raises(ValueError, match="source_sha256"):
        gallery.add("alice", np.ones(D), source_sha256="not a hash")
    with pytest.raises(ValueError, match="k must be"):
        gallery.search(np.ones(D), k=0)
    assert len(gallery) == 0


def test_embeddings_are_stored_normalised_as_float32_blobs(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, D) as gallery:
        assert gallery.add("alice", np.array([3, 4, 0, 0]), source_path="a.jpg", source_sha256="0" * 64) == 1
        (candidates,) = gallery.search(np.array([3.0, 4.0, 0, 0]))
    assert candidates[0].similarity == pytest.approx(1.0, abs=1e-6)

    with raw_connection(path) as connection:
        vector, source, sha256 = connection.execute(
            "SELECT vector, source_path, source_sha256 FROM embeddings"
        ).fetchone()
    np.testing.assert_allclose(np.frombuffer(vector, dtype="<f4"), [0.6, 0.8, 0, 0], atol=1e-7)
    assert (source, sha256) == ("a.jpg", "0" * 64)


def test_gallery_persists_across_close_and_reopen(tmp_path):
    path = tmp_path / "sub" / "gallery.sqlite3"
    queries = np.random.default_rng(0).normal(size=(3, D))
    with Gallery(path, FINGERPRINT, D) as gallery:
        gallery.add("alice", np.random.default_rng(1).normal(size=(2, D)))
        gallery.add("bob", np.random.default_rng(2).normal(size=D))
        before = gallery.search(queries, k=2)

    with Gallery(path, FINGERPRINT, D) as gallery:
        assert gallery.names() == ["alice", "bob"]
        assert (gallery.count("alice"), gallery.count("bob"), gallery.count(), len(gallery)) == (2, 1, 3, 2)
        assert gallery.search(queries, k=2) == before
    with raw_connection(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_writes_of_another_connection_reach_a_cached_search(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, D) as reader, Gallery(path, FINGERPRINT, D) as writer:
        assert reader.search(unit(1, 0, 0, 0)) == [[]]
        writer.add("alice", unit(1, 0, 0, 0))
        assert ranking(reader.search(unit(1, 0, 0, 0))[0]) == [("alice", 1.0)]
        writer.rename("alice", "ada")
        assert ranking(reader.search(unit(1, 0, 0, 0))[0]) == [("ada", 1.0)]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, D) as gallery:
        gallery.add("alice", unit(1, 0, 0, 0))
        with raw_connection(path) as connection:  # make the database refuse the second row of the next write
            connection.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON embeddings WHEN (SELECT count(*) FROM embeddings) >= 2 "
                "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
            )
        with pytest.raises(sqlite3.DatabaseError, match="disk full"):
            gallery.add("bob", np.eye(D)[:2])

        assert gallery.names() == ["alice"] and gallery.count() == 1
        assert ranking(gallery.search(unit(0, 1, 0, 0))[0]) == [("alice", 0.0)]


def test_another_fingerprint_raises_mismatch_and_leaves_the_file_untouched(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, D) as gallery:
        gallery.add("alice", unit(1, 0, 0, 0))
    content = path.read_bytes()

    with pytest.raises(GalleryMismatchError) as caught:
        Gallery(path, OTHER_FINGERPRINT, D)

    message = str(caught.value)
    assert FINGERPRINT[:12] in message and OTHER_FINGERPRINT[:12] in message and "re-enrol" in message
    assert "\n" not in message and isinstance(caught.value, ValueError)
    assert path.read_bytes() == content
    with Gallery(path, FINGERPRINT, D) as gallery:
        assert gallery.names() == ["alice"]


def test_another_embedding_size_raises_mismatch(tmp_path):
    path = tmp_path / "gallery.sqlite3"
    Gallery(path, FINGERPRINT, D).close()
    with pytest.raises(GalleryMismatchError, match=r"\(4-D\).*\(8-D\)"):
        Gallery(path, FINGERPRINT, 8)


def write_random_bytes(path):
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def write_other_database(path):
    with raw_connection(path) as connection:
        connection.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY)")


@pytest.mark.parametrize("write", [write_random_bytes, write_other_database])
def test_a_file_that_is_not_a_gallery_raises_value_error_naming_it(tmp_path, write):
    path = tmp_path / "photos.db"
    write(path)
    content = path.read_bytes()

    with pytest.raises(ValueError, match="not an edge_facenet gallery") as caught:
        Gallery(path, FINGERPRINT, D)

    assert str(path) in str(caught.value) and not isinstance(caught.value, GalleryMismatchError)
    assert path.read_bytes() == content


def test_invalid_fingerprint_or_size_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="64 lowercase hex"):
        Gallery(None, "ABC", D)
    with pytest.raises(ValueError, match="embedding_size"):
        Gallery(None, FINGERPRINT, 0)
    with pytest.raises(IsADirectoryError):
        Gallery(tmp_path, FINGERPRINT, D)


def test_remove_drops_an_identity_and_its_embeddings(gallery):
    gallery.add("alice", np.stack([unit(1, 0, 0, 0), unit(1, 1, 0, 0)]))
    gallery.add("bob", unit(0, 1, 0, 0))
    assert ranking(gallery.search(unit(1, 0, 0, 0))[0])[0] == ("alice", 1.0)

    assert gallery.remove("alice") == 2

    assert "alice" not in gallery and "bob" in gallery and 42 not in gallery
    assert (len(gallery), gallery.count()) == (1, 1)
    assert [candidate.name for candidate in gallery.search(unit(1, 0, 0, 0))[0]] == ["bob"]
    with pytest.raises(ValueError, match="no identity named 'alice'"):
        gallery.remove("alice")
    with pytest.raises(ValueError, match="did you mean 'bob'"):
        gallery.count("bobb")


def test_rename_keeps_the_embeddings_under_the_new_name(gallery):
    gallery.add("alice", unit(1, 0, 0, 0))
    gallery.add("bob", unit(0, 1, 0, 0))

    gallery.rename("alice", "ada")

    assert gallery.names() == ["ada", "bob"] and gallery.count("ada") == 1
    assert ranking(gallery.search(unit(1, 0, 0, 0), k=1)[0]) == [("ada", 1.0)]
    with pytest.raises(ValueError, match="no identity named 'alice'"):
        gallery.rename("alice", "eve")
    with pytest.raises(ValueError, match="'bob' already exists"):
        gallery.rename("ada", "bob")
    with pytest.raises(ValueError, match="non-empty"):
        gallery.rename("ada", "")
    assert gallery.names() == ["ada", "bob"]


def test_a_closed_gallery_says_so(gallery):
    gallery.close()
    gallery.close()
    with pytest.raises(ValueError, match="closed"):
        gallery.names()


def test_from_folder_enrols_the_images_and_reports_exactly_the_failures(tmp_path, caplog):
    root = (tmp_path / "faces").resolve()
    images = make_faces(root)
    (root / "bob" / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    (root / "bob" / "notes.txt").write_text("not a photo")  # reported: not an image file
    (root / "alice" / ".hidden.jpg").write_bytes(b"junk")  # ignored: hidden
    write_image(root / "carol" / "lights_off.png", BLACK)
    (root / "alice" / "gone.jpg").symlink_to(root / "nowhere.jpg")  # reading it fails
    recognizer = ColourRecognizer()

    with caplog.at_level(logging.WARNING, logger="edge_facenet.gallery"):
        gallery, report = Gallery.from_folder(root, recognizer)

    with gallery:
        assert gallery.path == root / "gallery.sqlite3"
        assert report.added == tuple(sorted(images))
        assert report.unchanged == () and report.removed == ()
        assert report.failed == (
            (root / "alice" / "gone.jpg", "cannot read file: No such file or directory"),
            (root / "bob" / "corrupt.jpg", "cannot decode image"),
            (root / "bob" / "notes.txt", "not an image file (expected .bmp, .jpeg, .jpg, .png, .webp)"),
            (root / "carol" / "lights_off.png", "no face found"),
        )
        assert recognizer.calls == 5  # four faces and the black image; the corrupt file never reaches it
        assert sum("not enrolled" in record.message for record in caplog.records) == 4

        assert gallery.names() == ["alice", "bob", "carol"]
        assert (gallery.count("alice"), gallery.count("bob"), gallery.count("carol")) == (2, 1, 1)
        for colour, name in [(RED, "alice"), (GREEN, "bob"), (BLUE, "carol")]:
            query = ColourRecognizer().embed_largest_face(write_image(tmp_path / "query.png", colour))
            best = gallery.search(query, k=1)[0][0]
            assert best.name == name and best.similarity > 0.99


def test_from_folder_rerun_embeds_nothing(faces):
    gallery, first = Gallery.from_folder(faces, ColourRecognizer())
    gallery.close()
    recognizer = ColourRecognizer()

    gallery, second = Gallery.from_folder(faces, recognizer)

    with gallery:
        assert recognizer.calls == 0
        assert second.unchanged == first.added and len(second.unchanged) == 4
        assert second.added == second.failed == second.removed == ()
        assert gallery.count() == 4


def test_from_folder_re_embeds_a_changed_file_and_drops_a_deleted_one(faces, tmp_path):
    Gallery.from_folder(faces, ColourRecognizer())[0].close()
    write_image(faces / "alice" / "1.png", CYAN)
    (faces / "bob" / "1.png").unlink()
    recognizer = ColourRecognizer()

    gallery, report = Gallery.from_folder(faces, recognizer)

    with gallery:
        assert recognizer.calls == 1
        assert report.added == (faces / "alice" / "1.png",)
        assert report.removed == (faces / "alice" / "1.png", faces / "bob" / "1.png")
        assert report.unchanged == (faces / "alice" / "2.JPG", faces / "carol" / "1.bmp")
        assert gallery.names() == ["alice", "carol"]  # bob has no photo left
        assert gallery.count("alice") == 2
        query = ColourRecognizer().embed_largest_face(write_image(tmp_path / "query.png", CYAN))
        assert ranking(gallery.search(query, k=1)[0]) == [("alice", 1.0)]


def test_from_folder_follows_renamed_files_and_drops_vanished_identities(faces):
    path = faces.parent / "elsewhere.sqlite3"
    Gallery.from_folder(faces, ColourRecognizer(), path=path)[0].close()
    (faces / "alice" / "1.png").rename(faces / "alice" / "one.png")
    shutil.rmtree(faces / "carol")
    recognizer = ColourRecognizer()

    gallery, report = Gallery.from_folder(faces, recognizer, path=path)

    with gallery:
        assert recognizer.calls == 0 and report.added == ()
        assert report.removed == (faces / "carol" / "1.bmp",)
        assert faces / "alice" / "one.png" in report.unchanged
        assert gallery.names() == ["alice", "bob"] and not (faces / "gallery.sqlite3").exists()
    with raw_connection(path) as connection:
        sources = {source for (source,) in connection.execute("SELECT source_path FROM embeddings")}
    assert sources == {str(faces / "alice" / "one.png"), str(faces / "alice" / "2.JPG"), str(faces / "bob" / "1.png")}


def test_from_folder_keeps_the_embedding_of_a_file_it_cannot_read(faces):
    Gallery.from_folder(faces, ColourRecognizer())[0].close()
    (faces / "bob" / "1.png").unlink()
    (faces / "bob" / "1.png").symlink_to(faces / "nowhere.png")  # stands in for a file that lost its read permission

    gallery, report = Gallery.from_folder(faces, ColourRecognizer())

    with gallery:
        assert report.failed == ((faces / "bob" / "1.png", "cannot read file: No such file or directory"),)
        assert report.removed == () and gallery.count("bob") == 1


def test_from_folder_keeps_embeddings_added_from_arrays(faces):
    with Gallery(faces / "gallery.sqlite3", ColourRecognizer.fingerprint, 64) as gallery:
        gallery.add("alice", np.eye(64)[60])
        gallery.add("dave", np.eye(64)[61])

    gallery, report = Gallery.from_folder(faces, ColourRecognizer())

    with gallery:
        assert report.removed == ()
        assert gallery.names() == ["alice", "bob", "carol", "dave"] and gallery.count("alice") == 3


def test_from_folder_handles_unicode_paths(tmp_path):
    root = tmp_path / "photos ü"
    write_image(root / "Zoë" / "fötö.png", RED)

    gallery, report = Gallery.from_folder(root, ColourRecognizer())

    with gallery:
        assert report.added == (root.resolve() / "Zoë" / "fötö.png",) and report.failed == ()
        assert gallery.names() == ["Zoë"]


def test_an_interrupted_enrolment_keeps_the_identities_it_finished(faces):
    with pytest.raises(RuntimeError, match="broke"):
        Gallery.from_folder(faces, ColourRecognizer(fail_on=GREEN))  # bob's photo

    with Gallery(faces / "gallery.sqlite3", ColourRecognizer.fingerprint, 64) as gallery:
        assert gallery.names() == ["alice"] and gallery.count() == 2


def test_from_folder_with_another_recognizer_raises_mismatch(faces):
    Gallery.from_folder(faces, ColourRecognizer())[0].close()

    class OtherRecognizer(ColourRecognizer):
        fingerprint = OTHER_FINGERPRINT

    with pytest.raises(GalleryMismatchError, match="re-enrol"):
        Gallery.from_folder(faces, OtherRecognizer())


def test_from_folder_needs_an_existing_folder(tmp_path):
    (tmp_path / "file.jpg").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match=r"file\.jpg"):
        Gallery.from_folder(tmp_path / "file.jpg", ColourRecognizer())
    with pytest.raises(FileNotFoundError, match="missing"):
        Gallery.from_folder(tmp_path / "missing", ColourRecognizer())
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file.jpg"]


def test_names_moved_to_helper_modules_stay_importable_from_gallery():
    from edge_facenet import gallery, gallery_folder, gallery_storage

    assert gallery.EnrollmentReport is gallery_folder.EnrollmentReport
    assert gallery.GalleryMismatchError is gallery_storage.GalleryMismatchError
    assert (gallery.GALLERY_FILENAME, gallery.SCHEMA_VERSION) == ("gallery.sqlite3", 1)
    assert ".jpg" in gallery.IMAGE_EXTENSIONS and hasattr(gallery, "EnrollingRecognizer")
