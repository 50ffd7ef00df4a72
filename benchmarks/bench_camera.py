"""Frames per second of the whole camera app on 640x480 video files, with and without tracking, side by side.

Usage:
    python benchmarks/bench_camera.py [--lfw-dir DIR] [--detector YUNET] [--frames 150] [--rounds 3] [--json]

Two videos of LFW faces drifting across a plain background (one face; four faces) are written first. Each round
runs the app's frame loop (decode, detect, track, embed where needed, match, no drawing) over each video once with
tracking and once without, so load changes on the machine hit both alike; the figure is the median over rounds.
The embedder is the package's default (INT8 on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenes import lfw_photos

SHARED = Path(os.environ.get("EDGE_FACENET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SIZE = (640, 480)
FACE = 120


def write_video(photos: list[Path], path: Path, frames: int) -> None:
    """Faces drifting slowly in their own lanes across a grey gradient, 15 fps."""
    width, height = SIZE
    background = np.tile(np.linspace(70, 140, width, dtype=np.uint8)[None, :, None], (height, 1, 3))
    patches = [cv2.resize(cv2.imread(str(p))[30:220, 30:220], (FACE, FACE)) for p in photos]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, SIZE)
    for index in range(frames):
        frame = background.copy()
        for lane, patch in enumerate(patches):
            x = 20 + (lane % 2) * 320 + round(150 * abs(np.sin(index / 40 + lane)))
            y = 20 + (lane // 2) * 230
            frame[y : y + FACE, x : x + FACE] = patch
        writer.write(frame)
    writer.release()


def run_app(app_factory, video: Path) -> tuple[float, int]:
    """Frames per second of one pass of the app's loop over a video, and the faces embedded."""
    from edge_facenet.camera.capture import open_source

    app = app_factory()
    start = time.perf_counter()
    with open_source(str(video)) as source:
        for frame in source:
            app.process(frame.image, frame.index, frame.timestamp)
    seconds = time.perf_counter() - start
    return app.summary.frames / seconds, app.summary.embeddings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw-dir", type=Path, default=SHARED / "data" / "lfw")
    parser.add_argument("--detector", type=Path, default=SHARED / "models" / "face_detection_yunet_2023mar.onnx")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from edge_facenet import __version__
    from edge_facenet.camera.app import CameraApp
    from edge_facenet.detector import FaceDetector
    from edge_facenet.recognizer import Recognizer

    workdir = Path(tempfile.mkdtemp(prefix="edge_facenet_bench_camera_"))
    photos = lfw_photos(args.lfw_dir, 4)
    recognizer = Recognizer(detector=FaceDetector(args.detector))
    # Enrol the four people from their own photos so that matching does real work.
    for photo in photos:
        recognizer.enroll(photo.parent.name, [photo])
    videos = {}
    for count in (1, 4):
        videos[count] = workdir / f"faces_{count}.mp4"
        write_video(photos[:count], videos[count], args.frames)

    runs: dict[str, list[float]] = {}
    embedded: dict[str, int] = {}
    for _ in range(args.rounds):
        for count, video in videos.items():
            for tracking in (True, False):
                key = f"{count} face{'s' * (count > 1)}, {'tracking' if tracking else 'no tracking'}"
                fps, embeddings = run_app(lambda t=tracking: CameraApp(recognizer, tracking=t), video)
                runs.setdefault(key, []).append(fps)
                embedded[key] = embeddings

    results = {
        key: {"fps": float(np.median(values)), "runs": values, "embeddings": embedded[key]}
        for key, values in runs.items()
    }
    machine = f"{platform.machine()}, {len(os.sched_getaffinity(0))} cores, {platform.python_version()}"
    if args.json:
        print(json.dumps({"machine": machine, "version": __version__, "frames": args.frames, "results": results}))
        return 0
    print(f"camera app on 640x480 video, {args.frames} frames, median of {args.rounds} rounds ({machine}):")
    for key, result in results.items():
        print(f"  {key:<26} {result['fps']:6.1f} frames/s   ({result['embeddings']} faces embedded)")
    for count in (1, 4):
        plural = "s" * (count > 1)
        ratio = results[f"{count} face{plural}, tracking"]["fps"] / results[f"{count} face{plural}, no tracking"]["fps"]
        print(f"  tracking speed-up with {count} face{plural}: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
