import numpy as np
import pytest

from edge_facenet.templates import DEFAULT_TEMPLATE, get_template
from edge_facenet.training.augment import Augmenter

NO_JITTER = {
    "max_shift": 0.0,
    "max_scale": 0.0,
    "max_rotation_deg": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
    "saturation": 0.0,
}


def random_crops(count=16, size=(96, 80)) -> np.ndarray:
    return np.random.default_rng(123).integers(0, 256, (count, *size, 3), dtype=np.uint8)


def test_output_is_a_new_uint8_batch_of_the_same_shape():
    crops = random_crops()
    before = crops.copy()
    out = Augmenter()(crops, np.random.default_rng(0))
    assert out.shape == crops.shape and out.dtype == np.uint8
    assert not np.shares_memory(out, crops)
    np.testing.assert_array_equal(crops, before)
    assert Augmenter()(crops[:0], np.random.default_rng(0)).shape == (0, 96, 80, 3)


def test_same_generator_state_gives_the_same_batch():
    crops = random_crops()
    augmenter = Augmenter()
    first = augmenter(crops, np.random.default_rng(7))
    np.testing.assert_array_equal(first, augmenter(crops, np.random.default_rng(7)))
    assert not np.array_equal(first, augmenter(crops, np.random.default_rng(8)))


def test_zero_ranges_without_flip_are_the_identity():
    crops = random_crops()
    out = Augmenter(flip=False, **NO_JITTER)(crops, np.random.default_rng(0))
    np.testing.assert_array_equal(out, crops)
    assert not np.shares_memory(out, crops)


def test_flip_alone_mirrors_about_half_the_crops():
    crops = random_crops(count=64)
    out = Augmenter(flip=True, **NO_JITTER)(crops, np.random.default_rng(0))
    mirrored = [np.array_equal(o, c[:, ::-1]) for o, c in zip(out, crops, strict=True)]
    unchanged = [np.array_equal(o, c) for o, c in zip(out, crops, strict=True)]
    assert all(m != u for m, u in zip(mirrored, unchanged, strict=True))
    assert 16 <= sum(mirrored) <= 48


def test_default_template_is_mirror_symmetric():
    # A flipped aligned crop is still aligned: mirroring x -> 1 - x swaps the eyes and the mouth corners.
    points = np.array(get_template(DEFAULT_TEMPLATE).points)
    mirrored = np.c_[1.0 - points[:, 0], points[:, 1]][[1, 0, 2, 4, 3]]
    np.testing.assert_allclose(mirrored, points, atol=1e-9)


def test_shift_moves_a_dot_by_at_most_the_range():
    crops = np.zeros((32, 96, 96, 3), np.uint8)
    crops[:, 47:49, 47:49] = 255
    out = Augmenter(flip=False, **{**NO_JITTER, "max_shift": 0.1})(crops, np.random.default_rng(0))
    offsets = []
    for crop in out:
        ys, xs = np.nonzero(crop[..., 0])
        weights = crop[ys, xs, 0].astype(float)
        offsets.append([np.average(xs, weights=weights) - 47.5, np.average(ys, weights=weights) - 47.5])
    offsets = np.array(offsets)
    assert np.abs(offsets).max() <= 9.6 + 0.5 and np.abs(offsets).max() > 4.0
    assert np.ptp(offsets[:, 0]) > 5.0 and np.ptp(offsets[:, 1]) > 5.0


def test_rotation_and_scale_keep_the_centre_and_replicate_the_border():
    crops = np.full((8, 64, 64, 3), 90, np.uint8)
    crops[:, 30:34, 30:34] = 200
    settings = {**NO_JITTER, "max_scale": 0.2, "max_rotation_deg": 30.0}
    out = Augmenter(flip=False, **settings)(crops, np.random.default_rng(0))
    assert (out[:, 31:33, 31:33] == 200).all()
    assert (out[:, :8] == 90).all() and (out[:, :, -8:] == 90).all()
    assert not np.array_equal(out, crops)


def test_colour_jitter_on_grey_crops():
    grey = np.full((32, 8, 8, 3), 100, np.uint8)
    rng = np.random.default_rng(0)
    brighter = Augmenter(flip=False, **{**NO_JITTER, "brightness": 0.2})(grey, rng)
    assert (brighter == brighter[:, :1, :1]).all()  # each crop stays uniform
    assert 80 <= brighter.min() < 95 and 105 < brighter.max() <= 120
    # A uniform grey crop has no contrast and no colour to change.
    for setting in ("contrast", "saturation"):
        out = Augmenter(flip=False, **{**NO_JITTER, setting: 0.5})(grey, rng)
        np.testing.assert_array_equal(out, grey)


def test_saturation_blends_colours_towards_grey():
    colour = np.zeros((16, 4, 4, 3), np.uint8)
    colour[..., 2] = 200  # red in BGR
    out = Augmenter(flip=False, **{**NO_JITTER, "saturation": 0.5})(colour, np.random.default_rng(0))
    assert (out[..., 2] > out[..., 1]).all() and (out[..., 1] == out[..., 0]).all()
    assert len(np.unique(out[:, 0, 0, 1])) > 4  # green and blue rise where saturation drops


@pytest.mark.parametrize(
    ("crops", "error", "message"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), ValueError, "expected uint8 BGR crops"),
        (np.zeros((8, 8, 3), np.uint8), ValueError, r"shape \(B, H, W, 3\)"),
        (np.zeros((2, 8, 8, 4), np.uint8), ValueError, "expected uint8 BGR crops"),
    ],
)
def test_bad_batches_are_rejected(crops, error, message):
    with pytest.raises(error, match=message):
        Augmenter()(crops, np.random.default_rng(0))


def test_bad_settings_and_generator_are_rejected():
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        Augmenter()(random_crops(), 0)
    with pytest.raises(ValueError, match=r"brightness must be in \[0, 1\), got -0.1"):
        Augmenter(brightness=-0.1)
    with pytest.raises(ValueError, match="max_shift"):
        Augmenter(max_shift=1.0)
    with pytest.raises(ValueError, match="max_rotation_deg"):
        Augmenter(max_rotation_deg=200.0)
