import dataclasses
import http.server
import threading

import pytest

from edge_facenet._files import sha256_file
from edge_facenet.resolve import YUNET_2023MAR, cache_dir, resolve_model_file


@pytest.fixture
def served(tmp_path):
    """A loopback HTTP server over a folder; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_explicit_path_wins_and_must_exist(detector_path, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_FACENET_DETECTOR", str(tmp_path / "elsewhere.onnx"))
    assert resolve_model_file(YUNET_2023MAR, detector_path) == detector_path
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        resolve_model_file(YUNET_2023MAR, tmp_path / "missing.onnx")


def test_environment_variable_comes_next(detector_path, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_FACENET_DETECTOR", str(detector_path))
    assert resolve_model_file(YUNET_2023MAR) == detector_path
    monkeypatch.setenv("EDGE_FACENET_DETECTOR", str(tmp_path / "gone.onnx"))
    with pytest.raises(FileNotFoundError, match=r"\$EDGE_FACENET_DETECTOR names .*gone.onnx"):
        resolve_model_file(YUNET_2023MAR)


def test_cache_then_verified_download(detector_path, served):
    root, base = served
    (root / YUNET_2023MAR.filename).write_bytes(detector_path.read_bytes())
    spec = dataclasses.replace(YUNET_2023MAR, url=f"{base}/{YUNET_2023MAR.filename}")

    downloaded = resolve_model_file(spec)
    assert downloaded == cache_dir() / "models" / spec.filename
    assert sha256_file(downloaded) == spec.sha256

    (root / YUNET_2023MAR.filename).unlink()  # the server no longer has it: the cached copy must serve
    assert resolve_model_file(spec) == downloaded


def test_download_with_the_wrong_hash_is_rejected_and_not_cached(served):
    root, base = served
    (root / "model.onnx").write_bytes(b"not the published model")
    spec = dataclasses.replace(YUNET_2023MAR, url=f"{base}/model.onnx")
    with pytest.raises(FileNotFoundError, match="sha256 of the downloaded file"):
        resolve_model_file(spec)
    assert not (cache_dir() / "models" / spec.filename).exists()
    assert list((cache_dir() / "models").iterdir()) == []


def test_offline_error_names_every_way_to_provide_the_file(served):
    _, base = served
    spec = dataclasses.replace(YUNET_2023MAR, url=f"{base}/absent.onnx")
    with pytest.raises(FileNotFoundError) as info:
        resolve_model_file(spec)
    message = str(info.value)
    assert "EDGE_FACENET_DETECTOR" in message and spec.filename in message and spec.url in message
    assert "download failed" in message and "\n" not in message
    with pytest.raises(FileNotFoundError, match="downloads are disabled"):
        resolve_model_file(spec, download=False)
