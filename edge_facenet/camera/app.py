"""The camera app: name the people in front of a camera, from a folder of their photos.

Usage:
    python -m edge_facenet.camera --gallery people/                      # camera 0, window when there is a display
    python -m edge_facenet.camera --gallery people/ --source video.mp4 --no-display --output annotated.mp4
    python -m edge_facenet.camera --gallery people/ --source rtsp://camera/stream --json > events.jsonl
    python -m edge_facenet.camera --gallery people/ --source csi          # Jetson CSI camera (GStreamer)

``people/<name>/*.jpg`` is enrolled (incrementally: unchanged photos are not embedded again) into
``people/gallery.sqlite3`` at start, and again whenever the folder changes while the app runs (``--watch``). Faces
are tracked across frames; a track's name is decided from the mean of its recent embeddings, and a tracked face is
embedded again only every few frames or when it grows or gets sharper, so names do not flicker and most frames cost
a detection only. Events (a track appeared, was identified, changed identity, left; the gallery was updated) go to
standard output, one line each (``--json``: one JSON object each); Ctrl-C or the end of the input stops with a
summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge_facenet.camera.annotate import Label, draw_labels
from edge_facenet.camera.capture import open_source, parse_source
from edge_facenet.camera.tracker import FaceTracker, TrackerConfig, TrackEvent
from edge_facenet.camera.watch import FolderWatcher
from edge_facenet.gallery import EnrollmentReport, Gallery, GalleryMismatchError
from edge_facenet.quality import sharpness
from edge_facenet.recognizer import Recognizer

logger = logging.getLogger(__name__)

WINDOW = "edge_facenet"
FPS_SMOOTHING = 0.9


@dataclass
class RunSummary:
    """What a run did.

    Attributes:
        frames: Frames processed.
        faces: Faces detected, summed over frames.
        embeddings: Faces embedded (with tracking, far fewer than ``faces``).
        tracks: Tracks started.
        named: Identities seen, with the best similarity each reached.
        seconds: Wall time of the frame loop.
        dropped: Frames the capture dropped to stay current.
        reconnects: Times a live stream was reopened.
    """

    frames: int = 0
    faces: int = 0
    embeddings: int = 0
    tracks: int = 0
    named: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    dropped: int = 0
    reconnects: int = 0

    @property
    def fps(self) -> float:
        """Mean frames per second of the loop."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "event": "summary",
            "frames": self.frames,
            "faces": self.faces,
            "embeddings": self.embeddings,
            "tracks": self.tracks,
            "named": {name: round(similarity, 4) for name, similarity in sorted(self.named.items())},
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "dropped": self.dropped,
            "reconnects": self.reconnects,
        }


class CameraApp:
    """The frame loop: detect, track, embed where needed, decide identities, draw and report.

    Args:
        recognizer: Detector, aligner, embedder and the enrolled gallery.
        tracking: Track faces and decide names over time; False names every face of every frame on its own.
        tracker_config: Tracking settings.
    """

    def __init__(self, recognizer: Recognizer, tracking: bool = True, tracker_config: TrackerConfig | None = None):
        self.recognizer = recognizer
        self.tracking = tracking
        self.tracker = FaceTracker(tracker_config)
        self.threshold = recognizer.match_threshold()
        self.summary = RunSummary()

    def match(self, embeddings: np.ndarray) -> list[tuple[str | None, float]]:
        """Best gallery identity of each embedding: (name, or None below the threshold; similarity)."""
        results = []
        for candidates in self.recognizer.gallery.search(embeddings, k=1):
            similarity = candidates[0].similarity if candidates else -1.0
            name = candidates[0].name if candidates and similarity >= self.threshold else None
            results.append((name, float(similarity)))
        return results

    def process(self, frame: np.ndarray, index: int, timestamp: float) -> tuple[list[Label], list[dict[str, object]]]:
        """Run one frame; returns what to draw and the events it caused (as JSON-ready dicts)."""
        faces = self.recognizer.detect(frame)
        self.summary.frames += 1
        self.summary.faces += len(faces)
        if not self.tracking:
            return self._process_untracked(frame, faces, index, timestamp)

        pairs = self.tracker.update(faces, index, timestamp, [sharpness(frame, face.bbox) for face in faces])
        todo = [(track, face) for track, face in pairs if self.tracker.needs_embedding(track, face, index)]
        if todo:
            crops = self.recognizer.aligner.align_faces(frame, [face for _, face in todo])
            embeddings = self.recognizer.embedder.embed(crops)
            self.summary.embeddings += len(todo)
            self.tracker.add_embeddings(
                [(track, embedding) for (track, _), embedding in zip(todo, embeddings, strict=True)],
                self.match,
                index,
                timestamp,
            )
        labels = [
            Label(tuple(float(v) for v in face.bbox), track.name, track.similarity, track.track_id)
            for track, face in pairs
        ]
        return labels, [self._record(event) for event in self.tracker.drain_events()]

    def finish(self, index: int, timestamp: float) -> list[dict[str, object]]:
        """End the run: every live track leaves."""
        if not self.tracking:
            return []
        self.tracker.finish(index, timestamp)
        return [self._record(event) for event in self.tracker.drain_events()]

    def _process_untracked(self, frame, faces, index: int, timestamp: float):
        if not faces:
            return [], []
        embeddings = self.recognizer.embedder.embed(self.recognizer.aligner.align_faces(frame, faces))
        self.summary.embeddings += len(faces)
        labels, events = [], []
        for face, (name, similarity) in zip(faces, self.match(embeddings), strict=True):
            bbox = tuple(float(v) for v in face.bbox)
            labels.append(Label(bbox, name, similarity))
            if name is not None:
                self.summary.named[name] = max(similarity, self.summary.named.get(name, -1.0))
            events.append(
                {
                    "event": "face",
                    "frame": index,
                    "time": round(timestamp, 3),
                    "name": name,
                    "similarity": round(similarity, 4),
                    "bbox": [round(v, 1) for v in bbox],
                }
            )
        return labels, events

    def _record(self, event: TrackEvent) -> dict[str, object]:
        if event.kind == "appeared":
            self.summary.tracks += 1
        if event.name is not None and event.similarity is not None:
            self.summary.named[event.name] = max(event.similarity, self.summary.named.get(event.name, -1.0))
        return event.to_dict()


