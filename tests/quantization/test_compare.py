"""The accuracy gate on the package's FP32 and INT8 models, through calibration/compare.py."""

import importlib.util
import json

import pytest

from edge_facenet.embedder import DEFAULT_MODELS
from tests.conftest import REPO_ROOT


def load_compare():
    spec = importlib.util.spec_from_file_location("compare", REPO_ROOT / "calibration" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compare():
    return load_compare()


def test_the_shipped_int8_model_passes_the_gate_on_a_held_out_fold(compare, lfw_dir, detector_path, capsys):
    # Folds 6 and 7: people the model neither trained nor calibrated on; 1,200 pairs of about 1,500 faces.
    arguments = ["--fp32", str(DEFAULT_MODELS["fp32"]), "--int8", str(DEFAULT_MODELS["int8"])]
    arguments += ["--lfw-dir", str(lfw_dir), "--folds", "6-7", "--detector", str(detector_path)]
    assert compare.main([*arguments, "--speed-repeats", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["passed"] and result["failures"] == []
    assert result["faces"] >= 1000
    assert result["cosine_mean"] >= 0.995 and result["accuracy_drop"] <= 0.005
    assert set(result["speed"]) == {"fp32", "int8"} and set(result["speed"]["int8"]) == {"1", "8"}
    assert set(result["at_threshold"]) == {"fp32", "int8"}


def test_folds_whose_people_calibrated_the_model_are_refused(compare, lfw_dir, capsys):
    arguments = ["--fp32", str(DEFAULT_MODELS["fp32"]), "--int8", str(DEFAULT_MODELS["int8"])]
    assert compare.main([*arguments, "--lfw-dir", str(lfw_dir), "--folds", "1"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "calibrated" in error and "\n" not in error


def test_bad_input_is_one_line(compare, lfw_dir, tmp_path, capsys):
    protocol = ["--lfw-dir", str(lfw_dir), "--folds", "6"]
    assert compare.main(["--fp32", str(tmp_path / "a.onnx"), "--int8", str(DEFAULT_MODELS["int8"]), *protocol]) == 2
    assert "not found" in capsys.readouterr().err
    assert compare.main(["--fp32", str(DEFAULT_MODELS["fp32"]), "--int8", str(DEFAULT_MODELS["fp32"]), *protocol]) == 2
    assert "is a fp32 model, not int8" in capsys.readouterr().err
