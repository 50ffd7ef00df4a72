"""Runtime speed on this machine: detector, embedder and Recognizer.identify(), measured side by side.

Usage:
    python benchmarks/bench_runtime.py [--model M.onnx] [--lfw-dir DIR] [--detector YUNET] [--repeats 50] [--json]

Without --model, a randomly initialised nn4_small2 is exported first (speed does not depend on the weights).
Scenes are LFW faces pasted onto a blurred background (benchmarks/scenes.py). Figures are medians over the repeats
with the 10th-90th percentile range; ratios compare variants measured in this same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenes import compose_scene, lfw_photos

SHARED = Path(os.environ.get("EDGE_FACENET_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def measure(function: Callable[[], object], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median and 10th/90th percentile of a call's wall time in milliseconds."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    return {"ms": float(median), "p10": float(p10), "p90": float(p90)}


def export_random_model(directory: Path, arch: str) -> Path:
    from edge_facenet.training import build_model
    from edge_facenet.training.export import export_onnx, metadata_for

    model = build_model(arch)
    path = directory / f"{arch}_random.onnx"
    export_onnx(model, path, metadata_for(model, arch))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="embedder ONNX (default: export a random nn4_small2)")
    parser.add_argument("--lfw-dir", type=Path, default=SHARED / "data" / "lfw")
    parser.add_argument("--detector", type=Path, default=SHARED / "models" / "face_detection_yunet_2023mar.onnx")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from edge_facenet import __version__
    from edge_facenet.detector import FaceDetector
    from edge_facenet.embedder import Embedder
    from edge_facenet.recognizer import Recognizer

    workdir = Path(tempfile.mkdtemp(prefix="edge_facenet_bench_"))
    model_path = args.model or export_random_model(workdir, "nn4_small2")
    photos = lfw_photos(args.lfw_dir, 8)
    results: dict[str, dict[str, float]] = {}

    # 1. Detector: ONNX Runtime with our decoding against OpenCV's FaceDetectorYN, same model, same frames.
    for width, height in ((640, 480), (1280, 720)):
        frame, _ = compose_scene(photos[:1], (width, height), face_width=140, seed=1)
        for backend in ("onnxruntime", "opencv"):
            for max_side in (None, 640, 320):
                if max_side is not None and max_side >= max(width, height):
                    continue
                detector = FaceDetector(args.detector, backend=backend, max_side=max_side)
                key = f"detect {width}x{height} {backend} max_side={max_side or 'native'}"
                results[key] = measure(lambda d=detector, f=frame: d.detect(f), args.repeats)

    # 1b. What a reduced detection size costs: recall by face size on 1280x720 scenes, native against max_side=640.
    recall: dict[str, dict[int, float]] = {}
    many = lfw_photos(args.lfw_dir, 60, seed=5)
    for max_side in (None, 640):
        detector = FaceDetector(args.detector, max_side=max_side)
        label = f"max_side={max_side or 'native'}"
        recall[label] = {}
        for face_width in (24, 32, 48, 64, 96):
            hits = []
            for index, photo in enumerate(many):
                frame, placed = compose_scene([photo], (1280, 720), face_width=face_width, seed=index)
                (x, y, side) = placed[0]
                centres = [(f.bbox[:2] + f.bbox[2:]) / 2 for f in detector.detect(frame)]
                hits.append(any(np.linalg.norm(c - [x + side / 2, y + side / 2]) < side / 3 for c in centres))
            recall[label][face_width] = float(np.mean(hits))

    # 2. Embedder: ms per face at batch 1 and 8.
    embedder = Embedder(model_path, backend="onnxruntime")
    crops = np.random.default_rng(0).integers(0, 256, (8, *embedder.input_size, 3), dtype=np.uint8)
    for batch in (1, 8):
        timing = measure(lambda b=batch: embedder.embed(crops[:b]), args.repeats)
        results[f"embed {embedder.metadata.arch} batch {batch} (per face)"] = {k: v / batch for k, v in timing.items()}

    # 3. identify(): full pipeline at 640x480 with 1 and 4 faces, 5 identities enrolled.
    recognizer = Recognizer(model=embedder, detector=FaceDetector(args.detector), threshold=0.5)
    for index, photo in enumerate(photos[4:8]):
        recognizer.enroll(f"person_{index}", [photo])
    for faces in (1, 4):
        frame, _ = compose_scene(photos[:faces], (640, 480), face_width=120, seed=2)
        found = len(recognizer.identify(frame))
        timing = measure(lambda f=frame: recognizer.identify(f), args.repeats)
        timing["fps"] = 1000.0 / timing["ms"]
        timing["faces_found"] = found
        results[f"identify 640x480 {faces} face(s)"] = timing

    machine = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or 'unknown processor'}",
        "python": platform.python_version(),
        "edge_facenet": __version__,
        "onnxruntime": __import__("onnxruntime").__version__,
        "opencv": __import__("cv2").__version__,
        "model": str(model_path),
        "date": time.strftime("%Y-%m-%d"),
    }
    if args.json:
        print(json.dumps({"machine": machine, "results": results, "recall_1280x720": recall}))
        return 0
    for key, value in machine.items():
        print(f"{key}: {value}")
    print()
    print(f"{'measurement':<52} {'median ms':>10} {'p10-p90':>15} {'per s':>8}")
    for key, value in results.items():
        spread = f"{value['p10']:.2f}-{value['p90']:.2f}"
        print(f"{key:<52} {value['ms']:>10.2f} {spread:>15} {1000 / value['ms']:>8.1f}")
    print(f"\ndetector recall on 1280x720 scenes by face width in pixels ({len(many)} faces each):")
    for label, by_width in recall.items():
        print(f"  {label:<18}" + "  ".join(f"{width}px {value:.2f}" for width, value in by_width.items()))
    ort, cv = results["detect 640x480 onnxruntime max_side=native"], results["detect 640x480 opencv max_side=native"]
    print(f"\ndetector 640x480: OpenCV FaceDetectorYN / ONNX Runtime time ratio = {cv['ms'] / ort['ms']:.2f}")
    print(f"identify() 640x480, 1 face: {results['identify 640x480 1 face(s)']['fps']:.1f} frames/s (goal: 60)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