def describe(event: dict[str, object]) -> str:
    """One human-readable line for an event."""
    where = f"[{event['time']:7.2f}s frame {event['frame']:>5}]"
    name = event.get("name") or "unknown"
    similarity = f" ({event['similarity']:.3f})" if event.get("similarity") is not None else ""
    kind = event["event"]
    if kind == "gallery_updated":
        return (
            f"{where} gallery updated: {event['added']} photos added, {event['removed']} removed, "
            f"{event['failed']} not enrolled; {event['people']} people"
        )
    if kind == "face":
        return f"{where} face: {name}{similarity}"
    track = f"track {event['track']}"
    if kind == "appeared":
        return f"{where} {track} appeared"
    if kind == "identified":
        return f"{where} {track} identified: {name}{similarity}"
    if kind == "identity_changed":
        return f"{where} {track} changed from {event.get('previous_name') or 'unknown'} to {name}{similarity}"
    return f"{where} {track} left ({name})"


def _display_available() -> bool:
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:  # a headless OpenCV build has no GUI functions
        return False
    return True


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge_facenet.camera", description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=Path, required=True, help="folder of people: <name>/<photos>")
    parser.add_argument("--source", default="0", help="camera index, video file, URL, csi[:N] or image folder")
    parser.add_argument("--gallery-file", type=Path, help="the gallery database (default: <gallery>/gallery.sqlite3)")
    parser.add_argument("--threshold", type=float, help="cosine match threshold (default: the model's)")
    parser.add_argument("--model", type=Path, help="embedder ONNX or TensorRT engine (default: the package's)")
    parser.add_argument("--detector", type=Path, help="YuNet ONNX (default: $EDGE_FACENET_DETECTOR, cache, download)")
    parser.add_argument("--backend", default="auto", help="embedder backend: auto, onnxruntime, tensorrt")
    parser.add_argument("--precision", default="auto", help="package model precision: auto, fp32, int8")
    parser.add_argument("--no-tracking", action="store_true", help="name each face of each frame on its own")
    parser.add_argument("--realtime", action="store_true", help="play files at their frame rate, dropping late frames")
    parser.add_argument(
        "--watch",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="look at the people folder this often and enrol what changed (0: never)",
    )
    parser.add_argument(
        "--stream-timeout", type=float, default=10.0, help="seconds a stream URL may take to open or send a frame"
    )
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--output", type=Path, help="write the annotated video here (.mp4)")
    parser.add_argument("--no-display", action="store_true", help="no window (automatic without a display)")
    parser.add_argument("--json", action="store_true", help="one JSON object per event on standard output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report = print if not args.json else (lambda *a, **k: print(*a, **k, file=sys.stderr))

    # 1. Open everything that can fail on bad input before the loop starts, each failure one line.
    gallery = source = writer = None
    try:
        if args.max_frames is not None and args.max_frames < 1:
            raise ValueError(f"--max-frames must be at least 1, got {args.max_frames}")
        if not args.stream_timeout > 0:
            raise ValueError(f"--stream-timeout must be a positive number of seconds, got {args.stream_timeout}")
        if not args.watch >= 0:
            raise ValueError(f"--watch must be 0 (off) or a positive number of seconds, got {args.watch}")
        spec = parse_source(args.source)
        recognizer = Recognizer(
            args.model, args.detector, backend=args.backend, threshold=args.threshold, precision=args.precision
        )
        gallery, enrolment = Gallery.from_folder(args.gallery, recognizer, path=args.gallery_file)
        recognizer.gallery = gallery
        report(
            f"gallery {args.gallery}: {len(gallery.names())} people, {gallery.count()} photos "
            f"({len(enrolment.added)} added, {len(enrolment.unchanged)} unchanged, {len(enrolment.removed)} removed, "
            f"{len(enrolment.failed)} not enrolled)"
        )
        for path, reason in enrolment.failed:
            report(f"  not enrolled: {path}: {reason}")
        if not gallery.names():
            raise ValueError(f"no one could be enrolled from {args.gallery}: add <name>/<photo> files with a face")
        app = CameraApp(recognizer, tracking=not args.no_tracking)
        watcher = FolderWatcher(args.gallery, gallery, recognizer, args.watch) if args.watch > 0 else None
        source = open_source(spec, realtime=args.realtime, stream_timeout=args.stream_timeout)
    except (FileNotFoundError, NotADirectoryError, ValueError, GalleryMismatchError, ImportError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        if gallery is not None:
            gallery.close()
        return 1
    display = not args.no_display and _display_available()

    # 2. The loop: one frame at a time, newest first for live sources.
    fps, index, timestamp = None, -1, 0.0
    video_shape: tuple[int, ...] = ()  # the annotated video's frame shape, set by its first frame
    start = time.perf_counter()
    try:
        with source:
            for frame in source:
                if args.max_frames is not None and app.summary.frames >= args.max_frames:
                    break
                index, timestamp = frame.index, frame.timestamp
                tick = time.perf_counter()
                labels, events = app.process(frame.image, index, timestamp)
                if watcher is not None and (update := watcher.poll()) is not None:
                    events.append(_gallery_event(update, len(gallery.names()), index, timestamp))
                elapsed = time.perf_counter() - tick
                fps = 1.0 / elapsed if fps is None else FPS_SMOOTHING * fps + (1 - FPS_SMOOTHING) / max(elapsed, 1e-6)
                _emit(events, args.json)
                if display or args.output:
                    canvas = draw_labels(frame.image, labels, fps)
                    if args.output:
                        if writer is None:
                            writer, video_shape = _open_writer(args.output, canvas.shape, source.fps), canvas.shape
                        writer.write(_fit(canvas, video_shape))
                    if display:
                        cv2.imshow(WINDOW, canvas)
                        if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                            break
            stats = source.stats()
    except KeyboardInterrupt:
        stats = source.stats()
        report("interrupted")
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if writer is not None:
            writer.release()
        if display:
            cv2.destroyAllWindows()
        gallery.close()

    # 3. The end: tracks leave, and the summary.
    _emit(app.finish(index + 1, timestamp), args.json)
    summary = app.summary
    summary.seconds = time.perf_counter() - start
    summary.dropped, summary.reconnects = stats.frames_dropped, stats.reconnects
    if args.json:
        print(json.dumps(summary.to_dict()), flush=True)
    else:
        named = ", ".join(f"{n} ({s:.2f})" for n, s in sorted(summary.named.items())) or "nobody"
        dropped = f" ({summary.dropped} dropped)" if summary.dropped else ""
        print(
            f"summary: {summary.frames} frames{dropped}, {summary.faces} faces, {summary.tracks} tracks, "
            f"{summary.embeddings} embeddings, {summary.fps:.1f} frames/s; named: {named}"
        )
        if args.output:
            print(f"annotated video: {args.output}")
    return 0


def _gallery_event(report: EnrollmentReport, people: int, index: int, timestamp: float) -> dict[str, object]:
    return {
        "event": "gallery_updated",
        "frame": index,
        "time": round(timestamp, 3),
        "added": len(report.added),
        "removed": len(report.removed),
        "failed": len(report.failed),
        "people": people,
    }


def _emit(events: list[dict[str, object]], as_json: bool) -> None:
    for event in events:
        print(json.dumps(event) if as_json else describe(event), flush=True)


def _fit(canvas: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    # A video has one frame size, and OpenCV's writer drops frames of another size without an error: a folder of
    # images of several sizes is scaled into the first one's size, keeping each image's proportions (black bars).
    height, width = shape[:2]
    if canvas.shape[:2] == (height, width):
        return canvas
    scale = min(width / canvas.shape[1], height / canvas.shape[0])
    size = (max(1, round(canvas.shape[1] * scale)), max(1, round(canvas.shape[0] * scale)))
    resized = cv2.resize(canvas, size, interpolation=cv2.INTER_AREA)
    fitted = np.zeros((height, width, 3), dtype=np.uint8)
    top, left = (height - size[1]) // 2, (width - size[0]) // 2
    fitted[top : top + size[1], left : left + size[0]] = resized
    return fitted


def _open_writer(path: Path, shape: tuple[int, ...], fps: float | None) -> cv2.VideoWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps or 15.0, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write the video {path} (OpenCV without FFmpeg, or a bad file name)")
    return writer
