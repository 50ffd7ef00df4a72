"""Check an INT8 Q/DQ ONNX model against what TensorRT's explicit quantization accepts, without TensorRT.

TensorRT builds INT8 engines from QuantizeLinear/DequantizeLinear pairs placed in the graph (TensorRT developer guide,
explicit quantization); TensorRT 11 keeps no other INT8 path. Its ONNX parser accepts fewer Q/DQ graphs than ONNX
Runtime runs, so a model that passes on the CPU can still fail to parse or build on a Jetson. The rules:

=======================  ===============================================================================
rule                     requirement
=======================  ===============================================================================
dtype                    the quantized type (the zero point's type) is int8
missing-zero-point       every QuantizeLinear has a zero point (without one ONNX quantizes to uint8)
int32-dequantize         no DequantizeLinear of int32 data: quantized biases stay float
zero-point               zero points are constants, all 0 (symmetric quantization)
scale-constant           scales are initializers or Constant outputs
scale-dtype              scales are float32 or float16
scale-value              scales are finite and positive
scale-shape              a scale is a scalar or 1-D, and a per-channel one has one value per channel
activation-per-channel   Q/DQ of activations are per tensor; per-channel scales are for constant weights
weight-axis              a per-channel weight is quantized on the output-channel axis of its consumer:
                         Conv 0, ConvTranspose 1, Gemm 0 (transB=1) or 1, MatMul the last axis
weight-consumer          a per-channel weight feeds only the weight input of those operators
dangling-quantize        each QuantizeLinear feeds DequantizeLinear nodes only (Q->DQ pairs)
opset                    the ai.onnx opset is one the target's parser reads
domain                   every operator is from the ai.onnx domain
no-qdq                   the model has Q/DQ nodes at all
=======================  ===============================================================================
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

logger = logging.getLogger(__name__)

QUANTIZE, DEQUANTIZE = "QuantizeLinear", "DequantizeLinear"
DEFAULT_TARGET = "tensorrt10"

_DEFAULT_DOMAINS = ("", "ai.onnx")
_SCALE_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16)


@dataclass(frozen=True)
class Violation:
    """One broken rule.

    Attributes:
        rule: Short rule id, e.g. ``"zero-point"`` (the table in the module docstring lists them).
        node: Name of the offending node (its first output when it has no name), or ``""`` for the whole model.
        message: One line: what was found and what is required.
    """

    rule: str
    node: str
    message: str


@dataclass(frozen=True)
class LintTarget:
    """A TensorRT ONNX parser the rules are checked for.

    Attributes:
        name: Id used on the command line, e.g. ``"tensorrt10"``.
        description: The TensorRT release(s) it stands for.
        min_opset: Lowest ai.onnx opset the parser reads.
        max_opset: Highest ai.onnx opset the parser reads.
    """

    name: str
    description: str
    min_opset: int
    max_opset: int


TARGETS: dict[str, LintTarget] = {
    target.name: target
    for target in (
        # onnx-tensorrt docs/operators.md, 10.0 header kept on the 10.x branches (its 10.1-10.3 changelog: no opset)
        LintTarget("tensorrt10", "TensorRT 10.3 (JetPack 6)", 9, 20),
        # onnx-tensorrt docs/operators.md of release 10.15; opset 25 arrives in 11.5 (onnx-tensorrt 11.5 GA notes)
        LintTarget("tensorrt11", "TensorRT 11.x", 9, 24),
    )
}


def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Read an ONNX model file.

    Args:
        path: The ``.onnx`` file.

    Returns:
        The model, external data included.

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the file is not an ONNX model.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf and onnx raise several types for unreadable files
        raise ValueError(f"{path} is not an ONNX model: {_first_line(error)}") from None
    if model.ir_version == 0 or not model.HasField("graph"):
        raise ValueError(f"{path} is not an ONNX model: it has no IR version or no graph")
    return model


def lint_qdq_model(model: onnx.ModelProto | str | os.PathLike[str], target: str = DEFAULT_TARGET) -> list[Violation]:
    """Check an explicitly quantized (Q/DQ) model against the rules of a TensorRT ONNX parser.

    Args:
        model: The model, or the path of its ``.onnx`` file.
        target: A key of :data:`TARGETS`.

    Returns:
        Every violation found, in graph order after the model-level ones; an empty list when the model passes.

    Raises:
        ValueError: For an unknown target, or a file that is not an ONNX model.
        FileNotFoundError: When the model file does not exist.
        TypeError: When ``model`` is neither a ModelProto nor a path.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown lint target {target!r}; valid targets: {', '.join(sorted(TARGETS))}")
    if not isinstance(model, onnx.ModelProto):
        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be an onnx.ModelProto or a path, got {type(model).__name__}")
        model = load_model(model)

    graph = _Graph(model.graph)
    violations = _check_opset(model, TARGETS[target])
    if not any(node.op_type in (QUANTIZE, DEQUANTIZE) for node in graph.nodes):
        violations.append(Violation("no-qdq", "", "no Q/DQ nodes: this is not an explicitly quantized model"))
        return violations

    # TODO: If/Loop/Scan subgraphs are not checked; edge_facenet embedders have none, other models may.
    for node in graph.nodes:
        if node.domain not in _DEFAULT_DOMAINS:
            violations.append(_foreign_domain(node))
        elif node.op_type in (QUANTIZE, DEQUANTIZE):
            violations.extend(_check_qdq(node, graph))
            if node.op_type == QUANTIZE:
                violations.extend(_check_pairing(node, graph))
    logger.debug("Q/DQ lint for %s: %d violations", target, len(violations))
    return violations


