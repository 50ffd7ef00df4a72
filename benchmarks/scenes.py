"""Synthetic test scenes: LFW faces pasted onto a blurred background at chosen sizes and places."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np


def lfw_photos(lfw_dir: Path, count: int, seed: int = 0) -> list[Path]:
    """Pick ``count`` LFW photos of different people, reproducibly."""
    people = sorted(p for p in (lfw_dir / "images").iterdir() if p.is_dir())
    chosen = random.Random(seed).sample(people, count)
    return [sorted(person.glob("*.jpg"))[0] for person in chosen]


def compose_scene(
    photos: list[Path], size: tuple[int, int], face_width: int, seed: int = 0
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Paste the central part of each photo into a (width, height) frame without overlaps.

    Returns:
        The BGR frame and, per photo, the (x, y, side) square it was pasted into.
    """
    rng = random.Random(seed)
    width, height = size
    background = cv2.imread(str(photos[0]))[:40, :40]
    frame = cv2.GaussianBlur(cv2.resize(background, (width, height)), (51, 51), 0)
    placed: list[tuple[int, int, int]] = []
    for photo in photos:
        face = cv2.imread(str(photo))[35:215, 35:215]
        face = cv2.resize(face, (face_width, face_width), interpolation=cv2.INTER_AREA)
        for _ in range(1000):
            x, y = rng.randint(0, width - face_width), rng.randint(0, height - face_width)
            if all(abs(x - px) >= face_width or abs(y - py) >= face_width for px, py, _ in placed):
                break
        else:
            raise ValueError(f"cannot place {len(photos)} faces of {face_width} px in a {width}x{height} frame")
        frame[y : y + face_width, x : x + face_width] = face
        placed.append((x, y, face_width))
    return frame, placed
