"""Training-time augmentation of aligned face crops, in uint8 BGR (numpy and OpenCV only).

Each crop gets a random horizontal flip, a small random similarity (shift, scale, rotation) about its centre and a
random brightness, contrast and saturation change. The geometry is one ``cv2.warpAffine`` per crop (the flip folded
into it) and the colour change one ``cv2.transform``, so a batch of 128 96x96 crops takes a few milliseconds.

The flip keeps an aligned crop aligned: the default template (``lfw_funneled_5pt``) is mirror-symmetric about the
vertical centre line, the eyes and mouth corners swapping places.
"""

from __future__ import annotations

import cv2
import numpy as np

# Luma weights of the blue, green and red channels (ITU-R BT.601), the grey that saturation blends towards.
GREY_WEIGHTS_BGR = np.array([0.114, 0.587, 0.299])


class Augmenter:
    """Random flip, similarity jitter and colour jitter of aligned uint8 BGR crops.

    Args:
        flip: Mirror half of the crops left to right.
        max_shift: Largest shift, as a fraction of the crop's width (x) and height (y).
        max_scale: Largest relative change of scale: the factor is drawn from ``1 ± max_scale``.
        max_rotation_deg: Largest rotation in degrees, either way.
        brightness: Pixel values are multiplied by a factor drawn from ``1 ± brightness``.
        contrast: Distances from the crop's mean grey level are multiplied by a factor from ``1 ± contrast``.
        saturation: Distances from each pixel's grey level are multiplied by a factor from ``1 ± saturation``.

    Raises:
        ValueError: When a range is negative, or a fraction is 1 or more.
    """

    def __init__(
        self,
        flip: bool = True,
        max_shift: float = 0.05,
        max_scale: float = 0.05,
        max_rotation_deg: float = 5.0,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
    ) -> None:
        fractions = {
            "max_shift": max_shift,
            "max_scale": max_scale,
            "brightness": brightness,
            "contrast": contrast,
            "saturation": saturation,
        }
        for name, value in fractions.items():
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        if not 0.0 <= max_rotation_deg <= 180.0:
            raise ValueError(f"max_rotation_deg must be in [0, 180], got {max_rotation_deg}")
        self.flip = bool(flip)
        self.max_shift = float(max_shift)
        self.max_scale = float(max_scale)
        self.max_rotation_deg = float(max_rotation_deg)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.saturation = float(saturation)
        self._warps = max(max_shift, max_scale, max_rotation_deg) > 0
        self._colours = max(brightness, contrast, saturation) > 0

    def __repr__(self) -> str:
        return (
            f"Augmenter(flip={self.flip}, max_shift={self.max_shift}, max_scale={self.max_scale}, "
            f"max_rotation_deg={self.max_rotation_deg}, brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation})"
        )

    def __call__(self, crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment a batch; the same generator state always gives the same result.

        Args:
            crops: (B, H, W, 3) uint8 BGR crops; left unchanged.
            rng: Source of the random draws.

        Returns:
            A new (B, H, W, 3) uint8 array.

        Raises:
            TypeError: When ``rng`` is not a numpy Generator.
            ValueError: When ``crops`` is not a (B, H, W, 3) uint8 array.
        """
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {type(rng)}")
        if not isinstance(crops, np.ndarray) or crops.ndim != 4 or crops.shape[3] != 3 or crops.dtype != np.uint8:
            shape = getattr(crops, "shape", None)
            raise ValueError(
                f"expected uint8 BGR crops of shape (B, H, W, 3), got {getattr(crops, 'dtype', type(crops))} {shape}"
            )
        batch, height, width = crops.shape[:3]

        # Every draw is made whatever the settings, so a generator advances the same way for every Augmenter.
        flips = rng.random(batch) < 0.5
        shifts = rng.uniform(-1.0, 1.0, (batch, 2)) * self.max_shift * np.array([width, height])
        scales = 1.0 + rng.uniform(-1.0, 1.0, batch) * self.max_scale
        angles = rng.uniform(-1.0, 1.0, batch) * self.max_rotation_deg
        factors = 1.0 + rng.uniform(-1.0, 1.0, (batch, 3)) * np.array([self.brightness, self.contrast, self.saturation])

        colour_maps = _colour_maps(factors) if self._colours else None
        out = np.empty_like(crops)
        for i in range(batch):
            crop = crops[i]
            flip = self.flip and bool(flips[i])
            if self._warps:
                matrix = _similarity(width, height, flip, shifts[i], scales[i], angles[i])
                crop = cv2.warpAffine(
                    crop, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
                )
            elif flip:
                crop = np.ascontiguousarray(crop[:, ::-1])
            if colour_maps is not None:
                colour_map = colour_maps[i]
                colour_map[:, 3] *= np.dot(cv2.mean(crop)[:3], GREY_WEIGHTS_BGR)
                crop = cv2.transform(crop, colour_map)
            out[i] = crop
        return out


def _similarity(width: int, height: int, flip: bool, shift: np.ndarray, scale: float, angle: float) -> np.ndarray:
    # Pixel centres sit at integer coordinates, so the crop's centre is ((W - 1) / 2, (H - 1) / 2) and a flip maps
    # column x to W - 1 - x, exactly like reversing the columns.
    centre = ((width - 1) / 2.0, (height - 1) / 2.0)
    matrix = cv2.getRotationMatrix2D(centre, float(angle), float(scale))
    matrix[:, 2] += shift
    if flip:
        mirror = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0]])
        matrix = np.concatenate([matrix[:, :2] @ mirror[:, :2], matrix[:, :2] @ mirror[:, 2:] + matrix[:, 2:]], 1)
    return matrix


def _colour_maps(factors: np.ndarray) -> np.ndarray:
    # Brightness b scales every value; contrast c scales distances from the mean grey m; saturation s blends each
    # pixel with its grey. All three are linear in the pixel: p' = c b (s I + (1 - s) 1 w^T) p + (1 - c) b m, one
    # 3 x 4 affine colour map per crop, which cv2.transform applies with rounding and saturation to 0..255. The
    # last column holds (1 - c) b here; the caller multiplies in m, the mean grey of the (warped) crop.
    brightness, contrast, saturation = factors[:, 0, None, None], factors[:, 1, None, None], factors[:, 2, None, None]
    towards_grey = saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), GREY_WEIGHTS_BGR)
    maps = np.empty((len(factors), 3, 4), dtype=np.float32)
    maps[:, :, :3] = contrast * brightness * towards_grey
    maps[:, :, 3] = (1.0 - contrast[:, :, 0]) * brightness[:, :, 0]
    return maps
