import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_facenet.detector import FaceDetector
from edge_facenet.templates import DEFAULT_TEMPLATE, get_template

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from scenes import compose_scene, lfw_photos

PEOPLE = ["Tony_Blair", "Serena_Williams", "George_W_Bush", "Gloria_Macapagal_Arroyo", "Vladimir_Putin"]


@pytest.fixture(scope="module")
def detector(detector_path):
    return FaceDetector(detector_path)


def lfw_image(lfw_dir, name, number=1):
    return cv2.imread(str(lfw_dir / "images" / name / f"{name}_{number:04d}.jpg"))


def test_finds_the_face_with_eyes_where_funneling_put_them(detector, lfw_dir):
    # Deep funneling aligns LFW, so the eyes sit near the template's eye positions inside the 120 px centre box.
    eyes = get_template(DEFAULT_TEMPLATE).landmarks(120, 120)[:2] + np.array([65, 68])
    for name in PEOPLE:
        faces = detector.detect(lfw_image(lfw_dir, name))
        assert faces, name
        centre = min(faces, key=lambda f: np.linalg.norm((f.bbox[:2] + f.bbox[2:]) / 2 - 125))
        assert centre.det_score > 0.8
        assert np.abs(centre.landmarks[:2] - eyes).max() < 15, (name, centre.landmarks[:2])
        x1, y1, x2, y2 = centre.bbox
        assert x1 < eyes[0, 0] < eyes[1, 0] < x2 and y1 < eyes[0, 1] < y2


def test_onnxruntime_decoding_matches_opencv(detector_path, lfw_dir):
    ours = FaceDetector(detector_path, max_side=None)
    reference = FaceDetector(detector_path, backend="opencv", max_side=None)
    for name in PEOPLE:
        image = lfw_image(lfw_dir, name, 2)
        a, b = ours.detect(image), reference.detect(image)
        assert len(a) == len(b) >= 1
        for fa, fb in zip(a, b, strict=True):
            np.testing.assert_allclose(fa.bbox, fb.bbox, atol=1e-2)
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=1e-2)
            assert fa.det_score == pytest.approx(fb.det_score, abs=1e-4)


def test_reduced_input_maps_boxes_back_to_the_frame(detector_path, lfw_dir):
    frame, placed = compose_scene(lfw_photos(lfw_dir, 2, seed=3), (1280, 720), face_width=220, seed=3)
    full = FaceDetector(detector_path, max_side=None).detect(frame)
    reduced = FaceDetector(detector_path, max_side=640).detect(frame)
    assert len(full) == len(reduced) == 2
    for f in full:
        nearest = min(reduced, key=lambda r: np.abs(r.bbox - f.bbox).sum())
        # The network sees a different image at half size, so positions agree to a few percent of the face.
        side = f.bbox[2] - f.bbox[0]
        assert np.abs(nearest.bbox - f.bbox).max() < 0.08 * side
        assert np.abs(nearest.landmarks - f.landmarks).max() < 0.08 * side
    for x, y, side in placed:
        assert any(
            np.linalg.norm((f.bbox[:2] + f.bbox[2:]) / 2 - [x + side / 2, y + side / 2]) < side / 4 for f in full
        )


def test_greyscale_and_bgra_frames_are_accepted(detector, lfw_dir):
    image = lfw_image(lfw_dir, "Tony_Blair")
    bgra = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    expected = detector.detect(image)[0].bbox
    np.testing.assert_allclose(detector.detect(bgra)[0].bbox, expected, atol=1e-4)
    assert np.abs(detector.detect(grey)[0].bbox - expected).max() < 8


def test_no_face_gives_an_empty_list(detector):
    assert detector.detect(np.full((480, 640, 3), 127, np.uint8)) == []
    assert detector.detect(np.zeros((1, 1, 3), np.uint8)) == []


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (None, "numpy array"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((10, 10, 3), np.uint16), "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        (np.zeros((10, 10, 2), np.uint8), "shape"),
        (np.zeros((2, 10, 10, 3), np.uint8), "shape"),
    ],
)
def test_bad_frames_raise_value_error(detector, frame, message):
    with pytest.raises(ValueError, match=message):
        detector.detect(frame)


def test_bad_settings_raise(detector_path):
    with pytest.raises(ValueError, match="valid backends"):
        FaceDetector(detector_path, backend="dlib")
    with pytest.raises(ValueError, match="score_threshold"):
        FaceDetector(detector_path, score_threshold=1.5)
    with pytest.raises(ValueError, match="max_side"):
        FaceDetector(detector_path, max_side=8)
