"""export/build_engine.py and the checks build_engine() makes before it needs TensorRT; all run on the CPU.

TensorRT is hidden with ``sys.modules["tensorrt"] = None`` so the tests behave the same on a machine that has it.
"""

import importlib.util
import sys
import types

import numpy as np
import pytest

from edge_facenet.metadata import ModelMetadata
from edge_facenet.trt.build import build_engine, count_ops, tensorrt_unavailable_reason

from ..conftest import REPO_ROOT

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def load_cli():
    spec = importlib.util.spec_from_file_location("build_engine_script", REPO_ROOT / "export" / "build_engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_model(path, quantized=False):
    """A tiny embedder-shaped ONNX with edge_facenet metadata; with quantized=True it has one Q/DQ pair."""
    shape = ["N", 3, 96, 96]
    if quantized:
        nodes = [
            helper.make_node("QuantizeLinear", ["input", "scale", "zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["embedding"]),
        ]
        initializers = [
            helper.make_tensor("scale", TensorProto.FLOAT, [], [0.05]),
            helper.make_tensor("zero", TensorProto.INT8, [], [0]),
        ]
    else:
        nodes, initializers = [helper.make_node("Identity", ["input"], ["embedding"])], []
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = ModelMetadata(arch="nn4_small2", input_size=(96, 96), embedding_size=128)
    helper.set_model_props(model, metadata.to_props())
    onnx.save(model, str(path))
    return path


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.fixture
def no_cuda_bindings(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)


def test_cli_without_tensorrt_exits_2_with_one_line(tmp_path, capsys, no_tensorrt):
    onnx_path = write_model(tmp_path / "m.onnx")
    code = load_cli().main(["--onnx", str(onnx_path), "--output", str(tmp_path / "m.engine")])

    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert "TensorRT is not available" in lines[0]
    assert "tensorrt Python package is not installed" in lines[0]
    assert "TensorRT engines on Jetson" in lines[0]
    assert not (tmp_path / "m.engine").exists()


def test_cli_without_cuda_bindings_says_so(tmp_path, capsys, monkeypatch, no_cuda_bindings):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    code = load_cli().main(["--onnx", str(write_model(tmp_path / "m.onnx")), "--output", str(tmp_path / "m.engine")])

    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "TensorRT is not available here (neither cuda-python nor pycuda is installed)" in line


@pytest.mark.parametrize("batch", ["8", "1,8", "1,8,32,64", "a,b,c", "0,8,32", "1,32,8", "16,8,32", "-1,8,32", ""])
def test_cli_refuses_bad_batch_before_tensorrt(tmp_path, capsys, no_tensorrt, batch):
    onnx_path = write_model(tmp_path / "m.onnx")
    code = load_cli().main(["--onnx", str(onnx_path), "--output", str(tmp_path / "m.engine"), f"--batch={batch}"])

    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "batch" in line
    assert "TensorRT" not in line


def test_parse_batch_accepts_spaces():
    assert load_cli().parse_batch(" 1, 4 ,16") == (1, 4, 16)


def test_cli_refuses_missing_onnx(tmp_path, capsys, no_tensorrt):
    code = load_cli().main(["--onnx", str(tmp_path / "absent.onnx"), "--output", str(tmp_path / "m.engine")])

    assert code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"error: ONNX model not found: {tmp_path / 'absent.onnx'}"


def test_cli_refuses_zero_workspace(tmp_path, capsys, no_tensorrt):
    args = ["--onnx", str(write_model(tmp_path / "m.onnx")), "--output", str(tmp_path / "e"), "--workspace", "0"]
    assert load_cli().main(args) == 2
    assert "--workspace" in capsys.readouterr().err


def test_cli_precision_flags_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        load_cli().main(["--onnx", "m.onnx", "--output", "m.engine", "--int8", "--fp16"])
    assert caught.value.code == 2


def test_unavailable_reason_names_the_missing_package(no_tensorrt):
    assert tensorrt_unavailable_reason() == "the tensorrt Python package is not installed"


def test_count_ops_reads_the_graph_without_onnx_runtime(tmp_path):
    plain = write_model(tmp_path / "plain.onnx").read_bytes()
    quantized = write_model(tmp_path / "q.onnx", quantized=True).read_bytes()
    assert count_ops(plain, "QuantizeLinear") == 0
    assert count_ops(plain, "Identity") == 1
    assert (count_ops(quantized, "QuantizeLinear"), count_ops(quantized, "DequantizeLinear")) == (1, 1)


def test_count_ops_on_the_real_embedder(random_model_path):
    data = random_model_path.read_bytes()
    assert count_ops(data, "QuantizeLinear") == 0
    assert count_ops(data, "Conv") > 10


def test_int8_of_an_unquantized_model_points_to_calibration(tmp_path, no_tensorrt):
    with pytest.raises(ValueError, match=r"no QuantizeLinear nodes.*calibration/calibrate\.py"):
        build_engine(write_model(tmp_path / "m.onnx"), tmp_path / "m.engine", precision="int8")


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_float_precision_of_a_qdq_model_is_refused(tmp_path, no_tensorrt, precision):
    with pytest.raises(ValueError, match="precision 'int8'"):
        build_engine(write_model(tmp_path / "q.onnx", quantized=True), tmp_path / "q.engine", precision=precision)


def test_build_without_tensorrt_names_the_extra(tmp_path, no_tensorrt):
    with pytest.raises(ImportError, match=r"edge-facenet\[tensorrt\]"):
        build_engine(write_model(tmp_path / "m.onnx"), tmp_path / "m.engine")
    assert not (tmp_path / "m.engine").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"precision": "fp8"}, "precision"), ({"batch": (8, 1, 32)}, "batch"), ({"workspace_mb": 0}, "workspace")],
)
def test_bad_arguments_are_refused_first(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_engine(tmp_path / "absent.onnx", tmp_path / "m.engine", **kwargs)


def test_missing_onnx_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.onnx"):
        build_engine(tmp_path / "absent.onnx", tmp_path / "m.engine")


def test_model_without_metadata_is_refused(tmp_path, no_tensorrt):
    path = write_model(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="lacks edge_facenet metadata"):
        build_engine(path, tmp_path / "m.engine")


def test_tiny_model_is_a_valid_onnx(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    path = write_model(tmp_path / "q.onnx", quantized=True)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    blob = np.zeros((2, 3, 96, 96), dtype=np.float32)
    assert session.run(None, {"input": blob})[0].shape == (2, 3, 96, 96)
