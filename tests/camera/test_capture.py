"""Frame sources: parsing, files in order, newest-frame live reading, reconnects, folders and shutdown."""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from itertools import islice, pairwise
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_facenet.camera import capture
from edge_facenet.camera.capture import (
    CaptureStats,
    SourceSpec,
    backoff_delays,
    csi_pipeline,
    gstreamer_available,
    open_source,
    parse_source,
)

FAST = {"initial_reconnect_wait": 0.001, "max_reconnect_wait": 0.004}


def _encode(number: int) -> np.ndarray:
    """A 64x48 frame whose eight 8-pixel columns spell ``number`` in binary (robust to lossy codecs)."""
    image = np.zeros((48, 64, 3), np.uint8)
    for bit in range(8):
        if number >> bit & 1:
            image[:, bit * 8 : bit * 8 + 8] = 255
    return image


def _decode(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(8) if image[:, bit * 8 + 2 : bit * 8 + 6].mean() > 127)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """30 numbered frames at 30 fps: mp4v in .mp4, or MJPG in .avi where this OpenCV cannot write mp4v."""
    folder = tmp_path_factory.mktemp("video")
    for fourcc, suffix in (("mp4v", ".mp4"), ("MJPG", ".avi")):
        path = folder / f"numbers{suffix}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30.0, (64, 48))
        if writer.isOpened():
            for number in range(30):
                writer.write(_encode(number))
            writer.release()
            return path
        writer.release()
    pytest.skip("this OpenCV can write neither mp4v .mp4 nor MJPG .avi")


class FakeStream:
    """A live camera for tests: every read takes ``period`` s; reads whose number is in ``failing`` fail."""

    def __init__(self, period: float = 0.001, failing: range = range(0), opened: bool = True) -> None:
        self.period, self.failing, self.opened = period, failing, opened
        self.reads = self.frames = self.opens = self.releases = 0

    def factory(self, spec: SourceSpec) -> FakeCapture:
        self.opens += 1
        return FakeCapture(self)


class FakeCapture:
    def __init__(self, stream: FakeStream) -> None:
        self.stream = stream

    def isOpened(self) -> bool:
        return self.stream.opened

    def read(self) -> tuple[bool, np.ndarray | None]:
        stream = self.stream
        time.sleep(stream.period)
        attempt, stream.reads = stream.reads, stream.reads + 1
        if attempt in stream.failing:
            return False, None
        stream.frames += 1
        return True, _encode((stream.frames - 1) % 256)

    def release(self) -> None:
        self.stream.releases += 1

    def get(self, prop_id: int) -> float:
        return 25.0 if prop_id == cv2.CAP_PROP_FPS else 0.0


def _capture_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("edge_facenet-capture")]


# 1. Parsing what the user typed.


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("0", "camera", 0),
        (" 12 ", "camera", 12),
        ("csi", "csi", 0),
        ("CSI:1", "csi", 1),
        ("rtsp://cam.local:8554/live", "url", "rtsp://cam.local:8554/live"),
        ("http://10.0.0.5/video.mjpg", "url", "http://10.0.0.5/video.mjpg"),
        ("https://example.org/a.m3u8", "url", "https://example.org/a.m3u8"),
        ("udp://@:5000", "url", "udp://@:5000"),
    ],
)
def test_parse_source_kinds(text, kind, value):
    spec = parse_source(text)
    assert (spec.kind, spec.value, spec.text) == (kind, value, text)
    assert spec.is_live


