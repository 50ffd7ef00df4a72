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
PRECISIONS = ("auto", "fp32", "int8")
MODEL_ENV_VAR = "EDGE_FACENET_MODEL"
MODELS_DIR = Path(__file__).parent / "models"
# The package's embedders: nn4_small2 and its INT8 Q/DQ calibration (edge_facenet/models/MODEL_CARD.md).
DEFAULT_MODELS = {"fp32": MODELS_DIR / "nn4_small2.onnx", "int8": MODELS_DIR / "nn4_small2_int8.onnx"}
DEFAULT_MODEL = DEFAULT_MODELS["fp32"]
ENGINE_SUFFIXES = (".engine", ".plan")
# ONNX Runtime runs an int8 Q/DQ model with its integer kernels only where each QuantizeLinear has one consumer; its
# common-subexpression pass would merge the dedicated Q/DQ pairs of a calibrated model back into shared ones.
KEEP_QDQ_PAIRS = ["CommonSubexpressionElimination"]


def resolve_embedder_model(model: str | PathLike[str] | None, precision: str = "fp32") -> Path:
    """Find the embedder's model file: ``model``, then ``$EDGE_FACENET_MODEL``, then the package's model.

    Args:
        model: An ONNX file or a TensorRT engine; None looks further.
        precision: Which of the package's models (``fp32`` or ``int8``) is the last resort.

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
    default = DEFAULT_MODELS[precision]
    if default.is_file():
        return default
    raise FileNotFoundError(
        f"the package's default embedder {default} is missing (an incomplete install?): reinstall edge-facenet, "
        f"pass model=PATH (an ONNX file from export/export_onnx.py) or set ${MODEL_ENV_VAR}"
    )


class Embedder:
    """Runs an edge_facenet embedder model on aligned face crops.

    Preprocessing (crop size, channel order, mean and std) comes from the model's own metadata.

    Args:
        model: ONNX file or TensorRT engine (``.engine``, built by export/build_engine.py); None resolves
            ``$EDGE_FACENET_MODEL`` or the package's model of the chosen precision.
        backend: ``"onnxruntime"``; ``"tensorrt"`` for a native engine; ``"auto"`` picks TensorRT for an engine
            file, else ONNX Runtime with the CUDA provider first when this build has it.
        precision: Which of the package's models to use: ``"fp32"``, ``"int8"`` (INT8 Q/DQ, faster on CPUs with
            VNNI), or ``"auto"``: INT8 when ONNX Runtime runs on the CPU only, FP32 otherwise. With an explicit
            ``model``, a precision other than ``"auto"`` must match the model's.
        providers: ONNX Runtime execution providers in order of preference (overrides what ``backend`` picks),
            e.g. ``["TensorrtExecutionProvider", "CUDAExecutionProvider"]``.
        threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice).

    Raises:
        FileNotFoundError: When the model file cannot be found.
        ValueError: For an unknown backend or precision, an unavailable provider, a file ONNX Runtime cannot load, a
            model without edge_facenet metadata or whose metadata disagrees with its input and output shapes, or a
            model of another precision than asked for.
        ImportError: For ``backend="tensorrt"`` without TensorRT; the message names the extra to install.
    """

    def __init__(
        self,
        model: str | PathLike[str] | None = None,
        *,
        backend: str = "auto",
        precision: str = "auto",
        providers: list[str] | None = None,
        threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown embedder backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; valid precisions: {', '.join(PRECISIONS)}")
        if providers is None and backend == "auto" and "CUDAExecutionProvider" in available_providers():
            providers = ["CUDAExecutionProvider"]
        on_cpu_only = not providers or providers == ["CPUExecutionProvider"]
        default_precision = precision if precision != "auto" else ("int8" if on_cpu_only else "fp32")
        self.model_path = resolve_embedder_model(model, default_precision)
        is_engine = self.model_path.suffix in ENGINE_SUFFIXES
        if backend == "tensorrt" and not is_engine:
            raise ValueError(
                f"backend='tensorrt' runs TensorRT engines; {self.model_path} is not one: build it on this device with "
                "export/build_engine.py, or use ONNX Runtime's TensorrtExecutionProvider through providers="
            )
        if is_engine and backend == "onnxruntime":
            raise ValueError(f"{self.model_path} is a TensorRT engine: use backend='tensorrt' (or 'auto')")

        self._engine = None
        if is_engine:
            from edge_facenet.trt.runtime import TensorRTEngine

            self._engine = TensorRTEngine(self.model_path)
            self.metadata = self._engine.metadata
            # The engine computes the embeddings of the ONNX file it was built from: galleries enrolled with that
            # file stay valid.
            self.fingerprint = self._engine.info.onnx_sha256
        else:
            self._session = create_session(
                self.model_path, providers=providers, threads=threads, disabled_optimizers=KEEP_QDQ_PAIRS
            )
            self.metadata = ModelMetadata.from_props(
                dict(self._session.get_modelmeta().custom_metadata_map), source=str(self.model_path)
            )
            self.fingerprint = sha256_file(self.model_path)
            (model_input,) = self._session.get_inputs()
            model_output = self._session.get_outputs()[0]
            _check_shapes(self.model_path, self.metadata, model_input.shape, model_output.shape)
            self._input_name = model_input.name
            self._output_name = model_output.name
        if precision != "auto" and self.metadata.precision != precision:
            raise ValueError(f"{self.model_path} is a {self.metadata.precision} model, not {precision}")
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
    def backend(self) -> str:
        """``"tensorrt"`` for a native engine, else ``"onnxruntime"``."""
        return "tensorrt" if self._engine is not None else "onnxruntime"

    @property
    def providers(self) -> list[str]:
        """The ONNX Runtime execution providers the session runs on (``["TensorRT"]`` for a native engine)."""
        if self._engine is not None:
            return ["TensorRT"]
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
        if self._engine is not None:
            return self._engine.run(blob)
        (embeddings,) = self._session.run([self._output_name], {self._input_name: blob})
        return np.asarray(embeddings, dtype=np.float32)


def _check_shapes(path: Path, metadata: ModelMetadata, input_shape: list, output_shape: list) -> None:
    # Metadata that disagrees with the graph would otherwise fail inside ONNX Runtime at the first embed (input size),
    # or fill galleries with vectors of another length than they declare (embedding size). Symbolic dimensions pass.
    def agree(declared: list, expected: tuple[int, ...]) -> bool:
        return len(declared) == len(expected) and all(
            not isinstance(have, int) or have == want for have, want in zip(declared[1:], expected[1:], strict=True)
        )

    height, width = metadata.input_size
    if not agree(input_shape, (-1, 3, height, width)):
        raise ValueError(
            f"{path}: its metadata says input_size [{height}, {width}] (an N x 3 x {height} x {width} input), but the "
            f"model's input is {input_shape}"
        )
    if not agree(output_shape, (-1, metadata.embedding_size)):
        raise ValueError(
            f"{path}: its metadata says embedding_size {metadata.embedding_size}, but the model's output is "
            f"{output_shape}"
        )
