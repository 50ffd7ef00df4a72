import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge_facenet.aligner import FaceAligner
from edge_facenet.detector import FaceDetector
from edge_facenet.evaluate import align_images, combine_reports, pair_similarities, parse_folds
from edge_facenet.lfw import Pair
from tests.conftest import REPO_ROOT


def run_evaluate(*args, env_home):
    return subprocess.run(
        [sys.executable, "-m", "edge_facenet.evaluate", "lfw", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=600,
        env={"EDGE_FACENET_HOME": str(env_home), "PATH": "/usr/bin:/bin"},
    )


def test_lfw_fold_json_report_and_crop_cache(lfw_dir, random_model_path, detector_path, tmp_path):
    """A random model can only show that the pipeline runs end to end; its figures are near chance."""
    args = ["--lfw-dir", str(lfw_dir), "--model", str(random_model_path), "--detector", str(detector_path)]
    result = run_evaluate(*args, "--folds", "1", "--json", "--plot", str(tmp_path / "roc.png"), env_home=tmp_path)
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    report = json.loads(line)
    for key in ("accuracy", "std", "val_at_far_1e-3", "auc", "detect_failures"):
        assert key in report
    assert report["pairs"] == 600 and report["folds"] == [1]
    assert 0.4 < report["accuracy"] < 0.8 and 0.0 <= report["val_at_far_1e-3"] <= 1.0
    assert report["detect_failures"] < 0.02 * report["images"]
    assert cv2.imread(str(tmp_path / "roc.png")).shape == (400, 640, 3)
    (cache,) = (tmp_path / "cache").glob("lfw_pairs_crops_*.npz")
    with np.load(cache, allow_pickle=False) as data:
        assert data["crops"].shape == (report["images"], 96, 96, 3)

    again = run_evaluate(*args, "--folds", "1", "--json", "--no-cache", env_home=tmp_path)
    assert json.loads(again.stdout)["accuracy"] == pytest.approx(report["accuracy"])


def test_bad_folds_give_a_one_line_error(lfw_dir, random_model_path, tmp_path):
    result = run_evaluate(
        "--lfw-dir", str(lfw_dir), "--model", str(random_model_path), "--folds", "0-3", env_home=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: --folds '0-3'") and "Traceback" not in result.stderr


def test_parse_folds():
    assert parse_folds("1-3,7", set(range(1, 11))) == [1, 2, 3, 7]
    assert parse_folds("6-10", set(range(1, 11))) == [6, 7, 8, 9, 10]
    for text in ("a", "1-x", "11", ""):
        with pytest.raises(ValueError, match="--folds"):
            parse_folds(text, set(range(1, 11)))


def test_images_without_a_face_fall_back_to_the_centre_crop(lfw_dir, detector_path, tmp_path):
    images = tmp_path / "images"
    (images / "Nobody").mkdir(parents=True)
    cv2.imwrite(str(images / "Nobody" / "Nobody_0001.jpg"), np.full((250, 250, 3), 90, np.uint8))
    (images / "Tony_Blair").mkdir()
    source = lfw_dir / "images" / "Tony_Blair" / "Tony_Blair_0001.jpg"
    (images / "Tony_Blair" / "Tony_Blair_0001.jpg").write_bytes(source.read_bytes())
    keys = ["Nobody/Nobody_0001.jpg", "Tony_Blair/Tony_Blair_0001.jpg"]
    aligned = align_images(
        images, keys, FaceDetector(detector_path), FaceAligner("lfw_funneled_5pt", (96, 96)), progress=False
    )
    assert aligned.detected.tolist() == [False, True]
    assert aligned.crops.shape == (2, 96, 96, 3) and (aligned.crops[0] == 90).all()


def test_pair_similarities_are_dot_products():
    keys = ["a", "b", "c"]
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    pairs = [Pair("a", "c", True, 1), Pair("b", "c", False, 1), Pair("a", "b", False, 1)]
    np.testing.assert_allclose(pair_similarities(pairs, keys, embeddings), [0.6, 0.8, 0.0], atol=1e-6)


def test_precomputed_embeddings_are_scored_under_the_same_protocol(lfw_dir, tmp_path):
    teacher = lfw_dir / "dlib_resnet_embeddings.npz"
    if not teacher.is_file():
        pytest.skip(f"dlib embeddings not found at {teacher}")
    done = run_evaluate(
        "--lfw-dir", str(lfw_dir), "--embeddings", str(teacher), "--folds", "6-10", "--json", env_home=tmp_path
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["folds"] == [6, 7, 8, 9, 10] and report["pairs"] == 3000
    assert len(report["fold_accuracies"]) == 5 and report["accuracy"] > 0.98 and report["auc"] > 0.99


def test_embeddings_without_the_pairs_images_give_a_one_line_error(lfw_dir, tmp_path):
    partial = tmp_path / "partial.npz"
    np.savez(partial, names=np.array(["Abel_Pacheco/Abel_Pacheco_0001.jpg"]), embeddings=np.ones((1, 128), np.float32))
    done = run_evaluate("--lfw-dir", str(lfw_dir), "--embeddings", str(partial), env_home=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "lacks" in done.stderr and done.stderr.count("\n") == 1


def report_on(folds, accuracies, vals, auc):
    return {
        "folds": folds,
        "pairs": 600 * len(folds),
        "auc": auc,
        "fold_accuracies": accuracies,
        "fold_val_at_far_1e-3": vals,
    }


def test_reports_on_disjoint_folds_combine_into_one_figure():
    combined = combine_reports(
        [report_on([6, 7], [0.9, 0.8], [0.5, 0.3], 0.96), report_on([1, 2], [0.7, 0.6], [0.2, 0.0], 0.92)]
    )
    assert combined["folds"] == [1, 2, 6, 7] and combined["pairs"] == 2400
    assert combined["accuracy"] == pytest.approx(0.75) and combined["std"] == pytest.approx(
        np.std([0.9, 0.8, 0.7, 0.6])
    )
    assert combined["val_at_far_1e-3"] == pytest.approx(0.25) and combined["auc"] == pytest.approx(0.94)


def test_combining_overlapping_reports_gives_a_one_line_error(tmp_path):
    paths = []
    for name in ("a", "b"):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(report_on([1, 2], [0.9, 0.8], [0.5, 0.3], 0.96)))
    done = subprocess.run(
        [sys.executable, "-m", "edge_facenet.evaluate", "combine", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 1 and done.stderr.startswith("error: ") and "disjoint" in done.stderr
