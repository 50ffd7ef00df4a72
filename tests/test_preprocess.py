import numpy as np
import pytest

from edge_facenet import ModelMetadata, blob_from_crops


def metadata(**fields):
    return ModelMetadata(**{"arch": "nn4_small2", "input_size": (4, 6), "embedding_size": 128, **fields})


def test_rgb_blob_swaps_channels_and_scales_to_unit_range():
    crop = np.zeros((4, 6, 3), dtype=np.uint8)
    crop[..., 0] = 255  # blue in BGR
    blob = blob_from_crops([crop, crop], metadata())
    assert blob.shape == (2, 3, 4, 6) and blob.dtype == np.float32
    np.testing.assert_allclose(blob[:, 2], 1.0)  # blue is the third channel of RGB
    np.testing.assert_allclose(blob[:, :2], 0.0)


def test_mean_and_std_apply_per_channel_in_model_order():
    crop = np.full((1, 4, 6, 3), 51, dtype=np.uint8)  # 0.2 after scaling
    blob = blob_from_crops(crop, metadata(channel_order="BGR", mean=(0.1, 0.2, 0.3), std=(0.5, 1.0, 2.0)))
    np.testing.assert_allclose(blob[0, :, 0, 0], [(0.2 - 0.1) / 0.5, 0.0, (0.2 - 0.3) / 2.0], atol=1e-6)
    assert blob.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize(
    "crops",
    [
        [],
        np.zeros((0, 4, 6, 3), np.uint8),
        [np.zeros((4, 6, 3), np.float32)],
        [np.zeros((5, 6, 3), np.uint8)],
        [np.zeros((4, 6), np.uint8)],
        [np.zeros((4, 6, 3), np.uint8), np.zeros((4, 7, 3), np.uint8)],
    ],
)
def test_wrong_crops_raise_value_error(crops):
    with pytest.raises(ValueError, match="crop"):
        blob_from_crops(crops, metadata())
