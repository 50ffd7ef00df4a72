"""Name the faces of a live camera in a window: the smallest loop over Recognizer. Press q or Esc to quit.

Example:
    python samples/webcam.py --people people/ [--camera 0]

``people/`` holds one folder per person (``people/Ada/1.jpg``, ...); the gallery is kept in
``people/gallery.sqlite3``. ``--camera`` takes a camera index, a video file or a stream URL. The window needs an
OpenCV with GUI support (``opencv-python``, not ``opencv-python-headless``).

This sample identifies every frame from scratch and stops when the camera does. The full application,
``python -m edge_facenet.camera``, adds face tracking, camera reconnection and JSON events.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from edge_facenet import Recognizer
from edge_facenet.gallery import GALLERY_FILENAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Identify faces from a camera, live.", epilog="The full app: python -m edge_facenet.camera"
    )
    parser.add_argument("--model", type=Path, help="embedder ONNX (default: $EDGE_FACENET_MODEL or the package's)")
    parser.add_argument("--detector", type=Path, help="YuNet ONNX (default: $EDGE_FACENET_DETECTOR, cache, download)")
    parser.add_argument("--people", type=Path, required=True, help="folder of <name>/<image> files")
    parser.add_argument("--threshold", type=float, help="cosine match threshold (default: the model's)")
    parser.add_argument("--camera", default="0", help="camera index, video file or URL (default: 0)")
    args = parser.parse_args(argv)
    if not args.people.is_dir():
        print(f"error: people folder not found: {args.people}", file=sys.stderr)
        return 1

    # 1. Open the camera. OpenCV's own warnings are muted meanwhile: the error line below says what failed.
    source = int(args.camera) if args.camera.isdigit() else args.camera
    previous_level = cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    capture = cv2.VideoCapture(source)
    cv2.utils.logging.setLogLevel(previous_level)
    if not capture.isOpened():
        print(f"error: cannot open camera {args.camera}: not connected, in use, or not a video", file=sys.stderr)
        return 1

    # 2. Load the models and enrol (or update) the gallery from the people folder.
    try:
        gallery_path = args.people / GALLERY_FILENAME
        recognizer = Recognizer(args.model, args.detector, gallery=gallery_path, threshold=args.threshold)
        recognizer.gallery.enroll_folder(args.people, recognizer)
        recognizer.match_threshold()  # fails early when neither the model nor --threshold gives one
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    # 3. Read a frame, identify its faces, draw them (green: named, red: unknown) and show it; q or Esc quits.
    try:
        while True:
            ok, frame = capture.read()
            if not ok:  # the camera was unplugged, or the video ended
                break
            for match in recognizer.identify(frame):
                x1, y1, x2, y2 = (round(float(v)) for v in match.bbox)
                colour = (0, 200, 0) if match.name else (0, 0, 230)  # BGR
                cv2.rectangle(frame, (x1, y1), (x2, y2), colour, 2)
                label = f"{match.name or 'unknown'} {match.similarity:.2f}"
                cv2.putText(frame, label, (x1, max(15, y1 - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, colour, 2)
            cv2.imshow("edge_facenet (q to quit)", frame)
            if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                break
        cv2.destroyAllWindows()
    except cv2.error:  # a headless OpenCV build has no window functions
        print("error: this OpenCV cannot open windows (a headless build?): install opencv-python", file=sys.stderr)
        return 1
    finally:
        capture.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
