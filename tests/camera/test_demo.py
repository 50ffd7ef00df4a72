"""The demo material: pinned photos from a local LFW copy, the cache, or a fetch (here from a loopback server)."""

import functools
import http.server
import shutil
import threading

import pytest

from edge_facenet.camera import demo


@pytest.fixture
def lfw_server(lfw_dir, tmp_path, monkeypatch):
    """A loopback HTTP server holding the demo's photos, standing in for the public LFW repository."""
    root = tmp_path / "served"
    for key in demo.PHOTOS:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lfw_dir / "images" / key, root / key)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *args: None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(demo, "LFW_REPOSITORY", f"http://127.0.0.1:{server.server_address[1]}")
    monkeypatch.delenv(demo.LFW_ENV_VAR, raising=False)
    yield root
    server.shutdown()
    thread.join(timeout=5)


def test_photos_come_from_a_local_copy_checked_by_sha256(lfw_dir, tmp_path):
    photos = demo.demo_photos(lfw_dir)
    assert set(photos) == set(demo.PHOTOS) and all(path.is_relative_to(lfw_dir) for path in photos.values())
    fake = tmp_path / "lfw"
    for key in demo.PHOTOS:
        (fake / "images" / key).parent.mkdir(parents=True, exist_ok=True)
        (fake / "images" / key).write_bytes(b"not the photo")
    with pytest.raises(ValueError, match="sha256 differs"):
        demo.demo_photos(fake)


def test_photos_are_fetched_verified_and_cached(lfw_server, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not cached"):
        demo.demo_photos(download=False)
    photos = demo.demo_photos()
    assert all(demo.sha256_file(path) == demo.PHOTOS[key] for key, path in photos.items())
    shutil.rmtree(lfw_server)  # the server is gone: the cache serves
    assert demo.demo_photos(download=False) == photos


def test_a_fetched_file_with_the_wrong_hash_is_refused(lfw_server):
    key = next(iter(demo.PHOTOS))
    (lfw_server / key).write_bytes(b"tampered")
    with pytest.raises(ValueError, match="pinned sha256"):
        demo.demo_photos()
    assert not (demo.cache_dir() / "demo" / "lfw" / key).exists()


def test_the_demo_cli_writes_the_gallery_folder_and_the_video(lfw_dir, tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--lfw-dir", str(lfw_dir)]) == 0
    assert sorted(p.name for p in (tmp_path / "people").iterdir()) == sorted(demo.GALLERY_PEOPLE)
    assert (tmp_path / "demo.mp4").stat().st_size > 100_000
    assert "180 frames" in capsys.readouterr().out
    assert demo.main(["--out", str(tmp_path), "--lfw-dir", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
