import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "nns2.onnx"
    result = subprocess.run(
        [sys.executable, "export/export_onnx.py", "--arch", "nns2", "--output", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return path


def test_compare_faces_prints_a_similarity_matrix_for_lfw_faces(random_model, lfw_dir):
    images = [lfw_dir / "images" / "Tony_Blair" / f"Tony_Blair_000{i}.jpg" for i in (1, 2, 3)]
    result = subprocess.run(
        [sys.executable, "samples/compare_faces.py", "--model", str(random_model), "--box", "65", "68", "120", "120"]
        + [str(path) for path in images],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "RANDOM weights" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("Tony_Blair_")]
    assert len(rows) == 3
    diagonal = [float(row.split()[1 + i]) for i, row in enumerate(rows)]
    assert diagonal == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)


def test_compare_faces_reports_an_unreadable_image(random_model, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    result = subprocess.run(
        [sys.executable, "samples/compare_faces.py", "--model", str(random_model), str(bad), str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: cannot read an image from {bad}"
