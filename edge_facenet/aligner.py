"""Face alignment: a similarity transform that puts the five landmarks on the embedder's template."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edge_facenet.metadata import ModelMetadata
from edge_facenet.templates import AlignmentTemplate, get_template
from edge_facenet.types import Face

# The fixed centre crop that matches the default template's framing on a loose face crop: a square of 48 % of the
# image width centred at (50 %, 51.2 %). On LFW's 250x250 deep-funneled images this is the box x 65-185, y 68-188
# from which the template was measured.
CENTRE_CROP_FRACTION = 0.48
CENTRE_CROP_CENTRE = (0.5, 0.512)


class FaceAligner:
    """Warps faces to an embedder's input crop.

    Args:
        template: The alignment template, or its name.
        size: (height, width) of the crop.

    Raises:
        ValueError: For an unknown template name or a non-positive size.
    """

    def __init__(self, template: AlignmentTemplate | str, size: tuple[int, int]) -> None:
        self.template = get_template(template) if isinstance(template, str) else template
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"crop size must be (height, width) with positive sides, got {size!r}")
        self.size = (int(size[0]), int(size[1]))
        self._target = self.template.landmarks(self.size[1], self.size[0])

    @classmethod
    def from_metadata(cls, metadata: ModelMetadata) -> FaceAligner:
        """The aligner an embedder's metadata asks for (its template and input size)."""
        return cls(metadata.alignment_template, metadata.input_size)

    def transform(self, landmarks: np.ndarray) -> np.ndarray:
        """Least-squares similarity transform (rotation, uniform scale, shift) from landmarks to the template.

        Args:
            landmarks: (5, 2) pixel positions in the frame, in the template's order.

        Returns:
            2 x 3 float64 matrix mapping frame pixels to crop pixels.

        Raises:
            ValueError: When the landmarks are not a finite (5, 2) array.
        """
        source = np.asarray(landmarks, dtype=np.float64)
        if source.shape != (5, 2) or not np.isfinite(source).all():
            raise ValueError(f"landmarks must be a finite (5, 2) array, got shape {source.shape}")
        # x' = a x - b y + tx and y' = b x + a y + ty for every landmark: ten equations in (a, b, tx, ty).
        x, y = source[:, 0], source[:, 1]
        ones, zeros = np.ones(5), np.zeros(5)
        system = np.concatenate([np.stack([x, -y, ones, zeros], 1), np.stack([y, x, zeros, ones], 1)])
        target = np.concatenate([self._target[:, 0], self._target[:, 1]]).astype(np.float64)
        (a, b, tx, ty), *_ = np.linalg.lstsq(system, target, rcond=None)
        return np.array([[a, -b, tx], [b, a, ty]])

    def align(self, frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Return the aligned (height, width, 3) crop of one face of a BGR frame."""
        matrix = self.transform(landmarks)
        scale = float(np.hypot(matrix[0, 0], matrix[1, 0]))
        if scale < 0.5:
            # Shrinking a large face by more than 2x in one bilinear warp aliases; shrink its region with area
            # averaging first, then warp the rest of the way.
            frame, matrix = _prescale(frame, matrix, scale, self.size)
        height, width = self.size
        return cv2.warpAffine(frame, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def align_faces(self, frame: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """Return the aligned crops of several faces of one frame, shape (N, height, width, 3), uint8."""
        if not faces:
            return np.zeros((0, *self.size, 3), dtype=np.uint8)
        return np.stack([self.align(frame, face.landmarks) for face in faces])

    def centre_crop(self, image: np.ndarray) -> np.ndarray:
        """Crop a loose face image without landmarks: the fixed centre crop matched to the template's framing.

        This is the FaceNet paper's "fixed centre crop": use it for images that are already roughly framed around
        one face (e.g. LFW photos) when the detector finds no face.
        """
        height, width = image.shape[:2]
        side = CENTRE_CROP_FRACTION * width
        cx, cy = CENTRE_CROP_CENTRE[0] * width, CENTRE_CROP_CENTRE[1] * height
        crop_h, crop_w = self.size
        scale = crop_w / side
        matrix = np.array([[scale, 0.0, crop_w / 2 - scale * cx], [0.0, scale, crop_h / 2 - scale * cy]])
        if scale < 0.5:
            image, matrix = _prescale(image, matrix, scale, self.size)
        return cv2.warpAffine(image, matrix, (crop_w, crop_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _prescale(
    frame: np.ndarray, matrix: np.ndarray, scale: float, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    height, width = size
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], dtype=np.float64)
    source = corners @ inverse.T
    x0, y0 = np.floor(source.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(source.max(axis=0)).astype(int) + 2
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return frame, matrix
    factor = 2.0 * scale
    region = frame[y0:y1, x0:x1]
    small = cv2.resize(
        region,
        (max(1, round(region.shape[1] * factor)), max(1, round(region.shape[0] * factor))),
        interpolation=cv2.INTER_AREA,
    )
    fx, fy = small.shape[1] / region.shape[1], small.shape[0] / region.shape[0]
    # Crop pixel = matrix @ frame pixel, and frame pixel = (small pixel / f) + offset.
    to_frame = np.array([[1 / fx, 0.0, x0], [0.0, 1 / fy, y0], [0.0, 0.0, 1.0]])
    return small, matrix @ to_frame
