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
