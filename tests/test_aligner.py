import cv2
import numpy as np
import pytest

from edge_facenet import ModelMetadata
from edge_facenet.aligner import FaceAligner
from edge_facenet.templates import DEFAULT_TEMPLATE, get_template


def rotate_scale_shift(points, angle_deg, scale, shift):
    angle = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (points @ rotation.T) * scale + shift


def test_transform_is_the_exact_inverse_of_a_similarity():
    aligner = FaceAligner(DEFAULT_TEMPLATE, (96, 96))
    template = get_template(DEFAULT_TEMPLATE).landmarks(96, 96)
    landmarks = rotate_scale_shift(template, 25, 2.7, [300.0, 120.0])
    matrix = aligner.transform(landmarks)
    mapped = np.c_[landmarks, np.ones(5)] @ matrix.T
    np.testing.assert_allclose(mapped, template, atol=1e-4)


def test_aligned_crop_puts_marked_points_on_the_template():
    aligner = FaceAligner(DEFAULT_TEMPLATE, (112, 96))
    template = get_template(DEFAULT_TEMPLATE).landmarks(96, 112)
    landmarks = rotate_scale_shift(template - 48, -30, 3.0, [400.0, 260.0])
    frame = np.zeros((600, 800, 3), np.uint8)
    for x, y in landmarks:
        cv2.circle(frame, (round(x), round(y)), 6, (255, 255, 255), -1)

    crop = aligner.align(frame, landmarks)
    assert crop.shape == (112, 96, 3) and crop.dtype == np.uint8
    _, _, _, centroids = cv2.connectedComponentsWithStats((crop[..., 0] > 127).astype(np.uint8))
    found = centroids[1:]
    assert len(found) == 5
    for point in template:
        assert np.linalg.norm(found - point, axis=1).min() < 1.0


def test_large_faces_are_shrunk_without_aliasing(lfw_dir):
    image = cv2.imread(str(lfw_dir / "images" / "Tony_Blair" / "Tony_Blair_0001.jpg"))
    aligner = FaceAligner(DEFAULT_TEMPLATE, (96, 96))
    template = get_template(DEFAULT_TEMPLATE).landmarks(120, 120) + np.array([65, 68])
    reference = aligner.align(image, template)  # 250 px image: scale 0.8, one warp

    big = cv2.resize(image, (2000, 2000), interpolation=cv2.INTER_CUBIC)  # scale 0.1: takes the two-step path
    crop = aligner.align(big, template * 8)
    assert np.abs(crop.astype(int) - reference.astype(int)).mean() < 4.0
    naive = cv2.warpAffine(big, aligner.transform(template * 8), (96, 96), flags=cv2.INTER_LINEAR)
    assert (
        np.abs(naive.astype(int) - reference.astype(int)).mean()
        > np.abs(crop.astype(int) - reference.astype(int)).mean()
    )


def test_centre_crop_of_an_lfw_image_is_the_template_box(lfw_dir):
    image = cv2.imread(str(lfw_dir / "images" / "Serena_Williams" / "Serena_Williams_0001.jpg"))
    crop = FaceAligner(DEFAULT_TEMPLATE, (96, 96)).centre_crop(image)
    box = cv2.resize(image[68:188, 65:185], (96, 96), interpolation=cv2.INTER_LINEAR)
    assert crop.shape == (96, 96, 3)
    assert np.abs(crop.astype(int) - box.astype(int)).mean() < 3.0


def test_aligner_from_metadata_and_batch():
    metadata = ModelMetadata(arch="nns2", input_size=(64, 48), embedding_size=64)
    aligner = FaceAligner.from_metadata(metadata)
    assert aligner.size == (64, 48) and aligner.template.name == metadata.alignment_template
    assert aligner.align_faces(np.zeros((10, 10, 3), np.uint8), []).shape == (0, 64, 48, 3)


@pytest.mark.parametrize("landmarks", [np.zeros((4, 2)), np.full((5, 2), np.nan), np.zeros(10)])
def test_bad_landmarks_raise(landmarks):
    with pytest.raises(ValueError, match="landmarks"):
        FaceAligner(DEFAULT_TEMPLATE, (96, 96)).transform(landmarks)


def test_bad_template_or_size_raise():
    with pytest.raises(ValueError, match="unknown alignment template"):
        FaceAligner("dlib_68", (96, 96))
    with pytest.raises(ValueError, match="crop size"):
        FaceAligner(DEFAULT_TEMPLATE, (0, 96))
