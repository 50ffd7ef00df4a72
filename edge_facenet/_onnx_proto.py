"""A minimal editor of ONNX protobuf bytes, so the runtime can relax a model's shapes without the onnx package.

Only what the runtime needs: replace fixed dimensions of graph inputs and outputs by named (symbolic) ones. YuNet
declares a fixed 1x3x640x640 input although its graph works at any size that is a multiple of 32; ONNX Runtime
checks the declared shapes, so the detector rewrites them once in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

# Field numbers from onnx.proto: ModelProto.graph, GraphProto.input/output/value_info, ValueInfoProto.name/type,
# TypeProto.tensor_type, TypeProto.Tensor.shape, TensorShapeProto.dim, Dimension.dim_param.
_MODEL_GRAPH, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO, _VALUE_NAME, _VALUE_TYPE = 7, 11, 12, 13, 1, 2
_TYPE_TENSOR, _TENSOR_SHAPE, _SHAPE_DIM, _DIM_PARAM = 1, 2, 1, 2
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def _read_varint(buffer: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(buffer):
            raise ValueError("truncated protobuf varint")
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buffer: bytes) -> Iterator[tuple[int, int, int, int, int]]:
    """Yield (field number, wire type, start of the field, start of the payload, end) for each field."""
    position = 0
    while position < len(buffer):
        start = position
        key, position = _read_varint(buffer, position)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, end = _read_varint(buffer, position)
            payload = position
        elif wire == _FIXED64:
            payload, end = position, position + 8
        elif wire == _LENGTH:
            length, payload = _read_varint(buffer, position)
            end = payload + length
        elif wire == _FIXED32:
            payload, end = position, position + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if end > len(buffer):
            raise ValueError("truncated protobuf field")
        yield number, wire, start, payload, end
        position = end


def _length_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LENGTH) + _varint(len(payload)) + payload


def _edit(buffer: bytes, number: int, edit: Callable[[bytes, int], bytes | None]) -> bytes:
    """Rewrite every length-delimited field ``number``; ``edit(payload, occurrence)`` returns a new payload or None."""
    out, occurrence, last = bytearray(), 0, 0
    for field_number, wire, start, payload, end in _fields(buffer):
        if field_number != number or wire != _LENGTH:
            continue
        replacement = edit(buffer[payload:end], occurrence)
        occurrence += 1
        if replacement is not None:
            out += buffer[last:start] + _length_field(number, replacement)
            last = end
    return bytes(out + buffer[last:])


def _drop(buffer: bytes, number: int) -> bytes:
    out, last = bytearray(), 0
    for field_number, _, start, _, end in _fields(buffer):
        if field_number == number:
            out += buffer[last:start]
            last = end
    return bytes(out + buffer[last:])


def _string_field(buffer: bytes, number: int) -> str | None:
    for field_number, wire, _, payload, end in _fields(buffer):
        if field_number == number and wire == _LENGTH:
            return buffer[payload:end].decode("utf-8", errors="replace")
    return None


def make_dims_symbolic(model: bytes, dims: dict[str, dict[int, str]]) -> bytes:
    """Return the model with chosen dimensions of graph inputs and outputs replaced by symbolic names.

    The graph's ``value_info`` (shapes of intermediate tensors, recorded for the old fixed size) is dropped;
    runtimes infer those shapes again.

    Args:
        model: Serialized ONNX ModelProto.
        dims: Graph input or output name -> {axis: symbolic name}, e.g. ``{"input": {2: "height", 3: "width"}}``.

    Raises:
        ValueError: When the bytes are not a model, or a named input or output is missing.
    """
    found: set[str] = set()

    def edit_value_info(value_info: bytes, _: int) -> bytes | None:
        name = _string_field(value_info, _VALUE_NAME)
        if name not in dims:
            return None
        found.add(name)
        names = dims[name]

        def edit_dim(dim: bytes, axis: int) -> bytes | None:
            return _length_field(_DIM_PARAM, names[axis].encode()) if axis in names else None

        def edit_shape(shape: bytes, __: int) -> bytes:
            return _edit(shape, _SHAPE_DIM, edit_dim)

        def edit_tensor(tensor: bytes, __: int) -> bytes:
            return _edit(tensor, _TENSOR_SHAPE, edit_shape)

        return _edit(value_info, _VALUE_TYPE, lambda type_proto, __: _edit(type_proto, _TYPE_TENSOR, edit_tensor))

    def edit_graph(graph: bytes, _: int) -> bytes:
        graph = _drop(graph, _GRAPH_VALUE_INFO)
        return _edit(_edit(graph, _GRAPH_INPUT, edit_value_info), _GRAPH_OUTPUT, edit_value_info)

    edited = _edit(model, _MODEL_GRAPH, edit_graph)
    missing = sorted(set(dims) - found)
    if missing:
        raise ValueError(f"the model has no graph input or output named {', '.join(missing)}")
    return edited
