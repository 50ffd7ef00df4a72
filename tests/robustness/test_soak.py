"""A long run of identify(): memory must not grow with the number of frames (a leak shows on a device within hours)."""

from __future__ import annotations

import gc
import os
import time

import cv2
import numpy as np
import pytest

from edge_facenet import FaceDetector, Recognizer

WARMUP_FRAMES = 200
SOAK_FRAMES = 3000
MAX_GROWTH_MB = 20.0


def rss_mb() -> float | None:
    """Resident memory of this process: psutil where installed, else /proc/self/statm (Linux), else None."""
    try:
        import psutil
    except ImportError:
        if not os.path.exists("/proc/self/statm"):
            return None
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return psutil.Process().memory_info().rss / 2**20


def scene(background: np.ndarray, faces: list[tuple[np.ndarray, int, int]]) -> np.ndarray:
    frame = background.copy()
    for face, x, y in faces:
        frame[y : y + face.shape[0], x : x + face.shape[1]] = face
    return frame


def test_identify_on_thousands_of_frames_keeps_memory_flat(random_model_path, detector_path, lfw_dir, figure):
    if rss_mb() is None:
        pytest.skip("no way to read the resident memory here: install psutil")

    # 320x240 scenes with one or two LFW faces (110 px crops of the photos' centres) or none, taken in turn.
    def crop(name: str, number: int) -> np.ndarray:
        photo = cv2.imread(str(lfw_dir / "images" / name / f"{name}_{number:04d}.jpg"))
        return cv2.resize(photo[40:210, 40:210], (110, 110), interpolation=cv2.INTER_AREA)

    blair, powell = crop("Tony_Blair", 1), crop("Colin_Powell", 1)
    background = np.random.default_rng(0).integers(90, 140, (240, 320, 3), dtype=np.uint8)
    frames = [
        scene(background, [(blair, 20, 60)]),
        background,
        scene(background, [(blair, 20, 60), (powell, 190, 70)]),
        background,
    ]
    recognizer = Recognizer(random_model_path, FaceDetector(detector_path), threshold=0.5)
    recognizer.enroll("Tony_Blair", [crop("Tony_Blair", 2)])
    recognizer.enroll("Colin_Powell", [crop("Colin_Powell", 2)])
    assert [len(recognizer.identify(frame)) for frame in frames] == [1, 0, 2, 0]

    def run(count: int) -> int:
        faces = 0
        for index in range(count):
            faces += len(recognizer.identify(frames[index % len(frames)]))
            if index % 100 == 99:  # the error path runs too: a refused frame must not leave anything behind
                with pytest.raises(ValueError, match="frame must be a numpy array"):
                    recognizer.identify(None)
        return faces

    run(WARMUP_FRAMES)
    gc.collect()
    warm = rss_mb()
    start = time.perf_counter()
    faces = run(SOAK_FRAMES)
    seconds = time.perf_counter() - start
    gc.collect()
    end = rss_mb()
    figure(
        f"soak: {SOAK_FRAMES} frames ({faces} faces) in {seconds:.1f} s, {SOAK_FRAMES / seconds:.0f} frames/s; "
        f"RSS {warm:.1f} MB after {WARMUP_FRAMES} warm-up frames, {end:.1f} MB at the end ({end - warm:+.1f} MB)"
    )
    assert faces == SOAK_FRAMES * 3 // 4  # 1 + 0 + 2 + 0 faces every four frames
    assert end - warm < MAX_GROWTH_MB
