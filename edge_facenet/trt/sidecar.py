"""The JSON sidecar written beside every TensorRT engine (``model.engine`` -> ``model.engine.json``).

A serialized engine is opaque and tied to the TensorRT release and GPU architecture that built it. The sidecar
records both, the ONNX file it came from, the batch range of its optimisation profile, its tensor names and the
embedder's metadata, so the runtime can refuse a foreign engine with a clear message instead of a TensorRT crash.

Compatibility rule (see :func:`check_compatible`): an engine runs only under the TensorRT release that built it
(major.minor.patch equal) and on a GPU of the same compute capability. TensorRT refuses other plans unless they
were built version- or hardware-compatible, which edge_facenet does not do. The fourth, build component of a
TensorRT version is ignored: NVIDIA ships one build per patch release, and packagings disagree on whether
``tensorrt.__version__`` carries it (``10.3.0`` from JetPack and pip, ``10.3.0.30`` in the library's own log), so
comparing it would refuse matching installations. If a plan is still refused, the runtime reports that
TensorRT could not deserialize it and says to rebuild.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path

from edge_facenet._files import atomic_output
from edge_facenet.metadata import PRECISIONS, ModelMetadata

SIDECAR_VERSION = 1
SIDECAR_SUFFIX = ".json"
REBUILD_HINT = "rebuild it here with export/build_engine.py"

_SHA256 = re.compile(r"[0-9a-f]{64}")
_COMPUTE_CAPABILITY = re.compile(r"\d+\.\d+")
_RELEASE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class EngineInfo:
    """What built a TensorRT engine and what it expects.

    Attributes:
        tensorrt_version: ``tensorrt.__version__`` of the builder, e.g. ``"10.3.0"``.
        gpu_name: Name of the GPU the engine was built on.
        compute_capability: Its compute capability, ``"major.minor"``, e.g. ``"8.7"`` for Jetson Orin.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        onnx_sha256: sha256 of the ONNX file the engine was built from.
        batch: (min, opt, max) batch sizes of the optimisation profile.
        input_name: Name of the engine's input tensor, (N, 3, H, W).
        output_name: Name of the engine's output tensor, (N, embedding_size).
        metadata: The embedder's metadata (:meth:`ModelMetadata.to_props`), precision set to the engine's.
        created: When the engine was built, ISO 8601.
    """

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    onnx_sha256: str
    batch: tuple[int, int, int]
    input_name: str
    output_name: str
    metadata: dict[str, str] = field(hash=False)
    created: str

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not _COMPUTE_CAPABILITY.fullmatch(self.compute_capability):
            raise ValueError(f"compute_capability must look like '8.7', got {self.compute_capability!r}")
        if not _SHA256.fullmatch(self.onnx_sha256):
            raise ValueError(f"onnx_sha256 must be 64 lowercase hex digits, got {self.onnx_sha256!r}")
        check_batch(self.batch)
        for name in ("tensorrt_version", "gpu_name", "input_name", "output_name", "created"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        if not isinstance(self.metadata, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in self.metadata.items()
        ):
            raise ValueError("metadata must map strings to strings")

    @property
    def max_batch(self) -> int:
        """Largest batch the engine accepts."""
        return self.batch[2]

    def model_metadata(self) -> ModelMetadata:
        """The embedder's metadata (preprocessing, embedding size, threshold) as a :class:`ModelMetadata`.

        Raises:
            ValueError: When the recorded metadata is not valid edge_facenet metadata.
        """
        return ModelMetadata.from_props(self.metadata, source="engine sidecar")


def check_batch(batch: tuple[int, int, int] | list[int]) -> tuple[int, int, int]:
    """Validate an optimisation-profile batch range.

    Returns:
        The range as a (min, opt, max) tuple of ints.

    Raises:
        ValueError: Unless it is three integers with 1 <= min <= opt <= max.
    """
    values = tuple(batch)
    if len(values) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise ValueError(f"batch must be three integers (min, opt, max), got {batch!r}")
    if not 1 <= values[0] <= values[1] <= values[2]:
        raise ValueError(f"batch must satisfy 1 <= min <= opt <= max, got {values[0]},{values[1]},{values[2]}")
    return values[0], values[1], values[2]


def sidecar_path(engine_path: str | PathLike[str]) -> Path:
    """Path of the sidecar of an engine: the engine's path with ``.json`` appended (``m.engine.json``)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + SIDECAR_SUFFIX)


def write_engine_info(engine_path: str | PathLike[str], info: EngineInfo) -> Path:
    """Write the sidecar of an engine atomically.

    Returns:
        The sidecar's path.
    """
    path = sidecar_path(engine_path)
    record = {"sidecar_version": SIDECAR_VERSION, **asdict(info)}
    record["batch"] = list(info.batch)
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_engine_info(engine_path: str | PathLike[str]) -> EngineInfo:
    """Read the sidecar of an engine.

    Raises:
        FileNotFoundError: When the sidecar is missing.
        ValueError: When it is not a valid sidecar; the message is one line.
    """
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: engine {engine_path} has no sidecar describing it; {REBUILD_HINT}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not a valid engine sidecar: {error}") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} is not a valid engine sidecar: expected a JSON object")
    version = record.pop("sidecar_version", None)
    if version != SIDECAR_VERSION:
        raise ValueError(f"{path} has sidecar_version {version!r}; this edge_facenet reads {SIDECAR_VERSION}")
    try:
        batch = record.pop("batch")
        return EngineInfo(batch=tuple(batch), **record)
    except (KeyError, TypeError, ValueError) as error:
        reason = f"missing {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
        raise ValueError(f"{path} is not a valid engine sidecar: {reason}") from None


def check_compatible(
    info: EngineInfo,
    tensorrt_version: str,
    compute_capability: str,
    *,
    engine_path: str | PathLike[str] | None = None,
) -> None:
    """Refuse an engine that this TensorRT and GPU cannot run.

    Args:
        info: The engine's sidecar.
        tensorrt_version: ``tensorrt.__version__`` here.
        compute_capability: This GPU's compute capability, ``"major.minor"``.
        engine_path: The engine's path, named in the message.

    Raises:
        ValueError: When the TensorRT release (major.minor.patch) or the compute capability differs.
    """
    same_release = _release(info.tensorrt_version) == _release(tensorrt_version)
    if same_release and info.compute_capability == compute_capability:
        return
    name = f"engine {engine_path}" if engine_path is not None else "the engine"
    raise ValueError(
        f"{name} was built with TensorRT {info.tensorrt_version} for compute capability {info.compute_capability}; "
        f"this device has TensorRT {tensorrt_version} and compute capability {compute_capability}: {REBUILD_HINT}"
    )


def _release(version: str) -> tuple[int, int, int] | str:
    match = _RELEASE.match(version.strip())
    if match is None:
        return version.strip()
    return int(match[1]), int(match[2]), int(match[3])
