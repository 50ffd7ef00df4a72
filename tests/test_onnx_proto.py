import numpy as np
import onnxruntime
import pytest

from edge_facenet._onnx_proto import make_dims_symbolic


def test_yunet_runs_at_other_sizes_after_the_edit(detector_path):
    original = detector_path.read_bytes()
    edited = make_dims_symbolic(original, {"input": {2: "height", 3: "width"}, "cls_8": {1: "cells"}})
    session = onnxruntime.InferenceSession(edited, providers=["CPUExecutionProvider"])
    (declared,) = session.get_inputs()
    assert declared.shape == [1, 3, "height", "width"]
    (cls_8,) = session.run(["cls_8"], {"input": np.zeros((1, 3, 96, 160), np.float32)})
    assert cls_8.shape == (1, (96 // 8) * (160 // 8), 1)

    # The weights are untouched: at the original size the outputs are identical.
    image = np.random.default_rng(0).uniform(0, 255, (1, 3, 640, 640)).astype(np.float32)
    before = onnxruntime.InferenceSession(original, providers=["CPUExecutionProvider"]).run(None, {"input": image})
    after = session.run(None, {"input": image})
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


def test_matches_the_onnx_package_edit_byte_for_byte(detector_path):
    onnx = pytest.importorskip("onnx")
    original = detector_path.read_bytes()
    reference = onnx.load_from_string(original)
    for axis, name in ((2, "height"), (3, "width")):
        reference.graph.input[0].type.tensor_type.shape.dim[axis].dim_param = name
    del reference.graph.value_info[:]
    edited = make_dims_symbolic(original, {"input": {2: "height", 3: "width"}})
    assert edited == reference.SerializeToString()


def test_unknown_name_and_garbage_raise(detector_path):
    with pytest.raises(ValueError, match="no graph input or output named nope"):
        make_dims_symbolic(detector_path.read_bytes(), {"nope": {0: "n"}})
    with pytest.raises(ValueError, match="protobuf"):
        make_dims_symbolic(b"\x3a\xff\xff\xff\x7f", {"input": {0: "n"}})
