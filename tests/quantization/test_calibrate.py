"""Calibration of the shipped FP32 embedder on real aligned LFW faces, and the cosine gate on other people's faces."""

import json

import cv2
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edge_facenet.aligner import FaceAligner
from edge_facenet.detector import FaceDetector
from edge_facenet.embedder import DEFAULT_MODELS, Embedder
from edge_facenet.evaluate import align_images
from edge_facenet.lfw import read_people_folds
from edge_facenet.metadata import read_metadata
from edge_facenet.quantization.calibrate import (
    RECORD_SUFFIX,
    CalibrationMethod,
    calibrate,
    load_calibration_faces,
)
from edge_facenet.quantization.gate import MIN_MEAN_COSINE, cosine_agreement
from edge_facenet.quantization.lint import lint_qdq_model

CALIBRATION_PEOPLE = 64  # of folds 1-5, one photo each
CHECK_PEOPLE = 120  # of folds 6-10, one photo each


@pytest.fixture(scope="module")
def faces(lfw_dir, detector_path, tmp_path_factory):
    """Aligned crops as a folder of images per identity (folds 1-5) and an array of other people's (folds 6-10)."""
    folds = read_people_folds(lfw_dir / "people.txt")
    first = sorted(name for name, fold in folds.items() if fold <= 5)[:CALIBRATION_PEOPLE]
    second = sorted(name for name, fold in folds.items() if fold > 5)[:CHECK_PEOPLE]
    aligner = FaceAligner.from_metadata(read_metadata(DEFAULT_MODELS["fp32"]))
    detector = FaceDetector(detector_path)
    keys = [f"{name}/{name}_0001.jpg" for name in first + second]
    aligned = align_images(lfw_dir / "images", keys, detector, aligner, progress=False)
    folder = tmp_path_factory.mktemp("calibration_faces")
    for name, crop in zip(first, aligned.crops[: len(first)], strict=True):
        (folder / name).mkdir()
        cv2.imwrite(str(folder / name / f"{name}_0001.png"), crop)
    return folder, first, aligned.crops[len(first) :]


@pytest.fixture(scope="module")
def calibrated(faces, tmp_path_factory):
    folder, _, _ = faces
    chosen = load_calibration_faces(folder, (96, 96), num_faces=48, seed=1)
    output = tmp_path_factory.mktemp("int8") / "nn4_small2_int8.onnx"
    return calibrate(DEFAULT_MODELS["fp32"], output, chosen, CalibrationMethod.MINMAX), chosen


def test_calibration_writes_an_int8_model_with_its_metadata_and_record(calibrated):
    result, chosen = calibrated
    metadata = read_metadata(result.path)
    fp32 = read_metadata(DEFAULT_MODELS["fp32"])
    assert metadata.precision == "int8" and result.metadata == metadata
    assert (metadata.arch, metadata.threshold, metadata.checkpoint_sha256) == (
        fp32.arch,
        fp32.threshold,
        fp32.checkpoint_sha256,
    )
    record = json.loads(result.record_path.read_text())
    assert result.record_path.name == result.path.name + RECORD_SUFFIX
    assert record["method"] == "minmax" and len(record["faces"]) == 48 == result.faces
    assert [face["sha256"] for face in record["faces"]] == [face.sha256 for face in chosen.faces]
    # Every Conv and the Gemm have their input activation quantized: ranges for 37 + 1 inputs at least.
    assert len(record["ranges"]) >= 38
    assert all(r["amax"] > 0 and np.isclose(r["amax"], 127 * r["scale"]) for r in record["ranges"].values())


def test_the_int8_model_embeds_other_peoples_faces_like_the_fp32_model(calibrated, faces):
    result, _ = calibrated
    _, _, other_crops = faces
    fp32 = Embedder(DEFAULT_MODELS["fp32"], backend="onnxruntime")
    int8 = Embedder(result.path, backend="onnxruntime")
    agreement = cosine_agreement(fp32.embed(other_crops), int8.embed(other_crops))
    # Measured here with 48 calibration faces (minmax): mean 0.998, p1 0.995 on 120 faces of folds 6-10.
    assert agreement.faces == CHECK_PEOPLE
    assert agreement.mean >= MIN_MEAN_COSINE, agreement
    assert agreement.p1 >= 0.98, agreement


