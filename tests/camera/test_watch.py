"""The people folder watched while the app runs: changes are enrolled within the interval, nothing else is read."""

import logging
import os
import shutil

import cv2
import numpy as np
import pytest

from edge_facenet.camera.app import CameraApp
from edge_facenet.camera.watch import FolderWatcher, folder_signature
from edge_facenet.detector import FaceDetector
from edge_facenet.gallery import Gallery
from edge_facenet.recognizer import Recognizer

D = 8


class ColourRecognizer:
    """Stands in for a recogniser: one embedding per image from its mean colour; counts the images it embeds."""

    fingerprint = "ef" * 32
    embedding_size = D

    def __init__(self):
        self.embedded = 0

    def embed_largest_face(self, image):
        self.embedded += 1
        vector = np.zeros(D)
        vector[:3] = image.reshape(-1, 3).mean(axis=0) + 1.0
        return vector


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def photo(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((32, 32, 3), colour, np.uint8))


@pytest.fixture
def people(tmp_path):
    folder = tmp_path / "people"
    photo(folder / "ada" / "1.png", (200, 10, 10))
    photo(folder / "bob" / "1.png", (10, 200, 10))
    return folder


def test_a_changed_folder_is_enrolled_again_at_the_next_look(people):
    recognizer, clock = ColourRecognizer(), Clock()
    gallery, _ = Gallery.from_folder(people, recognizer)
    watcher = FolderWatcher(people, gallery, recognizer, interval=2.0, clock=clock)
    embedded = recognizer.embedded

    photo(people / "cy" / "1.png", (10, 10, 200))
    clock.now = 1.0
    assert watcher.poll() is None  # not yet time to look
    clock.now = 2.5
    report = watcher.poll()
    assert [path.name for path in report.added] == ["1.png"] and gallery.names() == ["ada", "bob", "cy"]
    assert recognizer.embedded == embedded + 1  # the unchanged photos are not embedded again

    clock.now = 5.0
    assert watcher.poll() is None  # nothing changed
    shutil.rmtree(people / "bob")
    clock.now = 7.5
    report = watcher.poll()
    assert len(report.removed) == 1 and gallery.names() == ["ada", "cy"]
    gallery.close()


def test_the_gallery_file_and_hidden_files_do_not_count_as_changes(people):
    before = folder_signature(people)
    (people / "gallery.sqlite3").write_bytes(b"written by every enrolment")
    (people / "ada" / ".DS_Store").write_bytes(b"x")
    (people / ".cache").mkdir()
    assert folder_signature(people) == before
    os.utime(people / "ada" / "1.png", ns=(1, 1))
    assert folder_signature(people) != before  # a replaced photo does


def test_a_folder_that_disappears_is_a_warning_not_a_crash(people, caplog):
    recognizer, clock = ColourRecognizer(), Clock()
    gallery, _ = Gallery.from_folder(people, recognizer, path=people.parent / "gallery.sqlite3")
    watcher = FolderWatcher(people, gallery, recognizer, interval=1.0, clock=clock)
    shutil.rmtree(people)
    clock.now = 1.0
    with caplog.at_level(logging.WARNING):
        assert watcher.poll() is None
    assert "cannot enrol" in caplog.text and "enrolment folder not found" in caplog.text
    assert gallery.names() == ["ada", "bob"]  # kept until the folder says otherwise
    with pytest.raises(ValueError, match="positive number of seconds, got 0"):
        FolderWatcher(people, gallery, recognizer, interval=0)
    gallery.close()


def test_a_stranger_is_named_once_their_photo_lands_in_the_folder(tmp_path, lfw_dir, detector_path):
    # The shipped model: Ariel Sharon is unknown against Colin Powell, then named after his photo is added.
    people = tmp_path / "people"
    (people / "Colin_Powell").mkdir(parents=True)
    shutil.copy(lfw_dir / "images" / "Colin_Powell" / "Colin_Powell_0001.jpg", people / "Colin_Powell")
    stranger = lfw_dir / "images" / "Ariel_Sharon" / "Ariel_Sharon_0001.jpg"
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[100:350, 200:450] = cv2.imread(str(stranger))

    recognizer = Recognizer(detector=FaceDetector(detector_path))
    gallery, _ = Gallery.from_folder(people, recognizer)
    recognizer.gallery = gallery
    clock = Clock()
    watcher = FolderWatcher(people, gallery, recognizer, interval=1.0, clock=clock)
    app = CameraApp(recognizer)
    events = []
    for index in range(30):
        if index == 10:
            (people / "Ariel_Sharon").mkdir()
            shutil.copy(stranger, people / "Ariel_Sharon")
            clock.now = 1.0
            assert len(watcher.poll().added) == 1
        events += app.process(frame, index, index / 15)[1]
    identified = [(e["frame"], e["name"]) for e in events if e["event"] in ("identified", "identity_changed")]
    assert len(identified) == 1 and identified[0][1] == "Ariel_Sharon" and identified[0][0] >= 10
    gallery.close()
