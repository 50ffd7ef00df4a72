"""Bad model files: missing, truncated, not ONNX, not ours, with bad metadata, or a corrupt cached detector.

Each is refused with one line that names the file, by the library and by the camera app; nothing here uses the
network (the download is replaced by one that fails or serves chosen bytes).
"""

from __future__ import annotations

import copy
import io
import logging
import re
from pathlib import Path

import pytest

from edge_facenet import FaceDetector, Recognizer
from edge_facenet import resolve as resolve_module
from edge_facenet._files import sha256_file
from edge_facenet.camera.app import main as camera_main
from edge_facenet.resolve import YUNET_2023MAR, cache_dir, resolve_model_file


def write_half(source: Path, destination: Path) -> Path:
    data = source.read_bytes()
    destination.write_bytes(data[: len(data) // 2])
    return destination


@pytest.fixture
def broken(random_model_path, detector_path, tmp_path) -> dict[str, Path]:
    """Broken or foreign model files, by what is wrong with them."""
    files = {
        "missing": tmp_path / "missing.onnx",
        "truncated embedder": write_half(random_model_path, tmp_path / "embedder_half.onnx"),
        "truncated detector": write_half(detector_path, tmp_path / "yunet_half.onnx"),
        "text": tmp_path / "notes.onnx",
        "empty": tmp_path / "empty.onnx",
        "folder": tmp_path / "models.onnx",
    }
    files["text"].write_text("a model would be here\n")
    files["empty"].write_bytes(b"")
    files["folder"].mkdir()
    return files


EMBEDDER_CASES = [
    ("missing", FileNotFoundError, "embedder model not found: {path}"),
    ("folder", FileNotFoundError, "embedder model not found: {path}"),
    ("truncated embedder", ValueError, "ONNX Runtime cannot load {path}: .*Protobuf parsing failed"),
    ("text", ValueError, "ONNX Runtime cannot load {path}: .*Protobuf parsing failed"),
    ("empty", ValueError, "ONNX Runtime cannot load {path}: "),
    ("detector", ValueError, "{path} lacks edge_facenet metadata .*export it with export/export_onnx.py"),
]


@pytest.mark.parametrize(("case", "error", "fragment"), EMBEDDER_CASES, ids=[case[0] for case in EMBEDDER_CASES])
def test_a_bad_embedder_file_is_refused_in_one_line(broken, detector_path, case, error, fragment):
    path = detector_path if case == "detector" else broken[case]
    with pytest.raises(error, match=fragment.format(path=re.escape(str(path)))) as raised:
        Recognizer(model=path, detector=detector_path)
    assert "\n" not in str(raised.value)


def test_a_missing_embedder_named_by_the_environment_is_refused(detector_path, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_FACENET_MODEL", str(tmp_path / "gone.onnx"))
    with pytest.raises(FileNotFoundError, match=r"\$EDGE_FACENET_MODEL names .*gone.onnx, which does not exist"):
        Recognizer(detector=detector_path)


@pytest.fixture(scope="module")
def model_proto(random_model_path):
    onnx = pytest.importorskip("onnx")
    return onnx.load(str(random_model_path))


METADATA_CASES = [
    ("input_size", "[96]", r"input_size '\[96\]' cannot be read \(input_size must be a JSON list of two integers"),
    (
        "input_size",
        "[64, 64]",
        r"metadata says input_size \[64, 64\] .* but the model's input is \['batch', 3, 96, 96\]",
    ),
    ("embedding_size", "abc", "invalid edge_facenet metadata: embedding_size 'abc' cannot be read"),
    ("embedding_size", "64", r"metadata says embedding_size 64, but the model's output is \['batch', 128\]"),
    ("channel_order", "XYZ", "channel_order must be one of"),
    ("mean", "not json", "invalid edge_facenet metadata: mean 'not json' cannot be read"),
    ("std", "[0, 1, 1]", "std values must be positive"),
    ("alignment_template", "nope", "unknown alignment template 'nope'"),
    ("metadata_version", "2", "has metadata_version '2'; this edge_facenet reads version 1"),
    ("precision", "fp64", "precision must be one of"),
    ("threshold", "1.5", r"threshold must be a cosine similarity in \[-1, 1\], got 1.5"),
    ("threshold", "nan", "threshold must be a cosine similarity"),
    ("threshold", "high", "threshold 'high' cannot be read"),
    ("checkpoint_sha256", "abc", "checkpoint_sha256 must be 64 lowercase hex digits"),
]


@pytest.mark.parametrize(
    ("key", "value", "fragment"), METADATA_CASES, ids=[f"{key}={value}" for key, value, _ in METADATA_CASES]
)
def test_a_bad_metadata_value_is_refused_with_the_key(model_proto, detector_path, tmp_path, key, value, fragment):
    edited = copy.deepcopy(model_proto)
    props = {prop.key: prop for prop in edited.metadata_props}
    if key not in props:
        props[key] = edited.metadata_props.add(key=key)
    props[key].value = value
    path = tmp_path / f"bad_{key}.onnx"
    path.write_bytes(edited.SerializeToString())
    with pytest.raises(ValueError, match=fragment) as raised:
        Recognizer(model=path, detector=detector_path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


DETECTOR_CASES = [
    ("missing", FileNotFoundError, "YuNet face detector .*: file not found: {path}"),
    ("folder", FileNotFoundError, "YuNet face detector .*: file not found: {path}"),
    ("truncated detector", ValueError, "{path} is not the YuNet ONNX model: truncated protobuf"),
    ("text", ValueError, "{path} is not the YuNet ONNX model: "),
    ("empty", ValueError, "{path} is not the YuNet ONNX model: the model has no graph input or output named"),
    ("embedder", ValueError, "{path} is not the YuNet ONNX model: the model has no graph input or output named"),
]


@pytest.mark.parametrize("backend", ["onnxruntime", "opencv"])
@pytest.mark.parametrize(("case", "error", "fragment"), DETECTOR_CASES, ids=[case[0] for case in DETECTOR_CASES])
def test_a_bad_detector_file_is_refused_in_one_line(broken, random_model_path, backend, case, error, fragment):
    path = random_model_path if case == "embedder" else broken[case]
    with pytest.raises(error, match=fragment.format(path=re.escape(str(path)))) as raised:
        FaceDetector(path, backend=backend)
    assert "\n" not in str(raised.value)


@pytest.fixture
def cached_garbage() -> Path:
    """A YuNet file in the cache whose bytes are not the published ones."""
    cached = cache_dir() / "models" / YUNET_2023MAR.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\x08\x07garbage, not the detector")
    return cached


def serve(monkeypatch, content: bytes | None) -> list[str]:
    """Replace the download: None fails as an unreachable network does, bytes are served as the response."""
    requested = []

    def urlopen(url, timeout=None):
        requested.append(url)
        if content is None:
            raise OSError("network is unreachable")
        return io.BytesIO(content)

    monkeypatch.setattr(resolve_module.urllib.request, "urlopen", urlopen)
    return requested


def test_a_corrupt_cached_detector_is_not_used_and_offline_the_error_names_every_way(
    cached_garbage, monkeypatch, caplog
):
    requested = serve(monkeypatch, None)
    with caplog.at_level(logging.WARNING), pytest.raises(FileNotFoundError) as raised:
        FaceDetector()
    message = str(raised.value)
    assert "\n" not in message
    assert "YuNet face detector (2023mar, MIT licence, OpenCV Zoo) not found" in message
    assert "download failed: network is unreachable" in message
    for way in (
        "Pass its path explicitly",
        "set $EDGE_FACENET_DETECTOR",
        str(cached_garbage.parent),
        YUNET_2023MAR.url,
    ):
        assert way in message
    assert requested == [YUNET_2023MAR.url]
    assert f"{cached_garbage} in the cache has the wrong sha256; fetching it again" in caplog.text
    assert cached_garbage.read_bytes() == b"\x08\x07garbage, not the detector"


def test_with_no_detector_anywhere_offline_the_error_names_every_way_and_the_cache_stays_empty(monkeypatch):
    serve(monkeypatch, None)
    with pytest.raises(
        FileNotFoundError, match=r"\(download failed: network is unreachable\)\. Pass its path explicitly"
    ):
        FaceDetector()
    models = cache_dir() / "models"
    assert not models.exists() or list(models.iterdir()) == []


def test_a_corrupt_cached_detector_is_fetched_again(cached_garbage, detector_path, monkeypatch):
    serve(monkeypatch, detector_path.read_bytes())
    assert resolve_model_file(YUNET_2023MAR) == cached_garbage
    assert sha256_file(cached_garbage) == YUNET_2023MAR.sha256
    assert FaceDetector().model_path == cached_garbage
    assert sorted(path.name for path in cached_garbage.parent.iterdir()) == [YUNET_2023MAR.filename]


def test_a_download_with_the_wrong_bytes_is_refused_and_leaves_the_cache_as_it_was(
    cached_garbage, detector_path, monkeypatch
):
    published = detector_path.read_bytes()
    serve(monkeypatch, published[: len(published) // 2])
    with pytest.raises(
        FileNotFoundError, match=r"download failed: sha256 of the downloaded file is [0-9a-f]{64}, expected"
    ):
        FaceDetector()
    assert cached_garbage.read_bytes() == b"\x08\x07garbage, not the detector"
    assert sorted(path.name for path in cached_garbage.parent.iterdir()) == [YUNET_2023MAR.filename]


def test_a_missing_detector_named_by_the_environment_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_FACENET_DETECTOR", str(tmp_path / "gone.onnx"))
    serve(monkeypatch, None)
    with pytest.raises(FileNotFoundError, match=r"\$EDGE_FACENET_DETECTOR names .*gone.onnx, which does not exist"):
        FaceDetector()


@pytest.mark.parametrize("option", ["--model", "--detector"])
@pytest.mark.parametrize("case", ["missing", "truncated embedder", "truncated detector", "text"])
def test_camera_app_refuses_a_bad_model_file_in_one_line(broken, lfw_dir, tmp_path, capsys, option, case):
    people = tmp_path / "people" / "Tony_Blair"
    people.mkdir(parents=True)
    (people / "1.jpg").write_bytes((lfw_dir / "images" / "Tony_Blair" / "Tony_Blair_0001.jpg").read_bytes())
    arguments = ["--gallery", str(people.parent), "--source", str(people), option, str(broken[case]), "--no-display"]
    assert camera_main(arguments) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(broken[case]) in lines[0]
    assert not (people.parent / "gallery.sqlite3").exists()
