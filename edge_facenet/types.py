"""Result types of the runtime: small frozen dataclasses, not dicts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Face:
    """A detected face.

    Attributes:
        bbox: (x1, y1, x2, y2) in pixels of the frame, float32.
        landmarks: (5, 2) float32 pixel positions: right eye, left eye, nose tip, right and left mouth corner
            (the subject's right, which is on the left of the image).
        det_score: Detector confidence in 0..1.
    """

    bbox: np.ndarray
    landmarks: np.ndarray
    det_score: float

    @property
    def area(self) -> float:
        """Box area in square pixels."""
        x1, y1, x2, y2 = self.bbox
        return float(max(0.0, x2 - x1) * max(0.0, y2 - y1))


@dataclass(frozen=True, eq=False)
class Match:
    """A face of a frame and who it is.

    Attributes:
        bbox: (x1, y1, x2, y2) in pixels of the frame.
        landmarks: (5, 2) landmark positions in pixels.
        det_score: Detector confidence in 0..1.
        name: The identity, or None when the face is unknown (no gallery entry reaches the threshold).
        similarity: Cosine similarity to the best gallery identity (-1 when the gallery is empty).
        embedding: The face's L2-normalised embedding.
    """

    bbox: np.ndarray
    landmarks: np.ndarray
    det_score: float
    name: str | None
    similarity: float
    embedding: np.ndarray

    @property
    def is_known(self) -> bool:
        """True when the face matched a gallery identity."""
        return self.name is not None
