"""The samples run as a user would run them (with a random model: they show the plumbing, not recognition)."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def run_sample(*args):
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


def test_compare_faces_prints_a_similarity_matrix_for_lfw_faces(random_model_path, detector_path, lfw_dir):
    images = [lfw_dir / "images" / "Tony_Blair" / f"Tony_Blair_000{i}.jpg" for i in (1, 2, 3)]
    result = run_sample("samples/compare_faces.py", "--model", random_model_path, "--detector", detector_path, *images)
    assert result.returncode == 0, result.stderr
    assert "RANDOM weights" in result.stdout and "embedded 3 faces" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("Tony_Blair_")]
    assert len(rows) == 3
    diagonal = [float(row.split()[1 + i]) for i, row in enumerate(rows)]
    assert diagonal == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)


def test_compare_faces_reports_an_unreadable_image(random_model_path, detector_path, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    result = run_sample("samples/compare_faces.py", "--model", random_model_path, "--detector", detector_path, bad, bad)
    assert result.returncode == 1
    assert result.stderr.strip().endswith(f"error: cannot read an image from {bad}")


def test_identify_photos_enrols_a_folder_and_names_the_same_photos(random_model_path, detector_path, lfw_dir, tmp_path):
    people = tmp_path / "people"
    for name in ("Tony_Blair", "Colin_Powell"):
        (people / name).mkdir(parents=True)
        shutil.copy(lfw_dir / "images" / name / f"{name}_0001.jpg", people / name)
    photo = lfw_dir / "images" / "Colin_Powell" / "Colin_Powell_0001.jpg"
    args = ["--model", random_model_path, "--detector", detector_path, "--people", people, "--threshold", "0.9999"]
    result = run_sample("samples/identify_photos.py", *args, photo)
    assert result.returncode == 0, result.stderr
    assert "gallery: 2 people, 2 images (2 added" in result.stdout
    assert "Colin_Powell_0001.jpg: Colin_Powell (1.000)" in result.stdout
    again = run_sample("samples/identify_photos.py", *args, photo)
    assert "(0 added, 2 unchanged, 0 not enrolled)" in again.stdout
