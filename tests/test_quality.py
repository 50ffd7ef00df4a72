"""Face sharpness on real LFW photos: blur lowers it steadily, the face's size barely moves it, bad input is refused."""

import cv2
import numpy as np
import pytest

from edge_facenet.detector import FaceDetector
from edge_facenet.quality import sharpness


@pytest.fixture(scope="module")
def faces(lfw_dir, detector_path):
    """Ten LFW photos of different people with the box of their largest face."""
    detector = FaceDetector(detector_path)
    found = []
    for folder in sorted(path for path in (lfw_dir / "images").iterdir() if path.is_dir())[::400]:
        image = cv2.imread(str(sorted(folder.iterdir())[0]))
        detected = detector.detect(image)
        if detected:
            found.append((image, max(detected, key=lambda face: face.area).bbox))
        if len(found) == 10:
            break
    assert len(found) == 10
    return found


def test_blur_lowers_sharpness_steadily(faces):
    for image, bbox in faces:
        values = [sharpness(image, bbox)] + [sharpness(cv2.GaussianBlur(image, (0, 0), s), bbox) for s in (1, 2, 3)]
        assert values[0] > 1.5 * values[1] > 0  # a slight blur already falls below the tracker's 1.5x ratio
        assert values[1] > values[2] > values[3]


def test_the_faces_size_in_the_frame_barely_matters(faces):
    for image, bbox in faces:
        ratios = []
        for scale in (0.75, 1.5, 2.0):
            resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            ratios.append(sharpness(resized, bbox * scale) / sharpness(image, bbox))
        assert all(0.6 < ratio < 1.4 for ratio in ratios), ratios


def test_colour_grey_and_alpha_images_agree(faces):
    image, bbox = faces[0]
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    expected = sharpness(image, bbox)
    assert sharpness(grey, bbox) == pytest.approx(expected)
    assert sharpness(cv2.cvtColor(image, cv2.COLOR_BGR2BGRA), bbox) == pytest.approx(expected)


def test_flat_patches_and_boxes_outside_the_image_are_zero(faces):
    image, bbox = faces[0]
    assert sharpness(np.full((200, 200, 3), 128, np.uint8), (20, 20, 180, 180)) == 0.0
    assert sharpness(image, (-500, -500, -300, -300)) == 0.0
    assert sharpness(image, (10, 10, 11, 11)) == 0.0
    clipped = sharpness(image, bbox + np.array([-1000, -1000, 0, 0], np.float32))
    assert clipped > 0.0  # the part inside the image still counts


@pytest.mark.parametrize(
    ("image", "bbox", "message"),
    [
        (np.zeros((10, 10), np.float32), (0, 0, 5, 5), "uint8 array of 2 or 3 dimensions, got float32"),
        (np.zeros(10, np.uint8), (0, 0, 5, 5), "uint8 array of 2 or 3 dimensions"),
        ([[0]], (0, 0, 5, 5), "got <class 'list'>"),
        (np.zeros((10, 10), np.uint8), (0, 0, 5), "bbox must be 4 finite numbers"),
        (np.zeros((10, 10), np.uint8), (0, 0, float("nan"), 5), "bbox must be 4 finite numbers"),
    ],
)
def test_bad_input_is_refused_with_what_was_wrong(image, bbox, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        sharpness(image, bbox)
