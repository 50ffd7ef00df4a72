"""Model checkpoints: the weights of an embedder with what is needed to rebuild it."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edge_facenet._files import atomic_output, sha256_file
from edge_facenet.training.registry import build_model

CHECKPOINT_FORMAT = "edge_facenet.checkpoint/1"


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        arch: Architecture name.
        embedding_size: Embedding length.
        state_dict: The model's weights.
        metadata: Model facts that go into the ONNX metadata (e.g. ``threshold``, ``mean``, ``std``).
        sha256: sha256 of the checkpoint file.
        extra: Everything else the file holds (training state).
    """

    arch: str
    embedding_size: int
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, Any]
    sha256: str
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | PathLike[str],
    model: nn.Module,
    arch: str,
    metadata: dict[str, Any] | None = None,
    **extra: Any,
) -> str:
    """Write a checkpoint atomically.

    Args:
        path: Destination file.
        model: The embedder; its ``embedding_size`` attribute is recorded.
        arch: Its architecture name.
        metadata: Model facts for the ONNX metadata, such as ``{"threshold": 0.62}``.
        **extra: Further values to store: tensors, numbers, strings and lists or dicts of them (what
            ``torch.load(weights_only=True)`` reads back).

    Returns:
        The sha256 of the written file.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "embedding_size": int(model.embedding_size),
        "model": model.state_dict(),
        "metadata": dict(metadata or {}),
        **extra,
    }
    with atomic_output(path) as temporary:
        torch.save(payload, temporary)
    return sha256_file(path)


def load_checkpoint(path: str | PathLike[str]) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (no arbitrary code is unpickled).

    Raises:
        FileNotFoundError: When the file does not exist.
        ValueError: When the file is not an edge_facenet checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError) as error:
        raise ValueError(f"{path} is not a readable checkpoint: {str(error).splitlines()[0]}") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an edge_facenet checkpoint (expected format {CHECKPOINT_FORMAT!r})")
    known = ("format", "arch", "embedding_size", "model", "metadata")
    return Checkpoint(
        arch=payload["arch"],
        embedding_size=int(payload["embedding_size"]),
        state_dict=payload["model"],
        metadata=dict(payload.get("metadata", {})),
        sha256=sha256_file(path),
        extra={key: value for key, value in payload.items() if key not in known},
    )


def model_from_checkpoint(checkpoint: Checkpoint) -> nn.Module:
    """Build the checkpoint's architecture and load its weights.

    Raises:
        ValueError: When the weights do not fit the architecture; the message names the first mismatches.
    """
    model = build_model(checkpoint.arch, checkpoint.embedding_size)
    try:
        model.load_state_dict(checkpoint.state_dict, strict=True)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise ValueError(f"checkpoint weights do not fit {checkpoint.arch}: {' '.join(lines[1:3])[:300]}") from None
    return model