def test_parse_source_file_and_folder(tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    assert parse_source(str(video)) == SourceSpec("file", str(video), str(video))
    assert parse_source(str(tmp_path)).kind == "folder"
    assert not parse_source(str(tmp_path)).is_live
    with pytest.raises(FileNotFoundError, match=r"^video file not found: .*missing\.mp4$"):
        parse_source(str(tmp_path / "missing.mp4"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ftp://host/clip.mp4", "unsupported stream scheme 'ftp'"),
        ("rtsp://", "malformed stream URL"),
        ("rtsp://cam:port/live", "port is not a number"),
        ("rtsp:/cam/live", "malformed stream URL"),
        ("csi:a", "csi or csi:N"),
        ("csi:-1", "csi or csi:N"),
        ("  ", "source is empty"),
    ],
)
def test_parse_source_rejects_bad_text(text, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        parse_source(text)
    assert "\n" not in str(error.value)


def test_passwords_stay_out_of_messages():
    spec = parse_source("rtsp://admin:secret@cam.local/live")
    assert spec.label == "rtsp://admin:***@cam.local/live"
    with pytest.raises(ValueError, match=r"^cannot open stream rtsp://admin:\*\*\*@cam.local/live \("):
        open_source(spec, capture_factory=FakeStream(opened=False).factory)


# 2. Video files.


def test_video_file_gives_every_frame_in_order(video):
    with open_source(str(video)) as source:
        assert not source.is_live
        assert source.fps == pytest.approx(30.0)
        frames = list(source)
        assert list(source) == []
    assert [frame.index for frame in frames] == list(range(30))
    assert [_decode(frame.image) for frame in frames] == list(range(30))
    assert frames[6].timestamp == pytest.approx(0.2)
    assert frames[0].image.shape == (48, 64, 3) and frames[0].image.dtype == np.uint8
    reader = cv2.VideoCapture(str(video))
    in_file = int(reader.get(cv2.CAP_PROP_FRAME_COUNT))
    reader.release()
    assert source.stats() == CaptureStats(30, in_file, 0, 0, pytest.approx(30.0))


def test_realtime_file_drops_frames_for_a_slow_consumer(video):
    frames = []
    with open_source(str(video), realtime=True) as source:
        for frame in source:
            frames.append(frame)
            time.sleep(0.1)
    indices = [frame.index for frame in frames]
    assert indices == sorted(set(indices)) and indices[-1] == 29
    assert [_decode(frame.image) for frame in frames] == indices
    stats = source.stats()
    assert stats.frames_dropped > 10 and stats.frames_read == 30
    assert stats.frames_delivered == len(frames) == 30 - stats.frames_dropped


def test_unreadable_video_file_is_one_line(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video")
    with pytest.raises(ValueError, match=r"^cannot open video file .*junk\.mp4 \(OpenCV: no backend could read it\)$"):
        open_source(str(junk))


def test_closing_a_file_midway_stops_it(video):
    source = open_source(str(video))
    assert [next(source).index, next(source).index] == [0, 1]
    source.close()
    assert list(source) == []


# 3. Live sources keep only the newest frame.


def test_live_source_hands_out_the_newest_frame():
    stream = FakeStream(period=0.001)
    frames, lags = [], []
    with open_source(SourceSpec("camera", 0, "0"), capture_factory=stream.factory) as source:
        assert source.is_live and source.fps == 25.0
        for frame in source:
            lags.append(stream.frames - 1 - frame.index)
            frames.append(frame)
            if len(frames) == 12:
                break
            time.sleep(0.03)
    indices = [frame.index for frame in frames]
    assert all(later > earlier for earlier, later in pairwise(indices))
    assert max(later - earlier for earlier, later in pairwise(indices)) > 1
    assert [_decode(frame.image) for frame in frames] == [index % 256 for index in indices]
    assert all(later.timestamp > earlier.timestamp for earlier, later in pairwise(frames))
    # A queue would be about 25 frames further behind with every slow step; the slot never is.
    assert max(lags) <= 20
    stats = source.stats()
    assert stats.frames_delivered == 12 and stats.frames_dropped > 0
    assert stats.frames_read == stats.frames_delivered + stats.frames_dropped


# 4. Reconnecting.


def test_backoff_doubles_up_to_the_limit():
    assert list(islice(backoff_delays(0.5, 8.0), 7)) == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_live_source_reconnects_after_failed_reads(caplog):
    stream = FakeStream(failing=range(5, 8))
    spec = SourceSpec("url", "rtsp://cam.local/live", "rtsp://cam.local/live")
    logs = caplog.at_level(logging.WARNING, logger=capture.__name__)
    with logs, open_source(spec, capture_factory=stream.factory, **FAST) as source:
        for frame in source:
            if frame.index >= 8:
                break
    stats = source.stats()
    assert stats.reconnects == 3
    assert stream.opens == 4 and stream.releases == 4
    waits = re.findall(r"reconnecting in (\S+) s", caplog.text)
    assert waits == ["0.001", "0.002", "0.004"]
    assert "rtsp://cam.local/live is back after 3 reconnects" in caplog.text


def test_live_source_gives_up_after_max_reconnects(caplog):
    stream = FakeStream(failing=range(10**9))
    logs = caplog.at_level(logging.WARNING, logger=capture.__name__)
    spec = SourceSpec("camera", 1, "1")
    with logs, open_source(spec, capture_factory=stream.factory, max_reconnects=2, **FAST) as source:
        frames = list(source)
    assert frames == []
    assert source.stats().reconnects == 2 and stream.opens == 3
    assert "giving up on camera 1 after 2 reconnects" in caplog.text


def test_live_source_without_reconnect_ends_at_the_first_failure():
    stream = FakeStream(failing=range(3, 10**9))
    with open_source(SourceSpec("camera", 0, "0"), capture_factory=stream.factory, reconnect=False) as source:
        for _ in source:
            time.sleep(0.01)
    assert source.stats().reconnects == 0 and stream.opens == 1 and stream.releases == 1


def test_a_capture_that_raises_ends_the_loop_with_runtime_error():
    class Broken(FakeCapture):
        def read(self):
            raise cv2.error("backend fell over")

    source = open_source(SourceSpec("camera", 0, "0"), capture_factory=lambda spec: Broken(FakeStream()))
    with source, pytest.raises(RuntimeError, match="reading camera 0 failed: backend fell over"):
        next(source)


def test_sources_that_cannot_be_opened_are_one_line_errors():
    stream = FakeStream(opened=False)
    with pytest.raises(ValueError, match=r"^cannot open camera 3"):
        open_source("3", capture_factory=stream.factory)
    with pytest.raises(
        ValueError, match=r"^cannot open stream rtsp://cam.local/live \(no stream there, or none within 10 s\)$"
    ):
        open_source("rtsp://cam.local/live", capture_factory=stream.factory)
    assert stream.releases == 2


def test_a_stream_server_that_never_answers_fails_within_the_timeout():
    # A server that accepts the connection and then says nothing: OpenCV alone would wait 30 s.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    accepted = []

    def accept():
        with contextlib.suppress(OSError):  # the socket closes at the end of the test
            while True:
                accepted.append(server.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    url = f"rtsp://127.0.0.1:{server.getsockname()[1]}/live"
    start = time.monotonic()
    with pytest.raises(
        ValueError, match=rf"^cannot open stream {re.escape(url)} \(no stream there, or none within 1 s\)$"
    ):
        open_source(url, stream_timeout=1.0)
    assert time.monotonic() - start < 8.0 and accepted
    server.close()
    for connection in accepted:
        connection.close()


def test_the_stream_timeout_must_be_positive():
    with pytest.raises(ValueError, match="stream_timeout must be a positive number of seconds, got 0"):
        open_source("rtsp://cam.local/live", stream_timeout=0, capture_factory=FakeStream().factory)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"initial_reconnect_wait": 0}, "reconnect waits must be positive"),
        ({"max_reconnect_wait": -1.0}, "reconnect waits must be positive"),
        ({"max_reconnects": -1}, "max_reconnects must be None"),
    ],
)
def test_bad_reconnect_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        open_source(SourceSpec("camera", 0, "0"), capture_factory=FakeStream().factory, **settings)


