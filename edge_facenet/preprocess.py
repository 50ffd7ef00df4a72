"""Turn aligned face crops into an embedder's input tensor, as its metadata prescribes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_facenet.metadata import ModelMetadata


def blob_from_crops(crops: Sequence[np.ndarray] | np.ndarray, metadata: ModelMetadata) -> np.ndarray:
    """Build the NCHW float32 input of an embedder from aligned BGR crops.

    Args:
        crops: BGR uint8 crops of the model's input size, as a sequence of (H, W, 3) arrays or one (N, H, W, 3) array.
        metadata: The embedder's metadata (input size, channel order, mean and std).

    Returns:
        Array of shape (N, 3, H, W), float32, with ``(pixel / 255 - mean) / std`` in the model's channel order.

    Raises:
        ValueError: When a crop is not uint8 (H, W, 3) of the model's input size, or there are no crops.
    """
    batch = np.asarray(crops) if isinstance(crops, np.ndarray) else _stack(crops)
    height, width = metadata.input_size
    if batch.ndim != 4 or batch.shape[1:] != (height, width, 3) or batch.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 BGR crops of shape (N, {height}, {width}, 3), "
            f"got a {batch.dtype} array of shape {batch.shape}"
        )
    if batch.shape[0] == 0:
        raise ValueError("expected at least one crop, got none")

    if metadata.channel_order == "RGB":
        batch = batch[..., ::-1]
    scale = np.float32(1.0 / 255.0) / np.asarray(metadata.std, dtype=np.float32)
    shift = np.asarray(metadata.mean, dtype=np.float32) / np.asarray(metadata.std, dtype=np.float32)
    blob = batch.astype(np.float32) * scale - shift
    return np.ascontiguousarray(blob.transpose(0, 3, 1, 2))


def _stack(crops: Sequence[np.ndarray]) -> np.ndarray:
    if len(crops) == 0:
        raise ValueError("expected at least one crop, got none")
    shapes = {np.shape(crop) for crop in crops}
    if len(shapes) != 1:
        raise ValueError(f"all crops must have the same shape, got {sorted(shapes)}")
    return np.stack(crops)
