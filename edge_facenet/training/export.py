"""ONNX export of an embedder, with its metadata inside, a full ONNX check and an ONNX Runtime parity check."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_facenet._files import atomic_output, sha256_file
from edge_facenet._optional import require
from edge_facenet.metadata import RANDOM_CHECKPOINT, ModelMetadata
from edge_facenet.training.checkpoint import Checkpoint

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "embedding"
PARITY_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """The exported ONNX model does not reproduce the PyTorch model's output."""


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how closely ONNX Runtime matched PyTorch.

    Attributes:
        path: The ONNX file.
        sha256: Its sha256.
        metadata: The metadata written into it.
        max_abs_diff: Largest absolute difference between ONNX Runtime and PyTorch embeddings.
        parity_batches: Batch sizes the parity check ran.
    """

    path: Path
    sha256: str
    metadata: ModelMetadata
    max_abs_diff: float
    parity_batches: tuple[int, ...]


def metadata_for(model: nn.Module, arch: str, checkpoint: Checkpoint | None = None, **overrides: Any) -> ModelMetadata:
    """Collect the metadata of a model: its architecture, the checkpoint's facts, then explicit overrides.

    Args:
        model: An NN4-family embedder (its ``config.input_size`` and ``embedding_size`` are read).
        arch: Its architecture name.
        checkpoint: The checkpoint its weights came from; None for a random initialisation.
        **overrides: ModelMetadata fields to set, e.g. ``threshold=0.6``; None values are ignored.
    """
    fields: dict[str, Any] = {
        "arch": arch,
        "input_size": tuple(model.config.input_size),
        "embedding_size": int(model.embedding_size),
        "checkpoint_sha256": checkpoint.sha256 if checkpoint else RANDOM_CHECKPOINT,
    }
    if checkpoint:
        fields.update(
            {key: value for key, value in checkpoint.metadata.items() if key in ModelMetadata.__dataclass_fields__}
        )
    fields.update({key: value for key, value in overrides.items() if value is not None})
    for key in ("input_size", "mean", "std"):
        if key in fields:
            fields[key] = tuple(fields[key])
    return ModelMetadata(**fields)


def export_onnx(
    model: nn.Module,
    output: str | PathLike[str],
    metadata: ModelMetadata,
    opset: int = OPSET,
    parity_batches: tuple[int, ...] = (1, 4),
    tolerance: float = PARITY_TOLERANCE,
    seed: int = 0,
) -> ExportResult:
    """Export an embedder to ONNX with dynamic batch, embed its metadata, check it and compare it with PyTorch.

    The file appears at ``output`` only when every check passed.

    Args:
        model: The embedder; it is put in eval mode.
        output: Destination ``.onnx`` path.
        metadata: What to write into ``metadata_props``.
        opset: ONNX opset of the default domain.
        parity_batches: Batch sizes of the ONNX Runtime vs PyTorch comparison (other than the traced batch of 2,
            so that the dynamic batch dimension is exercised).
        tolerance: Largest absolute embedding difference accepted.
        seed: Seed of the random parity inputs.

    Returns:
        The export's path, hash, metadata and parity figure.

    Raises:
        onnx.checker.ValidationError: When the exported graph is not valid ONNX.
        ParityError: When ONNX Runtime differs from PyTorch by more than ``tolerance``.
    """
    onnx = require("onnx", "train")
    model = model.eval().cpu()
    height, width = metadata.input_size

    with atomic_output(output) as temporary:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated, but the torch.export one cannot produce opset 17 for this graph
            # (onnx's version converter has no 18 -> 17 adapter for reductions whose axes are inputs).
            warnings.filterwarnings(
                "ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning
            )
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\._internal")
            torch.onnx.export(
                model,
                (torch.zeros(2, 3, height, width),),
                str(temporary),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                opset_version=opset,
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                dynamo=False,
            )

        proto = onnx.load(str(temporary))
        proto.producer_name = "edge_facenet"
        proto.producer_version = metadata.producer.split()[-1]
        proto.doc_string = (
            f"{metadata.arch} face embedder: {height}x{width} {metadata.channel_order} crop -> "
            f"L2-normalised {metadata.embedding_size}-D embedding"
        )
        del proto.metadata_props[:]
        for key, value in metadata.to_props().items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(temporary))

        max_abs_diff = _parity(model, temporary, metadata, parity_batches, seed)
        logger.info("ONNX Runtime vs PyTorch: max |difference| %.3g over batches %s", max_abs_diff, parity_batches)
        if not max_abs_diff <= tolerance:
            raise ParityError(
                f"ONNX Runtime output differs from PyTorch by {max_abs_diff:.3g} (limit {tolerance:g}); "
                f"the export was not written to {output}"
            )

    return ExportResult(
        path=Path(output),
        sha256=sha256_file(output),
        metadata=metadata,
        max_abs_diff=max_abs_diff,
        parity_batches=tuple(parity_batches),
    )


def _parity(model: nn.Module, path: Path, metadata: ModelMetadata, batches: tuple[int, ...], seed: int) -> float:
    import onnxruntime

    from edge_facenet.preprocess import blob_from_crops

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    height, width = metadata.input_size
    worst = 0.0
    for batch in batches:
        # Random images through the runtime's own preprocessing, so the inputs have the scale real crops have.
        crops = rng.integers(0, 256, size=(batch, height, width, 3), dtype=np.uint8)
        blob = blob_from_crops(crops, metadata)
        (onnx_embeddings,) = session.run([OUTPUT_NAME], {INPUT_NAME: blob})
        with torch.no_grad():
            torch_embeddings = model(torch.from_numpy(blob)).numpy()
        if onnx_embeddings.shape != torch_embeddings.shape:
            raise ParityError(f"ONNX Runtime returned shape {onnx_embeddings.shape}, PyTorch {torch_embeddings.shape}")
        worst = max(worst, float(np.max(np.abs(onnx_embeddings - torch_embeddings))))
    return worst
