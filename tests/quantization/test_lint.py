import importlib.util
import json
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edge_facenet.quantization.lint import TARGETS, lint_qdq_model, load_model  # noqa: E402
from tests.conftest import REPO_ROOT  # noqa: E402

# As many input as output channels, so a weight scale fits either axis and only the axis rule can fire.
CHANNELS = 4


def quantize_dequantize(source: str, prefix: str, output: str) -> list[onnx.NodeProto]:
    """A Q->DQ pair named q_<prefix> and dq_<prefix>, with the initializers <prefix>_scale and <prefix>_zero_point."""
    scale, zero_point = f"{prefix}_scale", f"{prefix}_zero_point"
    return [
        helper.make_node("QuantizeLinear", [source, scale, zero_point], [f"{prefix}_q"], name=f"q_{prefix}"),
        helper.make_node("DequantizeLinear", [f"{prefix}_q", scale, zero_point], [output], name=f"dq_{prefix}"),
    ]


def dequantize_weight(axis: int) -> onnx.NodeProto:
    inputs = ["weight_q", "weight_scale", "weight_zero_point"]
    return helper.make_node("DequantizeLinear", inputs, ["weight"], name="dq_weight", axis=axis)


def int8_scalars(*prefixes: str) -> list[onnx.TensorProto]:
    scalars = [numpy_helper.from_array(np.array(0.02, np.float32), f"{prefix}_scale") for prefix in prefixes]
    return scalars + [numpy_helper.from_array(np.array(0, np.int8), f"{prefix}_zero_point") for prefix in prefixes]


