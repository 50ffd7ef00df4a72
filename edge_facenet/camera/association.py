"""Linking a frame's detections to tracks: box overlap first, then centre distance for what is left.

Used by :class:`~edge_facenet.camera.tracker.FaceTracker`; numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_facenet.types import Face

_MAX_SIZE_CHANGE = 1.5  # a detection linked by distance alone is within this factor of the track's width


def box_area(bbox: np.ndarray) -> float:
    """Area of an (x1, y1, x2, y2) box in square pixels; 0 for an empty box."""
    x1, y1, x2, y2 = (float(value) for value in bbox)
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def face_boxes(faces: Sequence[Face]) -> np.ndarray:
    """The (F, 4) float32 boxes of faces.

    Raises:
        ValueError: When a box is not 4 finite numbers.
    """
    boxes = np.zeros((len(faces), 4), dtype=np.float32)
    for index, face in enumerate(faces):
        bbox = np.asarray(face.bbox, dtype=np.float32)
        if bbox.shape != (4,) or not np.isfinite(bbox).all():
            raise ValueError(f"face {index}: bbox must be 4 finite numbers (x1, y1, x2, y2), got {face.bbox!r}")
        boxes[index] = bbox
    return boxes


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (T x 4) with every box of ``b`` (F x 4): T x F."""
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    intersection = np.clip(width, 0.0, None) * np.clip(height, 0.0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0.0, None) * np.clip(a[:, 3] - a[:, 1], 0.0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0.0, None) * np.clip(b[:, 3] - b[:, 1], 0.0, None)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0.0, intersection / np.maximum(union, 1e-12), 0.0)


def nearby_matches(
    predicted: np.ndarray, boxes: np.ndarray, taken: list[tuple[int, int]], max_jump: float
) -> list[tuple[int, int]]:
    """Pairs of the tracks and detections not in ``taken``, by rising centre distance in track widths."""
    free_tracks = sorted(set(range(len(predicted))) - {track for track, _ in taken})
    free_faces = sorted(set(range(len(boxes))) - {face for _, face in taken})
    candidates = []
    for track_index in free_tracks:
        box = predicted[track_index]
        width = max(float(box[2] - box[0]), 1e-6)
        for face_index in free_faces:
            other = boxes[face_index]
            size_ratio = max(float(other[2] - other[0]), 1e-6) / width
            gap = np.hypot(*((other[:2] + other[2:]) - (box[:2] + box[2:])) / 2) / width
            if gap <= max_jump and 1 / _MAX_SIZE_CHANGE <= size_ratio <= _MAX_SIZE_CHANGE:
                candidates.append((float(gap), track_index, face_index))
    matches: list[tuple[int, int]] = []
    used_tracks: set[int] = set()
    used_faces: set[int] = set()
    for _, track_index, face_index in sorted(candidates):
        if track_index not in used_tracks and face_index not in used_faces:
            used_tracks.add(track_index)
            used_faces.add(face_index)
            matches.append((track_index, face_index))
    return matches


def iou_matches(iou: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """(track, detection) index pairs by falling IoU, each index at most once; ties go to the earlier track."""
    if iou.size == 0:
        return []
    used_tracks: set[int] = set()
    used_faces: set[int] = set()
    matches = []
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        track_index, face_index = divmod(int(flat), iou.shape[1])
        if iou[track_index, face_index] < threshold:
            break
        if track_index in used_tracks or face_index in used_faces:
            continue
        used_tracks.add(track_index)
        used_faces.add(face_index)
        matches.append((track_index, face_index))
    return matches