def test_calibration_is_repeatable(calibrated, faces, tmp_path):
    result, chosen = calibrated
    again = calibrate(DEFAULT_MODELS["fp32"], tmp_path / "again.onnx", chosen, "minmax")
    assert again.sha256 == result.sha256


def test_faces_are_drawn_one_per_identity_and_excluded_identities_never(faces):
    folder, first, _ = faces
    drawn = load_calibration_faces(folder, (96, 96), num_faces=10, exclude_identities=first[:50], seed=0)
    identities = [face.identity for face in drawn.faces]
    assert len(identities) == 10 == len(set(identities))
    assert not set(identities) & set(first[:50])
    assert drawn.crops.shape == (10, 96, 96, 3)
    few = load_calibration_faces(folder, (96, 96), num_faces=1000)
    assert len(few.faces) == CALIBRATION_PEOPLE


def test_bad_calibration_input_is_refused(faces, tmp_path):
    folder, first, _ = faces
    with pytest.raises(ValueError, match="model takes 112x112"):
        load_calibration_faces(folder, (112, 112))
    with pytest.raises(ValueError, match="no calibration faces left"):
        load_calibration_faces(folder, (96, 96), exclude_identities=first)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_calibration_faces(tmp_path / "nowhere", (96, 96))
    with pytest.raises(ValueError, match="valid methods: minmax, entropy, percentile"):
        calibrate(DEFAULT_MODELS["fp32"], tmp_path / "x.onnx", load_calibration_faces(folder, (96, 96), 4), "kl")


def test_the_lint_passes_the_calibrated_model_and_fails_hand_broken_copies(calibrated):
    result, _ = calibrated
    assert lint_qdq_model(result.path, "tensorrt10") == []
    assert lint_qdq_model(result.path, "tensorrt11") == []
    model = onnx.load(str(result.path))
    constants = {tensor.name: tensor for tensor in model.graph.initializer}
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    activation_dq, weight_dq = (next(n for n in model.graph.node if n.output[0] == name) for name in conv.input[:2])

    nonzero = onnx.ModelProto.FromString(model.SerializeToString())
    zero_point = next(t for t in nonzero.graph.initializer if t.name == activation_dq.input[2])
    zero_point.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zero_point.name))
    assert {v.rule for v in lint_qdq_model(nonzero)} == {"zero-point"}

    wrong_axis = onnx.ModelProto.FromString(model.SerializeToString())
    node = next(n for n in wrong_axis.graph.node if n.name == weight_dq.name)
    next(a for a in node.attribute if a.name == "axis").i = 1
    assert "weight-axis" in {v.rule for v in lint_qdq_model(wrong_axis)}
    assert any(weight_dq.name in v.message for v in lint_qdq_model(wrong_axis) if v.rule == "weight-axis")

    # The bias quantized to INT32 as ONNX Runtime does by default (scale = input scale x weight scale).
    int32_bias = onnx.ModelProto.FromString(model.SerializeToString())
    bias = numpy_helper.to_array(constants[conv.input[2]])
    scale = numpy_helper.to_array(constants[activation_dq.input[1]]) * numpy_helper.to_array(
        constants[weight_dq.input[1]]
    )
    int32_bias.graph.initializer.extend(
        [
            numpy_helper.from_array(np.round(bias / scale).astype(np.int32), "bias_int32"),
            numpy_helper.from_array(scale.astype(np.float32), "bias_int32_scale"),
        ]
    )
    int32_bias.graph.node.append(
        helper.make_node("DequantizeLinear", ["bias_int32", "bias_int32_scale"], ["bias_dq"], name="bias_dq", axis=0)
    )
    target = next(n for n in int32_bias.graph.node if n.name == conv.name)
    target.input[2] = "bias_dq"
    violations = lint_qdq_model(int32_bias)
    assert [v.rule for v in violations] == ["int32-dequantize"] and "bias_dq" in violations[0].message
