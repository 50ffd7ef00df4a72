"""Drawing on frames: a box per face, its name (or "unknown") and similarity, and the frame rate."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KNOWN_COLOUR = (60, 200, 60)  # BGR green
UNKNOWN_COLOUR = (60, 60, 220)  # BGR red
PENDING_COLOUR = (200, 200, 200)  # grey: a track not embedded yet


@dataclass(frozen=True)
class Label:
    """What to draw for one face.

    Attributes:
        bbox: (x1, y1, x2, y2) in pixels.
        name: The identity; None for unknown.
        similarity: Best gallery similarity, or None when the face has not been compared yet.
        track_id: The track the face belongs to, or None without tracking.
    """

    bbox: tuple[float, float, float, float]
    name: str | None
    similarity: float | None
    track_id: int | None = None


def draw_labels(frame: np.ndarray, labels: list[Label], fps: float | None = None) -> np.ndarray:
    """Draw the labels (and the frame rate, top left) on a copy of a BGR frame."""
    canvas = frame.copy()
    scale = max(0.4, min(canvas.shape[:2]) / 900)
    thickness = max(1, round(scale * 2))
    for label in labels:
        x1, y1, x2, y2 = (round(v) for v in label.bbox)
        if label.similarity is None:
            colour, text = PENDING_COLOUR, "..."
        else:
            colour = KNOWN_COLOUR if label.name else UNKNOWN_COLOUR
            text = f"{label.name or 'unknown'} {label.similarity:.2f}"
        if label.track_id is not None:
            text = f"#{label.track_id} {text}"
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(0, y1 - height - baseline - 4)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 4, top + height + baseline + 4), colour, cv2.FILLED)
        cv2.putText(
            canvas, text, (x1 + 2, top + height + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness, cv2.LINE_AA
        )
    if fps is not None:
        cv2.putText(
            canvas,
            f"{fps:.1f} fps",
            (8, round(28 * scale / 0.7)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
    return canvas
