import sys

import numpy as np
import onnxruntime
import pytest

from edge_facenet import blob_from_crops
from edge_facenet._files import sha256_file
from edge_facenet.embedder import DEFAULT_MODELS, Embedder


@pytest.fixture(scope="module")
def embedder(random_model_path):
    return Embedder(random_model_path)


def test_embeddings_are_unit_vectors_from_the_metadata_preprocessing(embedder, random_model_path):
    crops = np.random.default_rng(0).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    embeddings = embedder.embed(crops)
    assert embeddings.shape == (3, 128) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)

    session = onnxruntime.InferenceSession(str(random_model_path), providers=["CPUExecutionProvider"])
    (expected,) = session.run(None, {"input": blob_from_crops(crops, embedder.metadata)})
    np.testing.assert_allclose(embeddings, expected, atol=1e-6)
    # One batched call gives what one call per face gives.
    np.testing.assert_allclose(np.concatenate([embedder.embed(c[None]) for c in crops]), embeddings, atol=1e-5)


def test_facts_come_from_the_model(embedder, random_model_path):
    assert embedder.embedding_size == 128 and embedder.input_size == (96, 96)
    assert embedder.fingerprint == sha256_file(random_model_path)
    assert embedder.metadata.is_random
    assert embedder.providers[-1] == "CPUExecutionProvider"


def test_no_crops_give_no_embeddings(embedder):
    assert embedder.embed(np.zeros((0, 96, 96, 3), np.uint8)).shape == (0, 128)


def test_wrong_crops_raise(embedder):
    with pytest.raises(ValueError, match=r"\(N, 96, 96, 3\)"):
        embedder.embed(np.zeros((2, 112, 112, 3), np.uint8))


def test_model_resolution_order(random_model_path, tmp_path, monkeypatch):
    # On a CPU-only ONNX Runtime the package's INT8 model is the default; FP32 on request.
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert Embedder().model_path == DEFAULT_MODELS["int8"]
        assert Embedder().metadata.precision == "int8"
    assert Embedder(precision="fp32").model_path == DEFAULT_MODELS["fp32"]
    assert Embedder(precision="int8", backend="onnxruntime").model_path == DEFAULT_MODELS["int8"]
    monkeypatch.setitem(DEFAULT_MODELS, "fp32", tmp_path / "absent.onnx")
    with pytest.raises(FileNotFoundError, match=r"default embedder .*absent\.onnx is missing"):
        Embedder(precision="fp32")
    monkeypatch.setenv("EDGE_FACENET_MODEL", str(random_model_path))
    assert Embedder().model_path == random_model_path
    monkeypatch.setenv("EDGE_FACENET_MODEL", str(tmp_path / "gone.onnx"))
    with pytest.raises(FileNotFoundError, match="EDGE_FACENET_MODEL"):
        Embedder()
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        Embedder(tmp_path / "missing.onnx")


def test_a_model_without_edge_facenet_metadata_is_refused(detector_path):
    with pytest.raises(ValueError, match="lacks edge_facenet metadata"):
        Embedder(detector_path)


def test_bad_backends_and_providers_raise(random_model_path, tmp_path):
    with pytest.raises(ValueError, match="valid backends"):
        Embedder(random_model_path, backend="openvino")
    with pytest.raises(ValueError, match="runs TensorRT engines"):
        Embedder(random_model_path, backend="tensorrt")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(ValueError, match="is a TensorRT engine: use backend='tensorrt'"):
        Embedder(engine, backend="onnxruntime")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(ValueError, match="no CUDAExecutionProvider"):
            Embedder(random_model_path, providers=["CUDAExecutionProvider"])


def test_precision_is_checked_against_the_model(random_model_path):
    with pytest.raises(ValueError, match="valid precisions: auto, fp32, int8"):
        Embedder(random_model_path, precision="fp16")
    with pytest.raises(ValueError, match="is a fp32 model, not int8"):
        Embedder(random_model_path, precision="int8")
    assert Embedder(random_model_path, precision="fp32").metadata.precision == "fp32"


def test_an_engine_file_goes_to_the_tensorrt_backend(tmp_path, monkeypatch):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on a machine without TensorRT
    with pytest.raises(ImportError, match=r"edge-facenet\[tensorrt\]"):
        Embedder(engine)
