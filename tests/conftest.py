"""Shared test fixtures. Data from ../shared is read in place; set EDGE_FACENET_SHARED to use another copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared data folder: $EDGE_FACENET_SHARED, else ../shared beside the repository."""
    return Path(os.environ.get("EDGE_FACENET_SHARED", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def lfw_dir() -> Path:
    path = shared_dir() / "data" / "lfw"
    if not (path / "images").is_dir():
        pytest.skip(f"LFW not found at {path} (set EDGE_FACENET_SHARED)")
    return path


@pytest.fixture(scope="session")
def detector_path() -> Path:
    path = shared_dir() / "models" / "face_detection_yunet_2023mar.onnx"
    if not path.is_file():
        pytest.skip(f"YuNet not found at {path} (set EDGE_FACENET_SHARED)")
    return path


@pytest.fixture(scope="session")
def openface_path() -> Path:
    path = shared_dir() / "models" / "openface_nn4_small2_v1_partial.npz"
    if not path.is_file():
        pytest.skip(f"OpenFace weights not found at {path} (set EDGE_FACENET_SHARED)")
    return path


@pytest.fixture(scope="session")
def random_model_path(tmp_path_factory) -> Path:
    """An nn4_small2 ONNX with random weights: it exercises the plumbing but recognises no one."""
    pytest.importorskip("torch")
    import torch

    from edge_facenet.training import build_model
    from edge_facenet.training.export import export_onnx, metadata_for

    torch.manual_seed(0)
    model = build_model("nn4_small2")
    path = tmp_path_factory.mktemp("models") / "nn4_small2_random.onnx"
    export_onnx(model, path, metadata_for(model, "nn4_small2"))
    return path


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    # Keep tests away from the user's cache and from model paths set in the environment.
    monkeypatch.setenv("EDGE_FACENET_HOME", str(tmp_path / "edge_facenet_home"))
    monkeypatch.delenv("EDGE_FACENET_DETECTOR", raising=False)
    monkeypatch.delenv("EDGE_FACENET_MODEL", raising=False)


_FIGURES: list[str] = []


@pytest.fixture
def figure():
    """Report a measured figure: listed at the end of the test run (shown in CI too, unlike captured prints)."""
    return lambda text: _FIGURES.append(" ".join(str(text).split()))


def pytest_terminal_summary(terminalreporter):
    if _FIGURES:
        terminalreporter.section("figures measured by the tests")
        for line in _FIGURES:
            terminalreporter.write_line(line)
