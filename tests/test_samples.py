"""The samples run as a user would run them (with a random model: they show the plumbing, not recognition)."""

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edge_facenet import FaceDetector
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


def test_identify_photos_refuses_a_missing_people_folder_without_creating_it(tmp_path, lfw_dir):
    people = tmp_path / "peopel"
    photo = lfw_dir / "images" / "Colin_Powell" / "Colin_Powell_0001.jpg"
    result = run_sample("samples/identify_photos.py", "--people", people, photo)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: people folder not found: {people}"
    assert not people.exists()


def make_people(lfw_dir, people):
    """people/<name>/ with two LFW photos each of Colin Powell and Tony Blair."""
    for name in ("Colin_Powell", "Tony_Blair"):
        (people / name).mkdir(parents=True)
        for i in (1, 2):
            shutil.copy(lfw_dir / "images" / name / f"{name}_000{i}.jpg", people / name)
    return people


def test_enroll_folder_reports_added_unchanged_and_skipped_files(random_model_path, detector_path, lfw_dir, tmp_path):
    people = make_people(lfw_dir, tmp_path / "people")
    (people / "Tony_Blair" / "notes.txt").write_text("not a photo")
    gallery = tmp_path / "galleries" / "staff.sqlite3"
    args = ["--model", random_model_path, "--detector", detector_path, "--gallery", gallery, people]
    result = run_sample("samples/enroll_folder.py", *args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"enrolled {people}: 4 images added, 0 unchanged, 0 removed, 1 skipped",
        f"  skipped {Path('Tony_Blair', 'notes.txt')}: not an image file (expected .bmp, .jpeg, .jpg, .png, .webp)",
        f"gallery {gallery}: 2 people, 4 images",
        "  Colin_Powell: 2 images",
        "  Tony_Blair: 2 images",
    ]
    again = run_sample("samples/enroll_folder.py", *args)
    assert f"enrolled {people}: 0 images added, 4 unchanged, 0 removed, 1 skipped" in again.stdout


def test_annotate_image_saves_the_photo_with_a_green_box_on_a_named_face(
    random_model_path, detector_path, lfw_dir, tmp_path
):
    people = make_people(lfw_dir, tmp_path / "people")
    photo = people / "Colin_Powell" / "Colin_Powell_0001.jpg"
    output = tmp_path / "annotated.png"  # lossless, so the box colour reads back exactly
    args = ["--model", random_model_path, "--detector", detector_path, "--people", people, "--threshold", "0.9999"]
    result = run_sample("samples/annotate_image.py", *args, photo, "--output", output)
    assert result.returncode == 0, result.stderr
    face = re.search(r"^face 0: Colin_Powell 1\.00 at \((-?\d+), (-?\d+), (-?\d+), (-?\d+)\)$", result.stdout, re.M)
    assert face, result.stdout
    annotated, original = cv2.imread(str(output)), cv2.imread(str(photo))
    assert annotated is not None and annotated.shape == original.shape
    x1, _, x2, y2 = map(int, face.groups())
    assert annotated[y2, (x1 + x2) // 2].tolist() == [0, 200, 0]  # the bottom edge of the box, BGR green


def test_images_to_csv_writes_a_row_per_face_and_one_per_unreadable_image(
    random_model_path, detector_path, lfw_dir, tmp_path
):
    people = make_people(lfw_dir, tmp_path / "people")
    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    shutil.copy(people / "Colin_Powell" / "Colin_Powell_0001.jpg", photos / "enrolled.jpg")
    shutil.copy(lfw_dir / "images" / "Tony_Blair" / "Tony_Blair_0003.jpg", photos / "nested" / "stranger.jpg")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    (photos / "notes.txt").write_text("not an image, not listed")
    output = tmp_path / "faces.csv"
    args = ["--model", random_model_path, "--detector", detector_path, "--people", people, "--threshold", "0.9999"]
    result = run_sample("samples/images_to_csv.py", *args, photos, "--output", output)
    assert result.returncode == 0, result.stderr

    with output.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert list(rows[0]) == ["image", "face", "x1", "y1", "x2", "y2", "det_score", "name", "similarity", "error"]
    detector = FaceDetector(detector_path)
    by_image = {image: [row for row in rows if row["image"] == image] for image in {row["image"] for row in rows}}
    assert set(by_image) == {"broken.jpg", "enrolled.jpg", "nested/stranger.jpg"}
    assert [row["error"] for row in by_image["broken.jpg"]] == ["cannot read an image"]
    for image in ("enrolled.jpg", "nested/stranger.jpg"):
        expected = len(detector.detect(cv2.imread(str(photos / image))))
        assert [row["face"] for row in by_image[image]] == [str(i) for i in range(expected)]
        assert all(row["error"] == "" and float(row["x2"]) > float(row["x1"]) for row in by_image[image])
    assert by_image["enrolled.jpg"][0]["name"] == "Colin_Powell"
    assert float(by_image["enrolled.jpg"][0]["similarity"]) == pytest.approx(1.0, abs=1e-3)
    assert [row["name"] for row in rows if row["name"]] == ["Colin_Powell"]
    faces = len(rows) - 1
    assert result.stdout.strip() == f"3 images (1 unreadable, 0 without a face), {faces} faces, 1 named -> {output}"


def test_webcam_help_names_the_full_camera_app():
    result = run_sample("samples/webcam.py", "--help")
    assert result.returncode == 0
    assert "--camera" in result.stdout and "python -m edge_facenet.camera" in result.stdout


@pytest.mark.parametrize(
    ("sample", "args", "message"),
    [
        ("enroll_folder.py", ["MISSING"], "people folder not found: MISSING"),
        ("annotate_image.py", ["--people", "PEOPLE", "--output", "a.jpg", "MISSING"], "cannot read an image from"),
        ("images_to_csv.py", ["--people", "PEOPLE", "--output", "out.csv", "MISSING"], "folder not found: MISSING"),
        ("webcam.py", ["--people", "PEOPLE", "--camera", "99"], "cannot open camera 99"),
    ],
)
def test_samples_exit_1_with_one_line_on_bad_input(sample, args, message, random_model_path, detector_path, tmp_path):
    (tmp_path / "people").mkdir()
    names = {"MISSING": str(tmp_path / "missing"), "PEOPLE": str(tmp_path / "people")}
    args = [names.get(arg, arg) for arg in args]
    result = run_sample(f"samples/{sample}", "--model", random_model_path, "--detector", detector_path, *args)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message.replace('MISSING', names['MISSING'])}"), lines