# 5. Folders of images.


def test_folder_skips_unreadable_images(tmp_path, caplog):
    for number in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img{number}.png"), _encode(number))
    (tmp_path / "img5.JPG").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    with caplog.at_level(logging.WARNING, logger=capture.__name__), open_source(str(tmp_path)) as source:
        frames = list(source)
    assert [frame.index for frame in frames] == [0, 1, 3]
    assert [_decode(frame.image) for frame in frames] == [1, 2, 10]
    assert [frame.timestamp for frame in frames] == [0.0, 1.0, 3.0]
    assert source.fps == 1.0
    assert source.stats() == CaptureStats(4, 3, 1, 0, 1.0)
    assert "img5.JPG" in caplog.text


def test_folder_without_images_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"^no images \(.*\) in folder "):
        open_source(str(tmp_path))
    (tmp_path / "readme.txt").write_text("no pictures here")
    with pytest.raises(ValueError, match="no images"):
        open_source(str(tmp_path))


# 6. Jetson CSI cameras.


def test_csi_without_gstreamer_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(capture, "gstreamer_available", lambda: False)
    with pytest.raises(ValueError) as error:
        open_source("csi:1")
    assert str(error.value) == (
        "csi cameras need OpenCV built with GStreamer (JetPack's OpenCV has it; opencv-python wheels do not)"
    )


def test_csi_pipeline_reads_the_sensor_into_bgr():
    pipeline = csi_pipeline(1, 640, 480, 15)
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), ")
    assert "width=(int)640, height=(int)480" in pipeline and "framerate=(fraction)15/1" in pipeline
    assert "nvvidconv flip-method=0 ! video/x-raw, format=(string)BGRx ! videoconvert" in pipeline
    assert pipeline.endswith("video/x-raw, format=(string)BGR ! appsink drop=1 max-buffers=1")
    with pytest.raises(ValueError, match="sensor_id=-1"):
        csi_pipeline(-1)


def test_gstreamer_available_reads_the_build_information(monkeypatch):
    assert isinstance(gstreamer_available(), bool)
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "Video I/O:\n    GStreamer:           YES (1.20.3)\n")
    assert gstreamer_available()
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "Video I/O:\n    GStreamer:           NO\n")
    assert not gstreamer_available()


# 7. Shutdown.


def test_close_twice_joins_the_reader_thread():
    stream = FakeStream()
    source = open_source(SourceSpec("camera", 0, "0"), capture_factory=stream.factory)
    assert len(_capture_threads()) == 1
    next(source)
    source.close()
    source.close()
    assert _capture_threads() == []
    assert list(source) == []
    assert stream.releases == 1
    stats = source.stats()
    assert stats.frames_read == stats.frames_delivered + stats.frames_dropped


def test_close_from_another_thread_wakes_a_waiting_consumer():
    stream = FakeStream(failing=range(10**9))
    slow = {"initial_reconnect_wait": 30.0, "max_reconnect_wait": 30.0}
    source = open_source(SourceSpec("camera", 0, "0"), capture_factory=stream.factory, **slow)
    timer = threading.Timer(0.1, source.close)
    timer.start()
    started = time.monotonic()
    assert list(source) == []
    timer.join()
    assert time.monotonic() - started < 2.0
    assert _capture_threads() == []
