"""What a ``--source`` names: a camera index, a Jetson CSI sensor, a stream URL, a video file or an image folder.

:func:`parse_source` reads the argument into a :class:`SourceSpec`; :mod:`edge_facenet.camera.capture` opens it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import cv2

KINDS = ("camera", "file", "url", "csi", "folder")
LIVE_KINDS = ("camera", "url", "csi")
STREAM_SCHEMES = ("http", "https", "rtmp", "rtsp", "rtsps", "srt", "tcp", "udp")
CSI_NEEDS_GSTREAMER = (
    "csi cameras need OpenCV built with GStreamer (JetPack's OpenCV has it; opencv-python wheels do not)"
)


@dataclass(frozen=True)
class SourceSpec:
    """Where frames come from.

    Attributes:
        kind: ``"camera"`` (a V4L2/USB camera index), ``"csi"`` (a Jetson CSI sensor), ``"url"`` (a network stream),
            ``"file"`` (a video file) or ``"folder"`` (a folder of images).
        value: The camera index or CSI sensor id (int), or the URL, file or folder path (str).
        text: What the user typed, for messages.
    """

    kind: str
    value: int | str
    text: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"source kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    @property
    def is_live(self) -> bool:
        """True for sources that run on their own clock (camera, csi, url)."""
        return self.kind in LIVE_KINDS

    @property
    def label(self) -> str:
        """A name for messages and logs, with any password in a URL hidden."""
        if self.kind == "url":
            return _redact(str(self.value))
        if self.kind in ("camera", "csi"):
            return f"{self.kind} {self.value}"
        return str(self.value)


def parse_source(text: str) -> SourceSpec:
    """Read a ``--source`` argument.

    ``"0"``, ``"1"``: a camera index (digits always mean a camera; write ``./0`` for a file named 0);
    ``"csi"``, ``"csi:1"``: a Jetson CSI sensor; ``scheme://...``: a network stream; an existing folder: its images;
    anything else: a video file.

    Raises:
        ValueError: For an empty text, a bad csi sensor id, or a URL that is malformed or has an unsupported scheme.
        FileNotFoundError: When the video file does not exist.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("source is empty; expected a camera index (0), csi or csi:N, a stream URL, a file or a folder")
    if re.fullmatch(r"[0-9]+", stripped):
        return SourceSpec("camera", int(stripped), text)
    lowered = stripped.lower()
    if lowered == "csi":
        return SourceSpec("csi", 0, text)
    if lowered.startswith("csi:"):
        if not re.fullmatch(r"[0-9]+", stripped[4:]):
            raise ValueError(f"a csi source is csi or csi:N with a sensor id N >= 0, got {stripped!r}")
        return SourceSpec("csi", int(stripped[4:]), text)
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", stripped):
        return SourceSpec("url", _check_url(stripped), text)
    path = Path(stripped).expanduser()
    if path.is_dir():
        return SourceSpec("folder", str(path), text)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {stripped}")
    return SourceSpec("file", str(path), text)


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30, flip_method: int = 0) -> str:
    """The GStreamer pipeline that brings a Jetson CSI camera into OpenCV as BGR frames.

    nvarguscamerasrc delivers NV12 in NVMM (ISP/GPU) memory; nvvidconv copies it to system memory as BGRx,
    videoconvert drops the padding byte, and appsink keeps only the newest buffer (``drop=1 max-buffers=1``) so a
    slow reader never gets stale frames. Open it with ``cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)``.

    Args:
        sensor_id: The CSI port of the sensor.
        width: Capture width; with height and fps, one of the sensor's modes (nvarguscamerasrc logs them).
        height: Capture height.
        fps: Capture frame rate.
        flip_method: nvvidconv's rotation: 0 none, 1 90° counter-clockwise, 2 180°, 3 90° clockwise, 4-7 flips.

    Raises:
        ValueError: For a negative sensor id or flip method, or a size or rate that is not positive.
    """
    if sensor_id < 0 or width <= 0 or height <= 0 or fps <= 0 or not 0 <= flip_method <= 7:
        raise ValueError(
            "csi_pipeline needs sensor_id >= 0, width, height, fps > 0 and flip_method 0..7, got "
            f"sensor_id={sensor_id}, width={width}, height={height}, fps={fps}, flip_method={flip_method}"
        )
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, format=(string)NV12, "
        f"framerate=(fraction){fps}/1 ! "
        f"nvvidconv flip-method={flip_method} ! video/x-raw, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=1 max-buffers=1"
    )


def gstreamer_available() -> bool:
    """True when this OpenCV has the GStreamer video backend, which csi sources need."""
    return opencv_video_backend("GStreamer")


def opencv_video_backend(name: str) -> bool:
    """Whether this OpenCV was built with a video I/O backend, by the name its build information gives it.

    Args:
        name: As OpenCV lists it under "Video I/O", e.g. ``"FFMPEG"`` or ``"GStreamer"``.
    """
    return re.search(rf"^\s*{re.escape(name)}:\s*YES", cv2.getBuildInformation(), re.MULTILINE) is not None


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "://" not in url:
        raise ValueError(f"malformed stream URL {_redact(url)}: expected scheme://host[:port]/path")
    if scheme not in STREAM_SCHEMES:
        expected = ", ".join(STREAM_SCHEMES)
        raise ValueError(f"unsupported stream scheme {scheme!r} in {_redact(url)}; expected one of {expected}")
    try:
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise ValueError(f"malformed stream URL {_redact(url)}: the port is not a number") from None
    if not host and scheme != "udp":
        raise ValueError(f"malformed stream URL {_redact(url)}: expected {scheme}://host[:port]/path")
    return url


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()
