"""The runtime as a fresh process sees it: cold start to the first identify() result, peak memory, what it imported.

Usage:
    python benchmarks/bench_process.py --detector YUNET.onnx --frame FRAME.png

This is the child benchmarks/run.py starts: it imports edge_facenet, builds ``Recognizer(detector=...)`` (the
package's default embedder: INT8 on a CPU), reads the frame and runs one ``identify()``, then prints one JSON object:
``cold_start_s`` (from the moment the parent started it, passed as a ``time.perf_counter()`` reading in
$EDGE_FACENET_BENCH_START, whose clock is shared by all processes on Linux; without it, from this script's start),
``peak_rss_bytes`` (ru_maxrss; the parent starts it through a shell so that the figure is this process's own),
``faces``, and ``imports_torch`` / ``imports_onnx`` (whether either is in
``sys.modules``: the runtime must not import them).
Only the standard library is imported before edge_facenet, so nothing here inflates the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

START_ENV = "EDGE_FACENET_BENCH_START"
_SCRIPT_START = time.perf_counter()


def run_child(detector_path: Path, frame_path: Path) -> dict[str, object]:
    """Start this script in a fresh interpreter and return what it measured."""
    from figures import in_fresh_process

    command = [sys.executable, __file__, "--detector", str(detector_path), "--frame", str(frame_path)]
    environment = dict(os.environ)
    environment[START_ENV] = repr(time.perf_counter())
    done = subprocess.run(in_fresh_process(command), capture_output=True, text=True, env=environment, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the runtime process failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", type=Path, required=True, help="YuNet ONNX file")
    parser.add_argument("--frame", type=Path, required=True, help="an image to identify the faces of")
    args = parser.parse_args(argv)
    start = float(os.environ.get(START_ENV, _SCRIPT_START))

    import cv2

    import edge_facenet

    recognizer = edge_facenet.Recognizer(detector=edge_facenet.FaceDetector(args.detector))
    frame = cv2.imread(str(args.frame))
    if frame is None:
        print(f"error: cannot read the frame {args.frame}", file=sys.stderr)
        return 2
    matches = recognizer.identify(frame)
    cold_start_s = time.perf_counter() - start

    result = {
        "cold_start_s": cold_start_s,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "faces": len(matches),
        "precision": recognizer.embedder.metadata.precision,
        "imports_torch": "torch" in sys.modules,
        "imports_onnx": "onnx" in sys.modules,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
