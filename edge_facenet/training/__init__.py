"""PyTorch side of edge_facenet: the embedder family, checkpoints, summaries and ONNX export.

The models, losses, trainer and export need torch (``pip install 'edge-facenet[train]'``); the runtime never imports
this package. Preparing training crops (:mod:`edge_facenet.training.data`, ``train/prepare.py``) and the
augmentations need only the runtime's numpy and OpenCV, so this package imports torch lazily: on first use of
:func:`build_model`, :func:`list_models` or :data:`EMBEDDING_SIZES`, or by importing a module that needs it.
"""

from __future__ import annotations

from edge_facenet._optional import require

__all__ = ["EMBEDDING_SIZES", "build_model", "list_models"]


def __getattr__(name: str) -> object:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require("torch", "train")
    from edge_facenet.training import registry

    return getattr(registry, name)
