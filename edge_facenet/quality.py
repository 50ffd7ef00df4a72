"""How sharp a face looks in a frame: the variance of the Laplacian over the face, at a fixed size.

Motion blur and defocus remove fine detail, and the Laplacian (a second derivative) responds to fine detail only,
so its variance over the face drops as the face blurs. The face is cut to the central part of its box (less
background, hair and collar) and resized to :data:`SIDE` pixels square first, so that the figure measures detail at
about the scale the embedder sees it, whatever the face's size in the frame. The figure depends on the face and the
lighting too: compare it between frames of one face (as the camera app's tracker does), not between people.
"""

from __future__ import annotations

import cv2
import numpy as np

SIDE = 64  # pixels: a little below the 96-pixel crops the embedder sees; detail finer than this never reaches it
_CENTRAL = 0.8  # fraction of the box's width and height kept around its centre


def sharpness(image: np.ndarray, bbox: np.ndarray | tuple[float, float, float, float]) -> float:
    """Variance of the Laplacian over the central part of a face box, resized to :data:`SIDE` pixels square.

    Args:
        image: The frame, BGR or grayscale, uint8.
        bbox: The face box (x1, y1, x2, y2) in pixels; the part outside the image is ignored.

    Returns:
        The sharpness, 0 or more (0 for a flat patch or a box with no pixels inside the image); larger is sharper.

    Raises:
        ValueError: When ``image`` is not a 2-D or 3-D uint8 array, or ``bbox`` is not 4 finite numbers.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
        described = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image)
        raise ValueError(f"image must be a uint8 array of 2 or 3 dimensions, got {described}")
    box = np.asarray(bbox, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise ValueError(f"bbox must be 4 finite numbers (x1, y1, x2, y2), got {bbox!r}")

    x1, y1, x2, y2 = box.tolist()
    margin_x, margin_y = (x2 - x1) * (1 - _CENTRAL) / 2, (y2 - y1) * (1 - _CENTRAL) / 2
    height, width = image.shape[:2]
    left, top = max(0, round(x1 + margin_x)), max(0, round(y1 + margin_y))
    right, bottom = min(width, round(x2 - margin_x)), min(height, round(y2 - margin_y))
    if right - left < 2 or bottom - top < 2:
        return 0.0

    patch = image[top:bottom, left:right]
    if patch.ndim == 3:
        conversion = {3: cv2.COLOR_BGR2GRAY, 4: cv2.COLOR_BGRA2GRAY}.get(patch.shape[2])
        patch = cv2.cvtColor(patch, conversion) if conversion is not None else np.ascontiguousarray(patch[:, :, 0])
    shrinking = patch.shape[0] > SIDE or patch.shape[1] > SIDE
    patch = cv2.resize(patch, (SIDE, SIDE), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return float(cv2.Laplacian(patch, cv2.CV_32F).var())