def make_model(nodes, initializers, input_shape, output_shape, opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, output_shape)],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def qdq_conv_model(opset: int = 17) -> onnx.ModelProto:
    """input -> Q -> DQ -> Conv (int8 per-channel weight on axis 0, float bias) -> Q -> DQ -> output."""
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(CHANNELS, CHANNELS, 3, 3)).astype(np.float32)
    weight_scale = (np.abs(weight).reshape(CHANNELS, -1).max(axis=1) / 127).astype(np.float32)
    initializers = [
        *int8_scalars("input", "conv"),
        numpy_helper.from_array(np.round(weight / weight_scale[:, None, None, None]).astype(np.int8), "weight_q"),
        numpy_helper.from_array(weight_scale, "weight_scale"),
        numpy_helper.from_array(np.zeros(CHANNELS, np.int8), "weight_zero_point"),
        numpy_helper.from_array(rng.normal(size=CHANNELS).astype(np.float32), "bias"),
    ]
    nodes = [
        *quantize_dequantize("input", "input", "input_dq"),
        dequantize_weight(axis=0),
        helper.make_node("Conv", ["input_dq", "weight", "bias"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        *quantize_dequantize("conv", "conv", "output"),
    ]
    shape = [1, CHANNELS, 8, 8]
    return make_model(nodes, initializers, shape, shape, opset)


def qdq_gemm_model(trans_b: int, axis: int) -> onnx.ModelProto:
    """input -> Q -> DQ -> Gemm with a per-channel int8 weight of 3 outputs from 5 inputs."""
    shape = (3, 5) if trans_b else (5, 3)
    initializers = [
        *int8_scalars("input"),
        numpy_helper.from_array(np.ones(shape, np.int8), "weight_q"),
        numpy_helper.from_array(np.full(shape[axis], 0.01, np.float32), "weight_scale"),
        numpy_helper.from_array(np.zeros(shape[axis], np.int8), "weight_zero_point"),
    ]
    nodes = [
        *quantize_dequantize("input", "input", "input_dq"),
        dequantize_weight(axis),
        helper.make_node("Gemm", ["input_dq", "weight"], ["output"], name="gemm", transB=trans_b),
    ]
    return make_model(nodes, initializers, [2, 5], [2, 3])


def set_initializer(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    (index,) = [i for i, tensor in enumerate(model.graph.initializer) if tensor.name == name]
    model.graph.initializer[index].CopyFrom(numpy_helper.from_array(value, name))


def node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    (found,) = [n for n in model.graph.node if n.name == name]
    return found


def nonzero_zero_point(model):
    set_initializer(model, "input_zero_point", np.array(3, np.int8))


def int32_bias(model):
    model.graph.initializer.extend(
        [
            numpy_helper.from_array(np.arange(CHANNELS, dtype=np.int32), "bias_q"),
            numpy_helper.from_array(np.full(CHANNELS, 1e-4, np.float32), "bias_scale"),
            numpy_helper.from_array(np.zeros(CHANNELS, np.int32), "bias_zero_point"),
        ]
    )
    bias = helper.make_node(
        "DequantizeLinear", ["bias_q", "bias_scale", "bias_zero_point"], ["bias_dq"], name="dq_bias", axis=0
    )
    model.graph.node.insert(3, bias)
    node(model, "conv").input[2] = "bias_dq"


def weight_on_axis_1(model):
    del node(model, "dq_weight").attribute[:]
    node(model, "dq_weight").attribute.append(helper.make_attribute("axis", 1))


def weight_also_feeds_mul(model):
    model.graph.node.append(helper.make_node("Mul", ["input_dq", "weight"], ["product"], name="mul"))


def uint8_activation(model):
    set_initializer(model, "input_zero_point", np.array(0, np.uint8))


def per_channel_activation(model):
    set_initializer(model, "input_scale", np.full(CHANNELS, 0.02, np.float32))
    set_initializer(model, "input_zero_point", np.zeros(CHANNELS, np.int8))


def quantize_feeds_relu(model):
    model.graph.node.append(helper.make_node("Relu", ["conv_q"], ["relu"], name="relu"))
    model.graph.output.append(helper.make_tensor_value_info("relu", TensorProto.INT8, None))


def negative_scale(model):
    set_initializer(model, "conv_scale", np.array(-0.1, np.float32))


def no_zero_point(model):
    del node(model, "q_input").input[2]


def contrib_quantize(model):
    node(model, "q_input").domain = "com.microsoft"


def short_weight_scale(model):
    set_initializer(model, "weight_scale", np.full(CHANNELS - 1, 0.01, np.float32))
    set_initializer(model, "weight_zero_point", np.zeros(CHANNELS - 1, np.int8))


def computed_scale(model):
    model.graph.node.insert(0, helper.make_node("Identity", ["input_scale"], ["input_scale_copy"], name="copy"))
    node(model, "q_input").input[1] = "input_scale_copy"


def float_model(model):
    del model.graph.node[:]
    model.graph.node.append(helper.make_node("Conv", ["input", "weight_q", "bias"], ["output"], name="conv"))


BROKEN = [
    (nonzero_zero_point, "zero-point", {"q_input", "dq_input"}),
    (int32_bias, "int32-dequantize", {"dq_bias"}),
    (weight_on_axis_1, "weight-axis", {"dq_weight"}),
    (weight_also_feeds_mul, "weight-consumer", {"dq_weight"}),
    (uint8_activation, "dtype", {"q_input", "dq_input"}),
    (per_channel_activation, "activation-per-channel", {"q_input", "dq_input"}),
    (quantize_feeds_relu, "dangling-quantize", {"q_conv"}),
    (negative_scale, "scale-value", {"q_conv", "dq_conv"}),
    (no_zero_point, "missing-zero-point", {"q_input"}),
    (contrib_quantize, "domain", {"q_input"}),
    (short_weight_scale, "scale-shape", {"dq_weight"}),
    (computed_scale, "scale-constant", {"q_input"}),
]


def test_good_model_passes_and_runs_in_onnxruntime():
    import onnxruntime

    model = qdq_conv_model()
    onnx.checker.check_model(model, full_check=True)
    assert lint_qdq_model(model) == []
    assert lint_qdq_model(model, "tensorrt11") == []

    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(1).uniform(-1, 1, (1, CHANNELS, 8, 8)).astype(np.float32)
    (output,) = session.run(None, {"input": image})
    assert output.shape == (1, CHANNELS, 8, 8)
    assert np.all(np.isfinite(output)) and np.any(output != 0)


@pytest.mark.parametrize(("breakage", "rule", "nodes"), BROKEN, ids=[case[1] for case in BROKEN])
def test_broken_model_fails_with_its_rule(breakage, rule, nodes):
    model = qdq_conv_model()
    breakage(model)
    violations = lint_qdq_model(model)
    assert {violation.rule for violation in violations} == {rule}, violations
    assert {violation.node for violation in violations} == nodes
    for violation in violations:
        assert violation.node in violation.message and "\n" not in violation.message


def test_weight_axis_message_names_the_consumer():
    model = qdq_conv_model()
    weight_on_axis_1(model)
    (violation,) = lint_qdq_model(model)
    assert "axis 1" in violation.message and "Conv conv" in violation.message and "axis 0" in violation.message


def test_opset_beyond_the_tensorrt10_parser():
    assert TARGETS["tensorrt10"].max_opset < 21 <= TARGETS["tensorrt11"].max_opset
    model = qdq_conv_model(opset=21)
    (violation,) = lint_qdq_model(model, "tensorrt10")
    assert (violation.rule, violation.node) == ("opset", "")
    assert "opset 21" in violation.message
    assert lint_qdq_model(model, "tensorrt11") == []


def test_model_without_qdq_nodes():
    model = qdq_conv_model()
    float_model(model)
    assert [(v.rule, v.message) for v in lint_qdq_model(model)] == [
        ("no-qdq", "no Q/DQ nodes: this is not an explicitly quantized model")
    ]


@pytest.mark.parametrize(("trans_b", "axis", "passes"), [(1, 0, True), (0, 1, True), (0, 0, False), (1, 1, False)])
def test_gemm_weight_axis_follows_trans_b(trans_b, axis, passes):
    violations = lint_qdq_model(qdq_gemm_model(trans_b, axis))
    assert [v.rule for v in violations] == ([] if passes else ["weight-axis"])


def test_constant_node_scales_count_as_constants():
    model = qdq_conv_model()
    scale = numpy_helper.from_array(np.array(0.02, np.float32))
    model.graph.node.insert(0, helper.make_node("Constant", [], ["constant_scale"], name="scale", value=scale))
    node(model, "q_input").input[1] = "constant_scale"
    assert lint_qdq_model(model) == []


def test_lint_reads_files_and_rejects_bad_input(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save(qdq_conv_model(), str(path))
    assert lint_qdq_model(path) == [] and lint_qdq_model(str(path)) == []
    assert len(load_model(path).graph.node) == 6

    with pytest.raises(ValueError, match=r"unknown lint target 'tensorrt9'; valid targets: tensorrt10, tensorrt11"):
        lint_qdq_model(path, "tensorrt9")
    with pytest.raises(FileNotFoundError, match="model file not found"):
        lint_qdq_model(tmp_path / "missing.onnx")
    (tmp_path / "text.onnx").write_text("not an onnx model\n")
    with pytest.raises(ValueError, match=r"text.onnx is not an ONNX model"):
        lint_qdq_model(tmp_path / "text.onnx")
    with pytest.raises(TypeError, match="ModelProto or a path"):
        lint_qdq_model(3)


def load_lint_script():
    spec = importlib.util.spec_from_file_location("lint_script", REPO_ROOT / "calibration" / "lint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def model_files(tmp_path):
    good, broken = tmp_path / "good.onnx", tmp_path / "broken.onnx"
    onnx.save(qdq_conv_model(), str(good))
    model = qdq_conv_model()
    nonzero_zero_point(model)
    onnx.save(model, str(broken))
    return good, broken


def test_cli_passes_a_good_model(model_files, capsys):
    main = load_lint_script().main
    good, _ = model_files
    assert main([str(good)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"OK: {good} passes the tensorrt10 Q/DQ rules (2 QuantizeLinear, 3 DequantizeLinear)"
    ]


def test_cli_lists_violations(model_files, capsys):
    main = load_lint_script().main
    _, broken = model_files
    assert main([str(broken), "--target", "tensorrt11"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("zero-point: q_input: QuantizeLinear q_input: zero point input_zero_point holds [3]")
    assert lines[1].startswith("zero-point: dq_input: DequantizeLinear dq_input:")
    assert lines[2] == f"{broken}: 2 violations of the tensorrt11 Q/DQ rules"

    assert main([str(broken), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert (result["path"], result["target"], result["passed"]) == (str(broken), "tensorrt10", False)
    assert [(v["rule"], v["node"]) for v in result["violations"]] == [
        ("zero-point", "q_input"),
        ("zero-point", "dq_input"),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["good.onnx", "--target", "tensorrt9"], "error: unknown lint target 'tensorrt9'; valid targets: tensorrt10"),
        (["missing.onnx"], "error: model file not found: "),
        (["text.onnx"], "error: "),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(model_files, tmp_path, capsys, args, message):
    main = load_lint_script().main
    (tmp_path / "text.onnx").write_text("not an onnx model\n")
    assert main([str(tmp_path / args[0]), *args[1:]]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith(message)


def test_cli_without_onnx_names_the_extra(model_files, monkeypatch, capsys):
    main = load_lint_script().main
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.delitem(sys.modules, "edge_facenet.quantization.lint")
    assert main([str(model_files[0])]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "pip install 'edge-facenet[calibrate]'" in line
