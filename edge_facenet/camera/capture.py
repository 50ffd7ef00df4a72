"""Frame sources for the camera app: USB cameras, Jetson CSI cameras, network streams, video files and image folders.

Live sources (camera, csi, url) are read by a background thread that keeps only the newest frame, so a consumer
slower than the camera skips frames instead of falling further and further behind. Files give every frame in order
unless paced in real time; a folder gives each image once, in name order.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edge_facenet.camera.sources import (
    CSI_NEEDS_GSTREAMER,
    KINDS,
    LIVE_KINDS,
    STREAM_SCHEMES,
    SourceSpec,
    csi_pipeline,
    gstreamer_available,
    parse_source,
)
from edge_facenet.images import read_image

__all__ = [
    "KINDS",
    "LIVE_KINDS",
    "STREAM_SCHEMES",
    "CaptureStats",
    "Frame",
    "FrameSource",
    "SourceSpec",
    "backoff_delays",
    "csi_pipeline",
    "gstreamer_available",
    "open_source",
    "parse_source",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".webp")
FOLDER_FPS = 1.0
STREAM_TIMEOUT = 10.0  # seconds a stream may take to open or to deliver a frame
JOIN_TIMEOUT = 2.0


class VideoCaptureLike(Protocol):
    """What a frame source uses of a capture: ``cv2.VideoCapture`` or a stand-in for tests."""

    def isOpened(self) -> bool: ...

    def read(self) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...

    def get(self, prop_id: int) -> float: ...


@dataclass(frozen=True, eq=False)
class Frame:
    """One frame handed out by a :class:`FrameSource`.

    Attributes:
        index: The source's 0-based frame number: the position in a video file or in a folder's image list, or the
            count of frames a live source has read since it was opened (across reconnects). Frames the source
            dropped or skipped leave gaps, so indices only grow.
        timestamp: Seconds. Files: media time (index / fps, or the container's clock when the fps is unknown).
            Folders: index / 1.0 (a nominal one image a second). Live sources: ``time.monotonic()`` at the read,
            minus the moment the source was opened.
        image: BGR uint8 (H, W, 3).
    """

    index: int
    timestamp: float
    image: np.ndarray


@dataclass(frozen=True)
class CaptureStats:
    """Counters of a :class:`FrameSource`.

    Attributes:
        frames_read: Frames taken from the source (for folders, images tried, readable or not).
        frames_delivered: Frames handed to the consumer.
        frames_dropped: Frames read but never handed out: replaced by a newer one before the consumer asked,
            left over at close, or (folders) images that could not be decoded.
        reconnects: Times a live source was reopened after a failed read.
        fps: The source's frame rate when it reports one, 1.0 for folders, else None.
    """

    frames_read: int
    frames_delivered: int
    frames_dropped: int
    reconnects: int
    fps: float | None


def backoff_delays(initial: float = 0.5, maximum: float = 8.0) -> Iterator[float]:
    """Seconds to wait before successive reconnects: ``initial``, doubling each time, never above ``maximum``."""
    delay = initial
    while True:
        yield min(delay, maximum)
        delay = min(delay * 2.0, maximum)


def open_source(
    spec: SourceSpec | str,
    *,
    realtime: bool = False,
    reconnect: bool = True,
    initial_reconnect_wait: float = 0.5,
    max_reconnect_wait: float = 8.0,
    max_reconnects: int | None = None,
    stream_timeout: float = STREAM_TIMEOUT,
    capture_factory: Callable[[SourceSpec], VideoCaptureLike] | None = None,
) -> FrameSource:
    """Open a frame source; see :class:`FrameSource` for the arguments and what each kind of source does.

    Raises:
        ValueError: When the text cannot be parsed or the source cannot be opened (one line saying which).
        FileNotFoundError: When a video file does not exist.
    """
    if isinstance(spec, str):
        spec = parse_source(spec)
    return FrameSource(
        spec,
        realtime=realtime,
        reconnect=reconnect,
        initial_reconnect_wait=initial_reconnect_wait,
        max_reconnect_wait=max_reconnect_wait,
        max_reconnects=max_reconnects,
        stream_timeout=stream_timeout,
        capture_factory=capture_factory,
    )


class FrameSource:
    """Frames from one source, as an iterator of :class:`Frame` and a context manager.

    Live sources (camera, csi, url) are read by a background thread into a one-frame slot: the consumer always gets
    the newest frame and any it was too slow for count as dropped. When a live read fails, the source is reopened
    after a wait that starts at ``initial_reconnect_wait`` and doubles up to ``max_reconnect_wait`` (reset by the
    next good frame); iteration ends after ``max_reconnects`` failed reopenings, on a failed read when
    ``reconnect`` is off, or when the source is closed. Video files give every frame in order and end at the end of
    the file; with ``realtime`` they are read at the file's own frame rate like a live source, newest frame first.
    Folders give each readable image once, in natural name order (img2 before img10); images that cannot be decoded
    are skipped with a warning and counted as dropped. ``realtime`` has no effect on live sources and folders.

    Args:
        spec: The source.
        realtime: Pace a video file at its frame rate, dropping frames the consumer is too slow for.
        reconnect: Reopen a live source after a failed read.
        initial_reconnect_wait: Seconds before the first reopening.
        max_reconnect_wait: Longest wait between reopenings.
        max_reconnects: Reopenings in a row to try before giving up; None tries forever.
        stream_timeout: Seconds a url source may take to open, and to deliver each frame, before the attempt fails
            (and a live source reconnects); OpenCV's own default is 30 s.
        capture_factory: Makes the capture for a spec (default: ``cv2.VideoCapture``, a GStreamer pipeline for csi);
            ``stream_timeout`` applies to the default only.

    Raises:
        ValueError: When the source cannot be opened, a folder has no images, csi is asked of an OpenCV without
            GStreamer, or a reconnect setting is out of range.
        FileNotFoundError: When a video file or folder does not exist.
    """

    def __init__(
        self,
        spec: SourceSpec,
        *,
        realtime: bool = False,
        reconnect: bool = True,
        initial_reconnect_wait: float = 0.5,
        max_reconnect_wait: float = 8.0,
        max_reconnects: int | None = None,
        stream_timeout: float = STREAM_TIMEOUT,
        capture_factory: Callable[[SourceSpec], VideoCaptureLike] | None = None,
    ) -> None:
        if not math.isfinite(stream_timeout) or stream_timeout <= 0:
            raise ValueError(f"stream_timeout must be a positive number of seconds, got {stream_timeout}")
        if not (initial_reconnect_wait > 0 and max_reconnect_wait > 0):
            raise ValueError(
                "reconnect waits must be positive seconds, got "
                f"initial_reconnect_wait={initial_reconnect_wait}, max_reconnect_wait={max_reconnect_wait}"
            )
        if max_reconnects is not None and max_reconnects < 0:
            raise ValueError(f"max_reconnects must be None (forever) or >= 0, got {max_reconnects}")
        self.spec = spec
        self._reconnect = reconnect
        self._initial_wait = initial_reconnect_wait
        self._max_wait = max_reconnect_wait
        self._max_reconnects = max_reconnects
        self._factory = capture_factory or functools.partial(_default_capture, stream_timeout=stream_timeout)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._slot: Frame | None = None
        self._error: BaseException | None = None
        self._finished = self._closed = False
        self._read = self._delivered = self._dropped = self._reconnects = 0
        self._next_index = 0
        self._capture: VideoCaptureLike | None = None
        self._thread: threading.Thread | None = None
        self._images: list[Path] = []
        self._start = 0.0

        if spec.kind == "folder":
            self._images = _list_images(Path(str(spec.value)))
            self._fps: float | None = FOLDER_FPS
            return
        if spec.kind == "file" and not Path(str(spec.value)).is_file():
            raise FileNotFoundError(f"video file not found: {spec.value}")
        capture = self._factory(spec)
        if not capture.isOpened():
            capture.release()
            raise ValueError(_cannot_open(spec, stream_timeout))
        self._capture = capture
        self._fps = _reported_fps(capture)
        if realtime and spec.kind == "file" and self._fps is None:
            logger.warning("%s reports no frame rate; realtime pacing follows its timestamps only", spec.label)
        if spec.is_live or realtime:
            self._start = time.monotonic()
            self._thread = threading.Thread(target=self._run, name=f"edge_facenet-capture {spec.label}", daemon=True)
            self._thread.start()

    @property
    def is_live(self) -> bool:
        """True for camera, csi and url sources."""
        return self.spec.is_live

    @property
    def fps(self) -> float | None:
        """The source's frame rate when it reports one (1.0 for folders), else None."""
        return self._fps

    def stats(self) -> CaptureStats:
        """The counters so far."""
        with self._cond:
            return CaptureStats(self._read, self._delivered, self._dropped, self._reconnects, self._fps)

    def close(self) -> None:
        """Stop reading and release the capture; calling it again does nothing."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            if self._slot is not None:
                self._slot = None
                self._dropped += 1
            self._cond.notify_all()
        self._stop.set()
        if self._thread is not None:
            if self._thread is not threading.current_thread():
                self._thread.join(JOIN_TIMEOUT)
            if self._thread.is_alive():
                logger.warning("the reader of %s is stuck in a read; it exits when the read returns", self.spec.label)
        elif self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        if self._thread is not None:
            return self._next_from_slot()
        if self.spec.kind == "folder":
            return self._next_image()
        return self._next_file_frame()

    # Consumer side.

    def _next_from_slot(self) -> Frame:
        with self._cond:
            while self._slot is None and not self._finished and not self._closed:
                self._cond.wait()
            if self._closed or self._slot is None:
                if self._error is not None and not self._closed:
                    raise RuntimeError(f"reading {self.spec.label} failed: {self._error}") from self._error
                raise StopIteration
            frame, self._slot = self._slot, None
            self._delivered += 1
            return frame

    def _next_file_frame(self) -> Frame:
        if self._closed or self._finished or self._capture is None:
            raise StopIteration
        frame = self._read_file_frame(self._capture)
        if frame is None:
            self._finished = True
            raise StopIteration
        with self._cond:
            self._read += 1
            self._delivered += 1
        return frame

    def _next_image(self) -> Frame:
        while not self._closed and self._next_index < len(self._images):
            index, path = self._next_index, self._images[self._next_index]
            self._next_index += 1
            image = _decode_image(path)
            with self._cond:
                self._read += 1
                if image is None:
                    self._dropped += 1
                else:
                    self._delivered += 1
            if image is not None:
                return Frame(index, index / FOLDER_FPS, image)
            logger.warning("skipping %s: not a readable image", path)
        raise StopIteration

    # Reader thread.

    def _run(self) -> None:
        try:
            if self.spec.is_live:
                self._read_live()
            else:
                self._read_paced()
        except Exception as error:  # a backend failure must end the consumer's loop, not leave it waiting
            logger.debug("reader of %s failed", self.spec.label, exc_info=True)
            self._error = error
        finally:
            if self._capture is not None:
                self._capture.release()
                self._capture = None
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            self._read += 1
            if self._closed:
                self._dropped += 1
                return
            if self._slot is not None:
                self._dropped += 1
            self._slot = frame
            self._cond.notify_all()

    def _read_live(self) -> None:
        delays: Iterator[float] | None = None
        failed_reopenings = 0
        while not self._stop.is_set():
            ok, image = self._capture.read() if self._capture is not None else (False, None)
            if ok and image is not None:
                self._publish(Frame(self._next_index, time.monotonic() - self._start, image))
                self._next_index += 1
                if delays is not None:
                    logger.warning("%s is back after %d reconnects", self.spec.label, failed_reopenings)
                delays, failed_reopenings = None, 0
                continue
            if self._stop.is_set():
                return
            if not self._reconnect:
                logger.warning("%s stopped delivering frames (reconnect is off)", self.spec.label)
                return
            if self._max_reconnects is not None and failed_reopenings >= self._max_reconnects:
                logger.error("giving up on %s after %d reconnects", self.spec.label, failed_reopenings)
                return
            delays = delays or backoff_delays(self._initial_wait, self._max_wait)
            delay = next(delays)
            logger.warning("lost %s; reconnecting in %.3g s", self.spec.label, delay)
            if self._stop.wait(delay):
                return
            self._reopen()
            failed_reopenings += 1

    def _reopen(self) -> None:
        if self._capture is not None:
            self._capture.release()
        try:
            self._capture = self._factory(self.spec)
        except Exception as error:  # a failed reopening is retried like a failed read
            logger.warning("reopening %s failed: %s", self.spec.label, error)
            self._capture = None
        with self._cond:
            self._reconnects += 1

    def _read_paced(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set() and self._capture is not None:
            frame = self._read_file_frame(self._capture)
            if frame is None:
                return
            if self._stop.wait(max(0.0, start + frame.timestamp - time.monotonic())):
                return
            self._publish(frame)

    def _read_file_frame(self, capture: VideoCaptureLike) -> Frame | None:
        ok, image = capture.read()
        if not ok or image is None:
            return None
        index = self._next_index
        self._next_index += 1
        if self._fps is not None:
            timestamp = index / self._fps
        else:
            timestamp = max(capture.get(cv2.CAP_PROP_POS_MSEC), 0.0) / 1000.0
        return Frame(index, timestamp, image)


def _default_capture(spec: SourceSpec, stream_timeout: float = STREAM_TIMEOUT) -> VideoCaptureLike:
    if spec.kind == "csi":
        if not gstreamer_available():
            raise ValueError(CSI_NEEDS_GSTREAMER)
        return cv2.VideoCapture(csi_pipeline(int(spec.value)), cv2.CAP_GSTREAMER)
    if spec.kind == "url":
        milliseconds = max(1, round(stream_timeout * 1000))
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, milliseconds, cv2.CAP_PROP_READ_TIMEOUT_MSEC, milliseconds]
        return cv2.VideoCapture(spec.value, cv2.CAP_ANY, timeouts)
    return cv2.VideoCapture(spec.value)


def _cannot_open(spec: SourceSpec, stream_timeout: float = STREAM_TIMEOUT) -> str:
    if spec.kind == "camera":
        return f"cannot open camera {spec.value} (is it connected, and not in use by another program?)"
    if spec.kind == "csi":
        return f"cannot open csi camera {spec.value} (nvarguscamerasrc did not start; is nvargus-daemon running?)"
    if spec.kind == "url":
        return f"cannot open stream {spec.label} (no stream there, or none within {stream_timeout:g} s)"
    return f"cannot open video file {spec.value} (OpenCV: no backend could read it)"


def _reported_fps(capture: VideoCaptureLike) -> float | None:
    fps = float(capture.get(cv2.CAP_PROP_FPS))
    return fps if math.isfinite(fps) and fps > 0 else None


def _natural_key(path: Path) -> list[int | str]:
    parts = re.split(r"([0-9]+)", path.name)
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(parts)]


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    images = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not images:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    return images


def _decode_image(path: Path) -> np.ndarray | None:
    try:
        return read_image(path)
    except (OSError, ValueError):
        return None
