"""Validation of the frames and images that callers pass to the runtime."""

from __future__ import annotations

import cv2
import numpy as np


def as_bgr(frame: object, what: str = "frame") -> np.ndarray:
    """Return a BGR uint8 (H, W, 3) view or copy of a caller's image.

    Accepts BGR uint8 (H, W, 3), greyscale uint8 (H, W) and BGRA uint8 (H, W, 4).

    Raises:
        ValueError: For anything else (None, another dtype or rank, an empty image); the message says what arrived.
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(f"{what} must be a numpy array (BGR uint8 H x W x 3), got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise ValueError(
            f"{what} must be uint8 (BGR H x W x 3, greyscale H x W or BGRA H x W x 4), got dtype {frame.dtype}; "
            "convert 16-bit or float images to 8-bit first"
        )
    if frame.size == 0:
        raise ValueError(f"{what} is empty (shape {frame.shape})")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    raise ValueError(f"{what} must be BGR H x W x 3, greyscale H x W or BGRA H x W x 4 uint8, got shape {frame.shape}")
