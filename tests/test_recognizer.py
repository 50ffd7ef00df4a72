"""Recognizer tests on real LFW photos.

The only embedder these tests have is a randomly initialised nn4_small2 (no trained model ships yet), so they test
the plumbing (detection, alignment, batching, gallery, thresholds, persistence, errors), not recognition: a random
model tells the very same photo apart from others, but not a new photo of an enrolled person. Recognition across
photos is tested with real embeddings (dlib's) in tests/test_open_set.py.
"""

import shutil

import cv2
import numpy as np
import pytest

from edge_facenet.detector import FaceDetector
from edge_facenet.embedder import Embedder
from edge_facenet.gallery import Gallery, GalleryMismatchError
from edge_facenet.recognizer import Recognizer

PEOPLE = ["Tony_Blair", "Serena_Williams", "Colin_Powell", "Gloria_Macapagal_Arroyo", "Vladimir_Putin"]
STRANGER = "Hugo_Chavez"
SAME_PHOTO = 0.9999  # a threshold only an identical photo reaches, even under random weights


def photo(lfw_dir, name, number=1):
    return lfw_dir / "images" / name / f"{name}_{number:04d}.jpg"


def main_face(matches):
    """The largest face: the one enrolment takes (LFW photos sometimes show people in the background)."""
    assert matches
    return max(matches, key=lambda m: (m.bbox[2] - m.bbox[0]) * (m.bbox[3] - m.bbox[1]))


@pytest.fixture(scope="module")
def parts(random_model_path, detector_path):
    return Embedder(random_model_path), FaceDetector(detector_path)


@pytest.fixture
def recognizer(parts, tmp_path):
    embedder, detector = parts
    return Recognizer(model=embedder, detector=detector, gallery=tmp_path / "people.sqlite3", threshold=SAME_PHOTO)


def test_enrol_five_people_and_identify_them(recognizer, lfw_dir):
    for name in PEOPLE:
        assert recognizer.enroll(name, [photo(lfw_dir, name)]) == 1
    assert sorted(recognizer.gallery.names()) == sorted(PEOPLE)

    for name in PEOPLE:
        match = main_face(recognizer.identify(cv2.imread(str(photo(lfw_dir, name)))))
        assert match.name == name and match.similarity > SAME_PHOTO
        assert match.embedding.shape == (128,) and match.det_score > 0.8
        assert match.bbox.shape == (4,) and match.landmarks.shape == (5, 2)

    stranger = main_face(recognizer.identify(cv2.imread(str(photo(lfw_dir, STRANGER)))))
    assert stranger.name is None and not stranger.is_known
    assert stranger.similarity < SAME_PHOTO


def test_all_faces_of_a_frame_are_identified_in_one_call(recognizer, lfw_dir):
    recognizer.enroll("Tony_Blair", [photo(lfw_dir, "Tony_Blair")])
    left, right = cv2.imread(str(photo(lfw_dir, "Tony_Blair"))), cv2.imread(str(photo(lfw_dir, STRANGER)))
    frame = np.hstack([left, right])
    matches = recognizer.identify(frame)
    assert len(matches) >= 2
    left_face = main_face([m for m in matches if m.bbox[2] <= 250])
    right_face = main_face([m for m in matches if m.bbox[0] >= 250])
    assert left_face.name == "Tony_Blair" and right_face.name is None
    faces, embeddings = recognizer.embed(frame)
    assert embeddings.shape == (len(faces), 128)


def test_threshold_per_call_and_from_metadata(recognizer, parts, lfw_dir, tmp_path):
    recognizer.enroll("Tony_Blair", [photo(lfw_dir, "Tony_Blair")])
    frame = cv2.imread(str(photo(lfw_dir, STRANGER)))
    assert main_face(recognizer.identify(frame, threshold=-1.0)).name == "Tony_Blair"
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        recognizer.identify(frame, threshold=1.5)

    embedder, detector = parts
    no_threshold = Recognizer(model=embedder, detector=detector)  # random model: its metadata has no threshold
    no_threshold.enroll("Tony_Blair", [photo(lfw_dir, "Tony_Blair")])
    with pytest.raises(ValueError, match="no match threshold"):
        no_threshold.identify(frame)


def test_empty_gallery_and_empty_frame(recognizer):
    assert recognizer.identify(np.full((240, 320, 3), 30, np.uint8)) == []
    assert recognizer.embed(np.full((240, 320, 3), 30, np.uint8))[1].shape == (0, 128)


