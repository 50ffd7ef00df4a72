"""Face embedding: aligned crops in, L2-normalised embeddings out, one batched call per frame."""

from __future__ import annotations

import logging
import os
from os import PathLike
from pathlib import Path

import numpy as np

from edge_facenet._files import sha256_file
from edge_facenet.metadata import ModelMetadata
from edge_facenet.preprocess import blob_from_crops
from edge_facenet.session import available_providers, create_session

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorrt")
MODEL_ENV_VAR = "EDGE_FACENET_MODEL"
DEFAULT_MODEL = Path(__file__).parent / "models" / "nn4_small2.onnx"


def resolve_embedder_model(model: str | PathLike[str] | None) -> Path:
    """Find the embedder's ONNX file: ``model``, then ``$EDGE_FACENET_MODEL``, then the package's default model.

    Raises:
        FileNotFoundError: When none of them exists; the message names the ways to provide one.
    """
    if model is not None:
        path = Path(model)
        if not path.is_file():
            raise FileNotFoundError(f"embedder model not found: {path}")
        return path
    from_env = os.environ.get(MODEL_ENV_VAR)
    if from_env:
        if not Path(from_env).is_file():
            raise FileNotFoundError(f"${MODEL_ENV_VAR} names {from_env}, which does not exist")
        return Path(from_env)
    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL
    raise FileNotFoundError(
        f"the package's default embedder {DEFAULT_MODEL} is missing (an incomplete install?): reinstall edge-facenet, "
        f"pass model=PATH (an ONNX file from export/export_onnx.py) or set ${MODEL_ENV_VAR}"
    )


class Embedder:
    """Runs an edge_facenet embedder model on aligned face crops.

    Preprocessing (crop size, channel order, mean and std) comes from the model's own metadata.

    Args:
        model: ONNX file; None resolves ``$EDGE_FACENET_MODEL`` or the package's default model.
        backend: ``"onnxruntime"``; ``"auto"`` is ONNX Runtime with the CUDA provider first when this build has it.
            ``"tensorrt"`` (native engines) is not available yet.
        providers: ONNX Runtime execution providers in order of preference (overrides what ``backend`` picks),
            e.g. ``["TensorrtExecutionProvider", "CUDAExecutionProvider"]``.
        threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice).

    Raises:
        FileNotFoundError: When the model file cannot be found.
        ValueError: For an unknown backend, an unavailable provider, or a model without edge_facenet metadata.
    """

    def __init__(
        self,
        model: str | PathLike[str] | None = None,
        *,
        backend: str = "auto",
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedder backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
        if backend == "tensorrt":
            # TODO: native TensorRT engines (.engine files) arrive with the INT8/TensorRT work; until then TensorRT
            # is reachable through ONNX Runtime's TensorrtExecutionProvider.
            raise ValueError(
                "the native TensorRT backend is not available yet; use backend='onnxruntime' with "
                "providers=['TensorrtExecutionProvider'] where ONNX Runtime has it"
            )
        self.model_path = resolve_embedder_model(model)
        if providers is None and backend == "auto" and "CUDAExecutionProvider" in available_providers():
            providers = ["CUDAExecutionProvider"]
        self._session = create_session(self.model_path, providers=providers, threads=threads)
        self.metadata = ModelMetadata.from_props(
            dict(self._session.get_modelmeta().custom_metadata_map), source=str(self.model_path)
        )
        self.fingerprint = sha256_file(self.model_path)
        (model_input,) = self._session.get_inputs()
        self._input_name = model_input.name
        self._output_name = self._session.get_outputs()[0].name
        if self.metadata.is_random:
            logger.warning("%s has random weights: its embeddings do not identify anyone", self.model_path)

    @property
    def embedding_size(self) -> int:
        """Length of the embeddings."""
        return self.metadata.embedding_size

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the aligned crops the model takes."""
        return self.metadata.input_size

    @property
    def providers(self) -> list[str]:
        """The ONNX Runtime execution providers the session runs on."""
        return list(self._session.get_providers())

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """Embed aligned BGR crops in one batched call.

        Args:
            crops: (N, height, width, 3) uint8 BGR crops of the model's input size (N may be 0).

        Returns:
            (N, embedding_size) float32 unit vectors.

        Raises:
            ValueError: When the crops have the wrong shape or type.
        """
        if isinstance(crops, np.ndarray) and crops.shape == (0, *self.input_size, 3):
            return np.zeros((0, self.embedding_size), dtype=np.float32)
        blob = blob_from_crops(crops, self.metadata)
        (embeddings,) = self._session.run([self._output_name], {self._input_name: blob})
        return np.asarray(embeddings, dtype=np.float32)
