"""python -m edge_facenet.manage: a gallery file shown, people removed (gone from the bytes) and renamed."""

import json
import subprocess
import sys

import numpy as np
import pytest

from edge_facenet.gallery import Gallery
from edge_facenet.manage import main

FINGERPRINT = "ab" * 32
D = 16


VECTORS = np.random.default_rng(0).standard_normal((502, D))


@pytest.fixture
def gallery_file(tmp_path):
    path = tmp_path / "people" / "gallery.sqlite3"
    with Gallery(path, FINGERPRINT, D) as gallery:
        gallery.add_many([f"p{i:03d}" for i in range(500)] + ["Ada", "Ada"], VECTORS)
    return path


def test_info_and_list_say_what_the_file_holds(gallery_file, capsys):
    assert main([str(gallery_file), "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["fingerprint"] == FINGERPRINT and info["embedding_size"] == D and info["mode"] == "0o600"
    assert (info["people"], info["embeddings"], info["stored_dtype"]) == (501, 502, "float32")
    assert main([str(gallery_file), "list", "--json"]) == 0
    people = json.loads(capsys.readouterr().out)
    assert len(people) == 501 and people["Ada"] == 2 and people["p007"] == 1
    assert main([str(gallery_file), "list"]) == 0
    assert "Ada\t2" in capsys.readouterr().out.splitlines()


def test_remove_deletes_the_embeddings_from_the_bytes_and_shrinks_the_file(gallery_file, capsys):
    ada = VECTORS[500:] / np.linalg.norm(VECTORS[500:], axis=1, keepdims=True)
    blobs = [row.astype("<f4").tobytes() for row in ada]  # as the gallery stores them
    names = [f"p{i:03d}" for i in range(100, 400)]
    assert all(blob in gallery_file.read_bytes() for blob in blobs)
    size = gallery_file.stat().st_size

    assert main([str(gallery_file), "remove", "Ada", *names]) == 0
    out = capsys.readouterr().out
    assert "removed 'Ada' (2 embeddings)" in out and "removed 'p100' (1 embedding)" in out
    assert "bytes smaller" in out and gallery_file.stat().st_size < size * 0.7
    content = gallery_file.read_bytes()
    assert not any(blob in content for blob in blobs)
    with Gallery(gallery_file, FINGERPRINT, D) as gallery:
        assert len(gallery) == 200 and "Ada" not in gallery


def test_bad_requests_are_one_line_and_change_nothing(gallery_file, tmp_path, capsys):
    assert main([str(gallery_file), "remove", "Ada", "Bob"]) == 1
    assert capsys.readouterr().err == "error: not in the gallery: 'Bob'; nothing removed\n"
    assert main([str(gallery_file), "rename", "p001", "p002"]) == 1
    assert "an identity named 'p002' already exists" in capsys.readouterr().err
    assert main([str(tmp_path / "absent.sqlite3"), "list"]) == 1
    assert capsys.readouterr().err.startswith("error: gallery file not found")
    assert not (tmp_path / "absent.sqlite3").exists()  # not created by looking at it
    (tmp_path / "notes.sqlite3").write_text("meeting notes")
    assert main([str(tmp_path / "notes.sqlite3"), "info"]) == 1
    assert "is not an edge_facenet gallery" in capsys.readouterr().err
    with Gallery(gallery_file, FINGERPRINT, D) as gallery:
        assert len(gallery) == 501 and "Ada" in gallery


def test_rename_and_the_module_entry_point(gallery_file):
    done = subprocess.run(
        [sys.executable, "-m", "edge_facenet.manage", str(gallery_file), "rename", "Ada", "Ada Lovelace"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == "renamed 'Ada' to 'Ada Lovelace'\n"
    with Gallery(gallery_file, FINGERPRINT, D) as gallery:
        assert "Ada Lovelace" in gallery and "Ada" not in gallery
