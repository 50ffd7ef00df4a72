"""read_image and decode_image on a real LFW photo: complete files decode, anything less is refused in one line."""

import cv2
import numpy as np
import pytest

from edge_facenet import decode_image, read_image


@pytest.fixture
def photo(lfw_dir):
    return lfw_dir / "images" / "Tony_Blair" / "Tony_Blair_0001.jpg"


def test_a_photo_reads_as_bgr_uint8_from_any_path(photo, tmp_path):
    copy = tmp_path / "dossier é 1" / "Tony Blair.jpg"
    copy.parent.mkdir()
    copy.write_bytes(photo.read_bytes())
    image = read_image(copy)
    assert image.dtype == np.uint8 and image.shape == (250, 250, 3)
    np.testing.assert_array_equal(image, cv2.imread(str(photo), cv2.IMREAD_COLOR))
    np.testing.assert_array_equal(decode_image(photo.read_bytes()), image)


def test_a_truncated_jpeg_is_refused_where_imread_returns_its_top(photo, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
    assert cv2.imread(str(truncated), cv2.IMREAD_COLOR) is not None  # what read_image protects against
    with pytest.raises(ValueError, match=f"^cannot decode an image from {truncated}$"):
        read_image(truncated)
    assert decode_image(truncated.read_bytes()) is None


def test_missing_empty_and_non_image_files_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(FileNotFoundError, match="image not found"):
        read_image(tmp_path)  # a folder
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ValueError, match="the file is empty"):
        read_image(tmp_path / "empty.png")
    (tmp_path / "notes.jpg").write_text("meeting notes")
    with pytest.raises(ValueError, match="cannot decode an image from"):
        read_image(tmp_path / "notes.jpg")
    assert decode_image(b"") is None
