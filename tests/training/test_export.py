import json
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from edge_facenet import blob_from_crops, read_metadata
from edge_facenet._files import sha256_file
from edge_facenet.training import build_model
from edge_facenet.training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from edge_facenet.training.export import ParityError, export_onnx, metadata_for
from tests.conftest import REPO_ROOT

METADATA_KEYS = {
    "arch",
    "input_size",
    "channel_order",
    "mean",
    "std",
    "embedding_size",
    "alignment_template",
    "checkpoint_sha256",
}


def run_script(*args):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)


@pytest.mark.parametrize(("arch", "embedding_size"), [("nn4_small2", 128), ("nn4", 64), ("nns2", 512)])
def test_export_is_valid_onnx_with_dynamic_batch_and_parity(tmp_path, arch, embedding_size):
    torch.manual_seed(0)
    model = build_model(arch, embedding_size)
    path = tmp_path / f"{arch}.onnx"
    result = export_onnx(model, path, metadata_for(model, arch))

    assert result.max_abs_diff <= 1e-4
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (graph_input,) = proto.graph.input
    (graph_output,) = proto.graph.output
    assert (graph_input.name, graph_output.name) == ("input", "embedding")
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    dims = graph_input.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 96, 96]

    # A batch size the export never traced, compared against PyTorch on real-scale inputs.
    crops = np.random.default_rng(1).integers(0, 256, (5, 96, 96, 3), dtype=np.uint8)
    blob = blob_from_crops(crops, result.metadata)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (embeddings,) = session.run(["embedding"], {"input": blob})
    assert embeddings.shape == (5, embedding_size)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(blob)).numpy()
    np.testing.assert_allclose(embeddings, expected, atol=1e-4)


def test_l2_normalisation_is_inside_the_graph(tmp_path):
    model = build_model("nns2")
    path = tmp_path / "m.onnx"
    export_onnx(model, path, metadata_for(model, "nns2"))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (embeddings,) = session.run(
        ["embedding"], {"input": np.random.default_rng(0).normal(size=(3, 3, 96, 96)).astype(np.float32) * 50}
    )
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_checkpoint_export_records_its_hash_and_threshold(tmp_path):
    torch.manual_seed(3)
    trained = build_model("nns2", 64)
    checkpoint_path = tmp_path / "model.pt"
    digest = save_checkpoint(checkpoint_path, trained, "nns2", metadata={"threshold": 0.55}, epoch=7)
    assert digest == sha256_file(checkpoint_path)

    checkpoint = load_checkpoint(checkpoint_path)
    assert (checkpoint.arch, checkpoint.embedding_size, checkpoint.extra) == ("nns2", 64, {"epoch": 7})
    model = model_from_checkpoint(checkpoint)
    for name, tensor in trained.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor)

    path = tmp_path / "m.onnx"
    export_onnx(model, path, metadata_for(model, checkpoint.arch, checkpoint))
    metadata = read_metadata(path)
    assert metadata.checkpoint_sha256 == digest
    assert metadata.threshold == pytest.approx(0.55)
    assert (metadata.arch, metadata.embedding_size) == ("nns2", 64)


def test_failed_parity_writes_no_file(tmp_path):
    model = build_model("nns2")
    path = tmp_path / "m.onnx"
    with pytest.raises(ParityError, match="not written"):
        export_onnx(model, path, metadata_for(model, "nns2"), tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_export_cli_prints_parity_and_writes_metadata(tmp_path):
    output = tmp_path / "m.onnx"
    result = run_script("export/export_onnx.py", "--arch", "nn4_small2", "--output", str(output), "--json")
    assert result.returncode == 0, result.stderr
    assert "RANDOM weights" in result.stderr
    report = json.loads(result.stdout)
    assert report["max_abs_diff"] <= 1e-4
    props = {p.key: p.value for p in onnx.load(str(output)).metadata_props}
    assert props.keys() >= METADATA_KEYS
    assert props["arch"] == "nn4_small2" and props["checkpoint_sha256"] == "random"
    assert json.loads(props["input_size"]) == [96, 96] and props["channel_order"] == "RGB"
    assert read_metadata(output).embedding_size == 128


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "resnet50"], "unknown architecture 'resnet50'"),
        ([], "give --arch"),
        (["--checkpoint", "missing.pt"], "checkpoint not found"),
        (["--arch", "nns2", "--threshold", "2"], "threshold"),
    ],
)
def test_export_cli_bad_input_gives_one_line_error(tmp_path, args, message):
    result = run_script("export/export_onnx.py", *args, "--output", str(tmp_path / "m.onnx"))
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"\x00" * 64)
    result = run_script("export/export_onnx.py", "--checkpoint", str(bogus), "--output", str(tmp_path / "m.onnx"))
    assert result.returncode == 1
    assert "not a readable checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_summary_cli_reports_every_architecture():
    result = run_script("train/summary.py", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["arch"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["nn4_small2"]["parameters"] == 3_733_968
    assert rows["nn4_small2"]["input_size"] == [96, 96]
    assert {"nn4", "nns2"} <= rows.keys()
