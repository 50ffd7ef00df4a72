"""PyTorch side of edge_facenet: the embedder family, checkpoints, summaries and ONNX export.

Importing this package needs torch (``pip install 'edge-facenet[train]'``); the runtime never imports it.
"""

from edge_facenet._optional import require

require("torch", "train")

from edge_facenet.training.registry import EMBEDDING_SIZES, build_model, list_models  # noqa: E402

__all__ = ["EMBEDDING_SIZES", "build_model", "list_models"]
