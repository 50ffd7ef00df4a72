"""The metadata an embedder model carries inside its ONNX file (``metadata_props``).

Every value is a string in ONNX; lists are written as JSON. Code that runs a model reads its preprocessing,
crop size and threshold from here instead of assuming them. Schema (``metadata_version`` 1):

=====================  ===========================================================================
key                    value
=====================  ===========================================================================
metadata_version       ``1``
producer               ``edge_facenet <version>``
arch                   architecture name, e.g. ``nn4_small2``
input_size             ``[height, width]`` of the aligned crop, e.g. ``[96, 96]``
channel_order          ``RGB`` or ``BGR``: channel order of the input tensor
mean, std              three floats each, in input channel order: ``x = (pixel / 255 - mean) / std``
embedding_size         length of the L2-normalised output embedding
alignment_template     name of the five-point template (see :mod:`edge_facenet.templates`)
checkpoint_sha256      sha256 of the checkpoint the weights came from, or ``random``
precision              ``fp32`` (``int8`` for a quantised model)
threshold              optional: cosine similarity at or above which two faces are the same person
calibration_method     INT8 models: ``minmax``, ``entropy`` or ``percentile`` (calibration/calibrate.py)
calibration_faces      INT8 models: how many faces calibrated it (listed in ``<model>.calibration.json``)
fp32_sha256            INT8 models: sha256 of the FP32 model it was calibrated from
=====================  ===========================================================================
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from edge_facenet import __version__
from edge_facenet.templates import DEFAULT_TEMPLATE, get_template

METADATA_VERSION = 1
RANDOM_CHECKPOINT = "random"
CHANNEL_ORDERS = ("RGB", "BGR")
PRECISIONS = ("fp32", "fp16", "int8")
REQUIRED_KEYS = (
    "metadata_version",
    "arch",
    "input_size",
    "channel_order",
    "mean",
    "std",
    "embedding_size",
    "alignment_template",
    "checkpoint_sha256",
)

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ModelMetadata:
    """What a runtime needs to know to feed an embedder and read its output.

    Attributes:
        arch: Architecture name.
        input_size: (height, width) of the aligned face crop.
        embedding_size: Length of the output embedding.
        channel_order: ``"RGB"`` or ``"BGR"``.
        mean: Per-channel mean subtracted from ``pixel / 255``.
        std: Per-channel standard deviation that divides after the mean.
        alignment_template: Name of the five-point alignment template.
        checkpoint_sha256: sha256 of the source checkpoint, or ``"random"`` for untrained weights.
        precision: Numeric precision of the model file.
        threshold: Cosine similarity for "same person", when one has been measured.
        producer: Software that wrote the file.
    """

    arch: str
    input_size: tuple[int, int]
    embedding_size: int
    channel_order: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    alignment_template: str = DEFAULT_TEMPLATE
    checkpoint_sha256: str = RANDOM_CHECKPOINT
    precision: str = "fp32"
    threshold: float | None = None
    producer: str = field(default=f"edge_facenet {__version__}")

    def __post_init__(self) -> None:
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise ValueError(f"input_size must be (height, width) with positive sides, got {self.input_size!r}")
        if self.embedding_size < 1:
            raise ValueError(f"embedding_size must be positive, got {self.embedding_size}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {self.channel_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need three values each, got mean={self.mean!r} std={self.std!r}")
        if not all(value > 0 for value in self.std):
            raise ValueError(f"std values must be positive, got {self.std!r}")
        get_template(self.alignment_template)
        if self.checkpoint_sha256 != RANDOM_CHECKPOINT and not _SHA256.fullmatch(self.checkpoint_sha256):
            raise ValueError(
                f"checkpoint_sha256 must be 64 lowercase hex digits or 'random', got {self.checkpoint_sha256!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.threshold is not None and not (math.isfinite(self.threshold) and -1.0 <= self.threshold <= 1.0):
            raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {self.threshold!r}")

    @property
    def is_random(self) -> bool:
        """True when the weights are an untrained random initialisation."""
        return self.checkpoint_sha256 == RANDOM_CHECKPOINT

    def to_props(self) -> dict[str, str]:
        """Return the metadata as the string map stored in ONNX ``metadata_props``."""
        props = {
            "metadata_version": str(METADATA_VERSION),
            "producer": self.producer,
            "arch": self.arch,
            "input_size": json.dumps(list(self.input_size)),
            "channel_order": self.channel_order,
            "mean": json.dumps(list(self.mean)),
            "std": json.dumps(list(self.std)),
            "embedding_size": str(self.embedding_size),
            "alignment_template": self.alignment_template,
            "checkpoint_sha256": self.checkpoint_sha256,
            "precision": self.precision,
        }
        if self.threshold is not None:
            props["threshold"] = repr(float(self.threshold))
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> ModelMetadata:
        """Parse the ``metadata_props`` string map of an edge_facenet model.

        Args:
            props: Key/value strings, as read from the ONNX file.
            source: What the map came from (a path), used in error messages.

        Raises:
            ValueError: When a key is missing or a value cannot be parsed; the message names the key.
        """
        missing = [key for key in REQUIRED_KEYS if key not in props]
        if missing:
            raise ValueError(
                f"{source} lacks edge_facenet metadata ({', '.join(missing)} missing); "
                "export it with export/export_onnx.py, which writes them"
            )
        if props["metadata_version"] != str(METADATA_VERSION):
            raise ValueError(
                f"{source} has metadata_version {props['metadata_version']!r}; this edge_facenet reads version "
                f"{METADATA_VERSION}"
            )
        parsers = {"input_size": _int_pair, "embedding_size": int, "mean": _float_triple, "std": _float_triple}
        if "threshold" in props:
            parsers["threshold"] = float
        parsed = {}
        for key, parse in parsers.items():
            try:
                parsed[key] = parse(props[key])
            except (ValueError, TypeError) as error:
                raise ValueError(
                    f"{source} has invalid edge_facenet metadata: {key} {props[key]!r} cannot be read ({error})"
                ) from None
        try:
            return cls(
                arch=props["arch"],
                channel_order=props["channel_order"],
                alignment_template=props["alignment_template"],
                checkpoint_sha256=props["checkpoint_sha256"],
                precision=props.get("precision", "fp32"),
                producer=props.get("producer", "unknown"),
                **parsed,
            )
        except (ValueError, TypeError) as error:
            raise ValueError(f"{source} has invalid edge_facenet metadata: {error}") from None


def _int_pair(text: str) -> tuple[int, int]:
    values = json.loads(text)
    if not (isinstance(values, list) and len(values) == 2 and all(isinstance(v, int) for v in values)):
        raise ValueError(f"input_size must be a JSON list of two integers, got {text!r}")
    return values[0], values[1]


def _float_triple(text: str) -> tuple[float, float, float]:
    values = json.loads(text)
    if not (isinstance(values, list) and len(values) == 3 and all(isinstance(v, (int, float)) for v in values)):
        raise ValueError(f"mean and std must be JSON lists of three numbers, got {text!r}")
    return float(values[0]), float(values[1]), float(values[2])


def read_metadata(path: str | PathLike[str]) -> ModelMetadata:
    """Read the edge_facenet metadata of an ONNX model file, with ONNX Runtime (no ``onnx`` package needed).

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the file is not an ONNX model or carries no valid edge_facenet metadata.
    """
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable files
        raise ValueError(f"{path} is not a loadable ONNX model: {str(error).splitlines()[0]}") from None
    return ModelMetadata.from_props(dict(session.get_modelmeta().custom_metadata_map), source=str(path))
