import numpy as np
import pytest

from edge_facenet import get_template, list_templates
from edge_facenet.templates import DEFAULT_TEMPLATE


def test_default_template_is_mirror_symmetric_and_ordered():
    points = np.asarray(get_template(DEFAULT_TEMPLATE).points)
    mirrored = points[[1, 0, 2, 4, 3]] * [-1, 1] + [1, 0]
    np.testing.assert_allclose(points, mirrored, atol=1e-6)
    right_eye, left_eye, nose, right_mouth, _ = points
    assert right_eye[0] < left_eye[0] and right_eye[1] < nose[1] < right_mouth[1]


def test_landmarks_scale_to_pixels():
    landmarks = get_template(DEFAULT_TEMPLATE).landmarks(96, 112)
    assert landmarks.shape == (5, 2) and landmarks.dtype == np.float32
    assert landmarks[2, 0] == pytest.approx(48.0)


def test_unknown_template_lists_the_known_ones():
    with pytest.raises(ValueError, match=list_templates()[0]):
        get_template("nope")