class _Graph:
    """Look-up tables over a GraphProto: constants, producers, consumers and declared element types."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.nodes = list(graph.node)
        self.outputs = {value.name for value in graph.output}
        self.constants: dict[str, TensorProto] = {tensor.name: tensor for tensor in graph.initializer}
        self.producers: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
        self.elem_types = {
            value.name: value.type.tensor_type.elem_type
            for value in (*graph.input, *graph.value_info, *graph.output)
            if value.type.HasField("tensor_type")
        }
        for node in self.nodes:
            for name in node.output:
                self.producers[name] = node
            for index, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, index))
            if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS:
                tensor = _constant_value(node)
                if tensor is not None:
                    self.constants[node.output[0]] = tensor

    def array(self, name: str) -> np.ndarray | None:
        tensor = self.constants.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def elem_type(self, name: str) -> int | None:
        if name in self.constants:
            return self.constants[name].data_type
        producer = self.producers.get(name)
        if producer is not None and producer.op_type == QUANTIZE and producer.domain in _DEFAULT_DOMAINS:
            return _quantized_type(producer, self)
        return self.elem_types.get(name) or None

    def weight_shape(self, node: onnx.NodeProto) -> tuple[int, ...] | None:
        """Shape of the constant a Q/DQ node quantizes (directly, or through the Q before a DQ), else None."""
        source = node.input[0]
        producer = self.producers.get(source)
        if node.op_type == DEQUANTIZE and producer is not None and producer.op_type == QUANTIZE:
            source = producer.input[0]
        tensor = self.constants.get(source)
        return None if tensor is None else tuple(tensor.dims)


def _check_opset(model: onnx.ModelProto, target: LintTarget) -> list[Violation]:
    versions = [entry.version for entry in model.opset_import if entry.domain in _DEFAULT_DOMAINS]
    supported = f"{target.description} parses ai.onnx opsets {target.min_opset} to {target.max_opset}"
    if not versions:
        return [Violation("opset", "", f"the model imports no ai.onnx opset; {supported}")]
    if not target.min_opset <= versions[0] <= target.max_opset:
        return [Violation("opset", "", f"the model uses ai.onnx opset {versions[0]}; {supported}")]
    return []


def _violation(rule: str, node: onnx.NodeProto, text: str) -> Violation:
    return Violation(rule, _name(node), f"{node.op_type} {_name(node)}: {text}")


def _foreign_domain(node: onnx.NodeProto) -> Violation:
    hint = " (ONNX Runtime: leave UseQDQContribOps off)" if node.op_type in (QUANTIZE, DEQUANTIZE) else ""
    text = f"operator of domain {node.domain}; TensorRT's ONNX parser reads ai.onnx operators only{hint}"
    return _violation("domain", node, text)


def _check_qdq(node: onnx.NodeProto, graph: _Graph) -> list[Violation]:
    scale_name = node.input[1]
    zero_point_name = node.input[2] if len(node.input) > 2 else ""
    found = []

    quantized_type = _quantized_type(node, graph)
    if node.op_type == DEQUANTIZE and quantized_type == TensorProto.INT32:
        # A quantized bias: the node has to go, so its scale and axis do not matter.
        text = (
            f"dequantizes int32 {node.input[0]}; TensorRT's ONNX parser rejects int32 DequantizeLinear: leave biases "
            "in float (ONNX Runtime: QuantizeBias=False)"
        )
        return [_violation("int32-dequantize", node, text)]
    if node.op_type == QUANTIZE and not zero_point_name:
        text = "no zero point, so ONNX quantizes to uint8; give it an int8 zero point of 0"
        found.append(_violation("missing-zero-point", node, text))
    elif quantized_type is not None and quantized_type != TensorProto.INT8:
        text = f"quantized type {_type_name(quantized_type)} (the zero point's type); TensorRT INT8 needs int8"
        found.append(_violation("dtype", node, text))

    if zero_point_name:
        zero_point = graph.array(zero_point_name)
        if zero_point is None:
            found.append(_violation("zero-point", node, f"zero point {zero_point_name} is not a constant 0"))
        elif np.any(zero_point != 0):
            values = sorted({int(value) for value in zero_point.ravel()})[:4]
            text = f"zero point {zero_point_name} holds {values}; TensorRT needs symmetric quantization, zero points 0"
            found.append(_violation("zero-point", node, text))

    scale_tensor = graph.constants.get(scale_name)
    if scale_tensor is None:
        text = f"scale {scale_name} is computed in the graph; it must be an initializer or a Constant"
        found.append(_violation("scale-constant", node, text))
        return found
    if scale_tensor.data_type not in _SCALE_TYPES:
        text = f"scale {scale_name} is {_type_name(scale_tensor.data_type)}; it must be float32 or float16"
        found.append(_violation("scale-dtype", node, text))
    scale = numpy_helper.to_array(scale_tensor).astype(np.float64)
    bad = ~np.isfinite(scale) | (scale <= 0)
    if np.any(bad):
        text = (
            f"scale {scale_name} has {int(bad.sum())} of {scale.size} values not finite and positive "
            f"(e.g. {float(scale[bad][0]):.3g}); every scale must be finite and > 0"
        )
        found.append(_violation("scale-value", node, text))

    if scale.size == 1 and scale.ndim <= 1:
        return found
    if scale.ndim != 1:
        text = (
            f"scale {scale_name} has shape {list(scale.shape)}; it must be a scalar (per tensor) or 1-D (per "
            "channel): block quantization is not supported"
        )
        found.append(_violation("scale-shape", node, text))
        return found
    weight_shape = graph.weight_shape(node)
    if weight_shape is None:
        text = (
            f"activation {node.input[0]} has a per-channel scale of {scale.size} values; activations must be "
            "quantized per tensor (a scalar scale)"
        )
        found.append(_violation("activation-per-channel", node, text))
        return found
    found.extend(_check_weight_axis(node, graph, weight_shape, scale.size))
    return found


def _check_weight_axis(node: onnx.NodeProto, graph: _Graph, shape: tuple[int, ...], num_scales: int) -> list[Violation]:
    weight, axis, rank = node.input[0], _attribute(node, "axis", 1), len(shape)
    if not -rank <= axis < rank:
        return [_violation("weight-axis", node, f"axis {axis} is outside weight {weight} of rank {rank}")]
    axis %= rank

    found = []
    if num_scales != shape[axis]:
        text = (
            f"{num_scales} scales for axis {axis} of weight {weight} with shape {list(shape)}; it needs "
            f"{shape[axis]}, one per channel"
        )
        found.append(_violation("scale-shape", node, text))
    if node.op_type == QUANTIZE:
        return found  # the DequantizeLinear it feeds is checked against the weight's consumer

    for consumer, index in graph.consumers.get(node.output[0], []):
        required = _output_channel_axis(consumer, index, rank)
        if required is None:
            text = (
                f"per-channel weight {weight} feeds input {index} of {consumer.op_type} {_name(consumer)}; "
                "per-channel scales are allowed only on the weight input of Conv, ConvTranspose, Gemm and MatMul"
            )
            found.append(_violation("weight-consumer", node, text))
        elif required != axis:
            text = (
                f"weight {weight} is quantized per channel on axis {axis}; {consumer.op_type} {_name(consumer)} "
                f"needs its output-channel axis {required}"
            )
            found.append(_violation("weight-axis", node, text))
    return found


def _check_pairing(node: onnx.NodeProto, graph: _Graph) -> list[Violation]:
    output = node.output[0]
    required = "TensorRT explicit quantization needs every QuantizeLinear to feed DequantizeLinear nodes only"
    consumers = graph.consumers.get(output, [])
    found = []
    if output in graph.outputs:
        found.append(_violation("dangling-quantize", node, f"{output} is a graph output; {required}"))
    elif not consumers:
        found.append(_violation("dangling-quantize", node, f"{output} is unused; {required}"))
    for consumer, _ in consumers:
        if consumer.op_type != DEQUANTIZE or consumer.domain not in _DEFAULT_DOMAINS:
            text = f"{output} feeds {consumer.op_type} {_name(consumer)}; {required}"
            found.append(_violation("dangling-quantize", node, text))
    return found


def _quantized_type(node: onnx.NodeProto, graph: _Graph) -> int | None:
    """The element type a Q produces or a DQ reads: the zero point's type, else ONNX's default for the node."""
    zero_point_name = node.input[2] if len(node.input) > 2 else ""
    if zero_point_name:
        return graph.elem_type(zero_point_name)
    if node.op_type == QUANTIZE:
        return TensorProto.UINT8
    return graph.elem_type(node.input[0])


def _output_channel_axis(consumer: onnx.NodeProto, index: int, rank: int) -> int | None:
    if consumer.domain not in _DEFAULT_DOMAINS or index != 1:
        return None
    if consumer.op_type == "Conv":
        return 0
    if consumer.op_type == "ConvTranspose":
        return 1
    if consumer.op_type == "Gemm":
        return 0 if _attribute(consumer, "transB", 0) else 1
    if consumer.op_type == "MatMul":
        return rank - 1
    return None


def _constant_value(node: onnx.NodeProto) -> TensorProto | None:
    for attribute in node.attribute:
        if attribute.name == "value":
            return attribute.t
        if attribute.name in ("value_float", "value_floats"):
            return numpy_helper.from_array(np.asarray(helper.get_attribute_value(attribute), np.float32))
        if attribute.name in ("value_int", "value_ints"):
            return numpy_helper.from_array(np.asarray(helper.get_attribute_value(attribute), np.int64))
    return None


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    for attribute in node.attribute:
        if attribute.name == name:
            return int(helper.get_attribute_value(attribute))
    return default


def _name(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else node.op_type)


def _type_name(elem_type: int) -> str:
    names = {TensorProto.FLOAT: "float32", TensorProto.DOUBLE: "float64"}
    return names.get(elem_type) or TensorProto.DataType.Name(elem_type).lower()


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
