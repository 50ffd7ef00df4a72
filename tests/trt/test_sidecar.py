import json

import pytest

from edge_facenet.metadata import ModelMetadata
from edge_facenet.trt.sidecar import (
    EngineInfo,
    check_batch,
    check_compatible,
    read_engine_info,
    sidecar_path,
    write_engine_info,
)


def make_info(**fields):
    metadata = ModelMetadata(arch="nn4_small2", input_size=(96, 96), embedding_size=128, threshold=0.61)
    defaults = {
        "tensorrt_version": "10.3.0",
        "gpu_name": "Orin",
        "compute_capability": "8.7",
        "precision": "fp16",
        "onnx_sha256": "ab" * 32,
        "batch": (1, 8, 32),
        "input_name": "input",
        "output_name": "embedding",
        "metadata": {**metadata.to_props(), "precision": "fp16"},
        "created": "2025-01-01T00:00:00+00:00",
    }
    return EngineInfo(**{**defaults, **fields})


def test_sidecar_path_appends_json_to_the_engine_name(tmp_path):
    assert sidecar_path(tmp_path / "model.engine") == tmp_path / "model.engine.json"
    assert sidecar_path("dir/m.plan").name == "m.plan.json"


def test_round_trip_keeps_every_field_and_the_model_metadata(tmp_path):
    info = make_info()
    written = write_engine_info(tmp_path / "model.engine", info)

    assert written == tmp_path / "model.engine.json"
    assert not list(tmp_path.glob(".*.tmp"))
    assert json.loads(written.read_text())["batch"] == [1, 8, 32]
    read = read_engine_info(tmp_path / "model.engine")
    assert read == info
    assert read.batch == (1, 8, 32)
    metadata = read.model_metadata()
    assert (metadata.input_size, metadata.embedding_size, metadata.threshold) == ((96, 96), 128, 0.61)
    assert metadata.precision == "fp16"
    assert read.max_batch == 32


def test_info_is_hashable_despite_its_metadata_dict():
    assert hash(make_info()) == hash(make_info())


def test_missing_sidecar_names_it_and_the_rebuild_script(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model\.engine\.json.*build_engine"):
        read_engine_info(tmp_path / "model.engine")


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        json.dumps({"sidecar_version": 99}),
        json.dumps({"sidecar_version": 1, "gpu_name": "Orin"}),
    ],
)
def test_malformed_sidecar_is_a_one_line_value_error(tmp_path, text):
    (tmp_path / "m.engine.json").write_text(text)
    with pytest.raises(ValueError, match=r"m\.engine\.json") as caught:
        read_engine_info(tmp_path / "m.engine")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("precision", "fp8"),
        ("compute_capability", "sm_87"),
        ("onnx_sha256", "xyz"),
        ("batch", [8, 1, 32]),
        ("batch", [1, 8]),
        ("input_name", ""),
        ("metadata", {"arch": 3}),
    ],
)
def test_invalid_field_in_sidecar_is_named(tmp_path, key, value):
    write_engine_info(tmp_path / "m.engine", make_info())
    path = tmp_path / "m.engine.json"
    record = json.loads(path.read_text())
    record[key] = value
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=key) as caught:
        read_engine_info(tmp_path / "m.engine")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("batch", [(0, 1, 2), (4, 2, 8), (1, 2, 1), (1, 2), (1.0, 2, 3), (True, 2, 3)])
def test_check_batch_refuses_bad_ranges(batch):
    with pytest.raises(ValueError, match="batch"):
        check_batch(batch)


def test_check_batch_accepts_equal_sizes():
    assert check_batch([4, 4, 4]) == (4, 4, 4)


@pytest.mark.parametrize("version", ["10.3.0", "10.3.0.30", " 10.3.0.26 "])
def test_same_release_and_compute_capability_is_accepted(version):
    check_compatible(make_info(tensorrt_version="10.3.0"), version, "8.7")


@pytest.mark.parametrize(
    ("version", "capability"),
    [("10.4.0", "8.7"), ("10.3.1", "8.7"), ("11.0.0", "8.7"), ("10.3.0", "8.6"), ("10.3.0", "9.0")],
)
def test_other_release_or_compute_capability_is_refused_with_the_rebuild_message(version, capability):
    info = make_info(tensorrt_version="10.3.0.30", compute_capability="8.7")
    with pytest.raises(ValueError) as caught:
        check_compatible(info, version, capability, engine_path="m.engine")
    message = str(caught.value)
    assert message.startswith("engine m.engine was built with TensorRT 10.3.0.30 for compute capability 8.7; ")
    assert f"this device has TensorRT {version} and compute capability {capability}" in message
    assert message.endswith("rebuild it here with export/build_engine.py")
