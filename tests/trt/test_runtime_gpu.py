"""Native TensorRT engines on a real GPU: build from the ONNX embedder, compare with ONNX Runtime, refuse foreign ones.

Skipped where TensorRT, the CUDA Python bindings (cuda-python or pycuda) or a CUDA GPU are missing.
"""

import json
import shutil

import numpy as np
import pytest

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed")

from edge_facenet.metadata import read_metadata  # noqa: E402
from edge_facenet.preprocess import blob_from_crops  # noqa: E402
from edge_facenet.session import create_session  # noqa: E402
from edge_facenet.trt.build import build_engine, tensorrt_unavailable_reason  # noqa: E402
from edge_facenet.trt.runtime import TensorRTEngine, gpu_info  # noqa: E402
from edge_facenet.trt.sidecar import read_engine_info, sidecar_path  # noqa: E402

TRT_MAJOR = int(trt.__version__.split(".")[0])
# TensorRT 11 builds strongly typed networks only: an FP32 ONNX gives an FP32 engine and 'fp16' is refused.
PRECISION = "fp16" if TRT_MAJOR < 11 else "fp32"
MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def engine_path(random_model_path, tmp_path_factory):
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        pytest.skip(f"TensorRT cannot run here: {reason}")
    path = tmp_path_factory.mktemp("engines") / "nn4_small2.engine"
    build_engine(random_model_path, path, precision=PRECISION, batch=(1, 8, 16), workspace_mb=512)
    return path


def reference_and_blob(model_path, batch, seed=0):
    metadata = read_metadata(model_path)
    crops = np.random.default_rng(seed).integers(0, 256, size=(batch, *metadata.input_size, 3), dtype=np.uint8)
    blob = blob_from_crops(crops, metadata)
    session = create_session(model_path)
    (reference,) = session.run(None, {session.get_inputs()[0].name: blob})
    return blob, np.asarray(reference, dtype=np.float32)


def test_sidecar_describes_this_build(engine_path, random_model_path):
    info = read_engine_info(engine_path)
    assert info.tensorrt_version == trt.__version__
    assert info.compute_capability == gpu_info().compute_capability
    assert info.precision == PRECISION
    assert info.batch == (1, 8, 16)
    assert info.model_metadata().precision == PRECISION
    assert info.model_metadata().input_size == read_metadata(random_model_path).input_size


@pytest.mark.parametrize("batch", [1, 8])
def test_engine_matches_onnxruntime(engine_path, random_model_path, batch):
    blob, reference = reference_and_blob(random_model_path, batch)
    with TensorRTEngine(engine_path) as engine:
        embeddings = engine.run(blob)

    assert embeddings.shape == reference.shape and embeddings.dtype == np.float32
    cosine = np.sum(embeddings * reference, axis=1) / (
        np.linalg.norm(embeddings, axis=1) * np.linalg.norm(reference, axis=1)
    )
    assert cosine.min() > MIN_COSINE, f"cosine to ONNX Runtime {cosine.min():.5f} ({PRECISION})"


def test_buffers_grow_and_shrink_batches_still_work(engine_path, random_model_path):
    blob, reference = reference_and_blob(random_model_path, 16, seed=1)
    with TensorRTEngine(engine_path) as engine:
        assert engine.max_batch == 16
        small = engine.run(blob[:2])
        large = engine.run(blob)
        again = engine.run(blob[:3])
    np.testing.assert_allclose(large[:2], small, atol=1e-3)
    np.testing.assert_allclose(large[:3], again, atol=1e-3)
    assert large.shape == reference.shape


def test_batch_outside_the_profile_is_refused(engine_path, random_model_path):
    blob, _ = reference_and_blob(random_model_path, 17)
    with TensorRTEngine(engine_path) as engine, pytest.raises(ValueError, match=r"outside the engine's range 1\.\.16"):
        engine.run(blob)


def test_engine_for_another_compute_capability_is_refused(engine_path, tmp_path):
    copy = tmp_path / "foreign.engine"
    shutil.copyfile(engine_path, copy)
    record = json.loads(sidecar_path(engine_path).read_text())
    record["compute_capability"] = "1.0"
    sidecar_path(copy).write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"compute capability 1\.0.*rebuild it here with export/build_engine\.py"):
        TensorRTEngine(copy)


def test_engine_without_sidecar_is_refused(engine_path, tmp_path):
    copy = tmp_path / "bare.engine"
    shutil.copyfile(engine_path, copy)
    with pytest.raises(FileNotFoundError, match="build_engine"):
        TensorRTEngine(copy)


@pytest.mark.skipif(TRT_MAJOR < 11, reason="TensorRT 10 builds FP16 from an FP32 ONNX with BuilderFlag.FP16")
def test_tensorrt_11_refuses_fp16_from_an_fp32_onnx(random_model_path, tmp_path):
    if tensorrt_unavailable_reason() is not None:
        pytest.skip("TensorRT cannot run here")
    with pytest.raises(ValueError, match="strongly typed"):
        build_engine(random_model_path, tmp_path / "m.engine", precision="fp16")
