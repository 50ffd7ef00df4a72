import pytest

from edge_facenet.metadata import REQUIRED_KEYS, ModelMetadata, read_metadata


def make(**fields):
    defaults = {"arch": "nn4_small2", "input_size": (96, 96), "embedding_size": 128}
    return ModelMetadata(**{**defaults, **fields})


def test_props_round_trip_keeps_every_field():
    metadata = make(threshold=0.61, checkpoint_sha256="ab" * 32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    props = metadata.to_props()
    assert all(isinstance(value, str) for value in props.values())
    assert ModelMetadata.from_props(props) == metadata


def test_threshold_is_written_only_when_known():
    assert "threshold" not in make().to_props()
    assert make().is_random


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_key_is_named(key):
    props = make().to_props()
    del props[key]
    with pytest.raises(ValueError, match=key):
        ModelMetadata.from_props(props, source="m.onnx")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("input_size", "96"),
        ("input_size", "[96, 96, 3]"),
        ("mean", "[0, 0]"),
        ("std", "[1, 0, 1]"),
        ("channel_order", "GRB"),
        ("embedding_size", "many"),
        ("alignment_template", "no_such_template"),
        ("checkpoint_sha256", "1234"),
        ("threshold", "1.5"),
        ("metadata_version", "99"),
    ],
)
def test_invalid_value_raises_value_error(key, value):
    props = make().to_props()
    props[key] = value
    with pytest.raises(ValueError, match=r"m\.onnx"):
        ModelMetadata.from_props(props, source="m.onnx")


def test_read_metadata_rejects_missing_and_non_onnx_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothing\.onnx"):
        read_metadata(tmp_path / "nothing.onnx")
    fake = tmp_path / "fake.onnx"
    fake.write_text("not a model")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        read_metadata(fake)