def test_an_empty_gallery_names_no_one(recognizer, lfw_dir):
    match = main_face(recognizer.identify(cv2.imread(str(photo(lfw_dir, "Tony_Blair")))))
    assert match.name is None and match.similarity == -1.0


def test_gallery_survives_reopening(parts, lfw_dir, tmp_path):
    embedder, detector = parts
    path = tmp_path / "people.sqlite3"
    first = Recognizer(model=embedder, detector=detector, gallery=path, threshold=SAME_PHOTO)
    first.enroll("Serena_Williams", [photo(lfw_dir, "Serena_Williams")])
    first.gallery.close()

    reopened = Recognizer(model=embedder, detector=detector, gallery=path, threshold=SAME_PHOTO)
    assert reopened.gallery.names() == ["Serena_Williams"]
    match = main_face(reopened.identify(cv2.imread(str(photo(lfw_dir, "Serena_Williams")))))
    assert match.name == "Serena_Williams"


def test_a_gallery_of_another_embedder_is_refused(parts, lfw_dir, tmp_path):
    embedder, detector = parts
    path = tmp_path / "people.sqlite3"
    recognizer = Recognizer(model=embedder, detector=detector, gallery=path)
    recognizer.enroll("Tony_Blair", [photo(lfw_dir, "Tony_Blair")])
    recognizer.gallery.close()  # the last connection to close copies the write-ahead log into the file
    before = path.read_bytes()

    onnx = pytest.importorskip("onnx")
    other = onnx.load(str(embedder.model_path))
    other.doc_string += " (another build)"  # another file, so another fingerprint
    other_model = tmp_path / "other.onnx"
    onnx.save(other, str(other_model))
    with pytest.raises(GalleryMismatchError, match="re-enrol"):
        Recognizer(model=other_model, detector=detector, gallery=path)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    "frame",
    [
        None,
        "frame.jpg",
        np.zeros((48, 64, 3), np.float32),
        np.zeros((48, 64, 3), np.uint16),
        np.zeros((48, 64, 3), np.float64) + 0.5,
        np.zeros((48, 64, 2), np.uint8),
        np.zeros((2, 48, 64, 3), np.uint8),
        np.zeros((48,), np.uint8),
        np.zeros((0, 64, 3), np.uint8),
    ],
)
def test_bad_frames_raise_value_error(recognizer, frame):
    with pytest.raises(ValueError, match="frame"):
        recognizer.identify(frame)


def test_greyscale_and_bgra_frames_work(recognizer, lfw_dir):
    recognizer.enroll("Tony_Blair", [photo(lfw_dir, "Tony_Blair")])
    image = cv2.imread(str(photo(lfw_dir, "Tony_Blair")))
    assert main_face(recognizer.identify(cv2.cvtColor(image, cv2.COLOR_BGR2BGRA))).name == "Tony_Blair"
    grey = main_face(recognizer.identify(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)))
    assert grey.embedding.shape == (128,)


def test_enrol_errors(recognizer, lfw_dir, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        recognizer.enroll("  ", [photo(lfw_dir, "Tony_Blair")])
    with pytest.raises(FileNotFoundError, match=r"nowhere\.jpg"):
        recognizer.enroll("X", [tmp_path / "nowhere.jpg"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ValueError, match="cannot decode"):
        recognizer.enroll("X", [broken])
    assert recognizer.enroll("X", [np.full((100, 100, 3), 200, np.uint8)]) == 0  # no face: skipped
    assert "X" not in recognizer.gallery


def test_gallery_from_folder_with_the_real_recognizer(recognizer, lfw_dir, tmp_path):
    people = tmp_path / "people"
    for name in PEOPLE[:2]:
        (people / name).mkdir(parents=True)
        for number in (1, 2):
            shutil.copy(photo(lfw_dir, name, number), people / name / f"{number}.jpg")
    (people / PEOPLE[0] / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    (people / PEOPLE[0] / "notes.txt").write_text("a text file")
    cv2.imwrite(str(people / PEOPLE[1] / "wall.png"), np.full((200, 200, 3), 180, np.uint8))

    gallery, report = Gallery.from_folder(people, recognizer, path=tmp_path / "g.sqlite3")
    with gallery:
        assert len(report.added) == 4
        assert sorted(path.name for path, _ in report.failed) == ["corrupt.jpg", "notes.txt", "wall.png"]
        assert gallery.count() == 4 and sorted(gallery.names()) == sorted(PEOPLE[:2])
        _, again = Gallery.from_folder(people, recognizer, path=tmp_path / "g.sqlite3")
        assert len(again.unchanged) == 4 and again.added == ()
