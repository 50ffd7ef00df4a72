"""Build a native TensorRT engine from an edge_facenet ONNX embedder, on the device that will run it.

Precision, by TensorRT major version:

- TensorRT 10 (JetPack 6: 10.3) builds weakly typed networks: ``fp16`` sets ``BuilderFlag.FP16``; ``int8`` needs an
  explicitly quantized (Q/DQ) ONNX from ``calibration/calibrate.py`` and sets ``BuilderFlag.INT8`` plus ``FP16`` so
  the layers outside Q/DQ pairs may run in half precision.
- TensorRT 11 removed the precision flags: every network is strongly typed and precision comes from the ONNX graph.
  ``int8`` still means a Q/DQ model; ``fp16`` needs an ONNX whose tensors are already FP16 (convert it with ModelOpt
  AutoCast); an FP32 ONNX asked for ``fp16`` is refused rather than silently built in FP32.

Implicit INT8 calibration (an ``IInt8Calibrator`` at build time) is not offered: TensorRT deprecated it in 10.1
and removed it in 11.
"""

# TODO: written against the TensorRT 10/11 API docs, not yet run on a device (the project had no GPU with TensorRT)

from __future__ import annotations

import dataclasses
import importlib
import logging
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path

from edge_facenet._files import atomic_output, sha256_file
from edge_facenet._onnx_proto import _fields, _string_field
from edge_facenet._optional import require
from edge_facenet.metadata import PRECISIONS, read_metadata
from edge_facenet.trt.runtime import gpu_info
from edge_facenet.trt.sidecar import EngineInfo, check_batch, write_engine_info

logger = logging.getLogger(__name__)

DEFAULT_BATCH = (1, 8, 32)
DEFAULT_WORKSPACE_MB = 1024
AUTOCAST_HINT = "python -m modelopt.onnx.autocast --onnx_path MODEL.onnx --output_path MODEL_fp16.onnx"

# Field numbers from onnx.proto: ModelProto.graph, GraphProto.node, NodeProto.op_type.
_MODEL_GRAPH, _GRAPH_NODE, _NODE_OP_TYPE = 7, 1, 4


def tensorrt_unavailable_reason() -> str | None:
    """Why engines cannot be built or run here (TensorRT, CUDA bindings or a GPU missing), or None when they can."""
    try:
        importlib.import_module("tensorrt")
    except ImportError as error:
        if isinstance(error, ModuleNotFoundError) and error.name == "tensorrt":
            return "the tensorrt Python package is not installed"
        return f"tensorrt does not import: {_first_line(error)}"
    try:
        gpu_info()
    except ImportError:
        return "neither cuda-python nor pycuda is installed"
    except Exception as error:  # CUDA bindings raise their own error types when there is no GPU or driver
        return f"no usable CUDA GPU: {_first_line(error)}"
    return None


def count_ops(onnx_bytes: bytes, op_type: str) -> int:
    """Number of nodes of one operator type in the main graph of a serialized ONNX model (no onnx package needed)."""
    count = 0
    for number, _, _, payload, end in _fields(onnx_bytes):
        if number != _MODEL_GRAPH:
            continue
        graph = onnx_bytes[payload:end]
        for field, _, _, node_start, node_end in _fields(graph):
            if field == _GRAPH_NODE and _string_field(graph[node_start:node_end], _NODE_OP_TYPE) == op_type:
                count += 1
    return count


def build_engine(
    onnx_path: str | PathLike[str],
    engine_path: str | PathLike[str],
    precision: str = "fp16",
    batch: tuple[int, int, int] = DEFAULT_BATCH,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    timing_cache: str | PathLike[str] | None = None,
) -> EngineInfo:
    """Build a TensorRT engine for this GPU and write it with its sidecar (``<engine>.json``).

    Args:
        onnx_path: edge_facenet embedder ONNX (from ``export/export_onnx.py``, or ``calibration/calibrate.py`` for
            ``int8``), with a dynamic batch axis.
        engine_path: Engine file to write.
        precision: ``"fp16"``, ``"int8"`` (Q/DQ models only) or ``"fp32"``.
        batch: (min, opt, max) batch sizes of the optimisation profile; TensorRT tunes for ``opt``.
        workspace_mb: Limit of the builder's scratch GPU memory, in MiB.
        timing_cache: File to load tactic timings from (when it exists) and to save them to; speeds up rebuilds.

    Returns:
        The engine's sidecar record.

    Raises:
        FileNotFoundError: When the ONNX file does not exist.
        ValueError: For a bad precision or batch, a model without edge_facenet metadata, a precision the model or
            the TensorRT version cannot give, a failed Q/DQ lint, or an ONNX TensorRT cannot parse.
        ImportError: When TensorRT or the CUDA Python bindings are missing.
        RuntimeError: When TensorRT fails to build the engine.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    batch = check_batch(batch)
    if workspace_mb < 1:
        raise ValueError(f"workspace_mb must be at least 1, got {workspace_mb}")
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_path}")
    metadata = read_metadata(onnx_path)
    quantized = count_ops(onnx_path.read_bytes(), "QuantizeLinear") > 0
    if precision == "int8" and not quantized:
        raise ValueError(
            f"{onnx_path} has no QuantizeLinear nodes: INT8 engines are built from a Q/DQ model; "
            "run calibration/calibrate.py on it first (TensorRT no longer calibrates at build time)"
        )
    if precision != "int8" and quantized:
        raise ValueError(f"{onnx_path} is a Q/DQ (INT8) model: build it with precision 'int8'")

    trt = require("tensorrt", "tensorrt")
    major = int(trt.__version__.split(".")[0])
    if precision == "int8":
        _lint_qdq(onnx_path, "tensorrt11" if major >= 11 else "tensorrt10")
    gpu = gpu_info()
    logger.info("building a %s engine from %s with TensorRT %s on %s", precision, onnx_path, trt.__version__, gpu.name)

    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    # TensorRT 10: networks are always explicit-batch (the EXPLICIT_BATCH flag is deprecated and ignored) and we
    # build weakly typed. TensorRT 11: always strongly typed; the STRONGLY_TYPED flag is kept but ignored.
    flags = 0
    if major >= 11 and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [" ".join(str(parser.get_error(i)).split()) for i in range(parser.num_errors)]
        for error in errors:
            logger.error("TensorRT ONNX parser: %s", error)
        first = errors[0] if errors else "no error recorded"
        raise ValueError(f"TensorRT {trt.__version__} cannot parse {onnx_path} ({len(errors)} errors; first: {first})")
    input_name, output_name = _check_io(network, onnx_path, metadata.input_size, batch)
    if major >= 11:
        _check_strong_typing(trt, network, onnx_path, precision)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if major < 11 and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if major < 11 and precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    height, width = metadata.input_size
    profile = builder.create_optimization_profile()
    low, opt, high = ((size, 3, height, width) for size in batch)
    profile.set_shape(input_name, low, opt, high)
    config.add_optimization_profile(profile)
    if timing_cache is not None:
        _attach_timing_cache(config, Path(timing_cache))

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}; its log above says why")
    with atomic_output(engine_path) as temporary:
        temporary.write_bytes(serialized)
    if timing_cache is not None:
        with atomic_output(timing_cache) as temporary:
            temporary.write_bytes(config.get_timing_cache().serialize())

    info = EngineInfo(
        tensorrt_version=trt.__version__,
        gpu_name=gpu.name,
        compute_capability=gpu.compute_capability,
        precision=precision,
        onnx_sha256=sha256_file(onnx_path),
        batch=batch,
        input_name=input_name,
        output_name=output_name,
        metadata=dataclasses.replace(metadata, precision=precision).to_props(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    write_engine_info(engine_path, info)
    logger.info("wrote %s (%s, batch %d..%d)", engine_path, precision, batch[0], batch[2])
    return info


def _lint_qdq(onnx_path: Path, target: str) -> None:
    try:
        from edge_facenet.quantization.lint import lint_qdq_model
    except ModuleNotFoundError as error:
        if error.name == "onnx":
            raise ImportError(
                "the INT8 Q/DQ lint reads the model with the onnx package, which is not installed; "
                "install it with: pip install onnx"
            ) from None
        if not (error.name or "").startswith("edge_facenet.quantization"):
            raise
        logger.warning(
            "the Q/DQ lint (edge_facenet.quantization.lint) is not in this install; %s not linted", onnx_path
        )
        return
    violations = lint_qdq_model(str(onnx_path), target=target)
    if violations:
        shown = "; ".join(f"[{v.rule}] {v.message}" for v in violations[:3])
        more = f"; and {len(violations) - 3} more" if len(violations) > 3 else ""
        raise ValueError(f"{onnx_path} fails the {target} Q/DQ lint ({len(violations)} violations): {shown}{more}")


def _check_io(network, onnx_path: Path, input_size: tuple[int, int], batch: tuple[int, int, int]) -> tuple[str, str]:
    if network.num_inputs != 1 or network.num_outputs < 1:
        raise ValueError(
            f"{onnx_path} must have one input and an output, has {network.num_inputs} and {network.num_outputs}"
        )
    tensor = network.get_input(0)
    shape = tuple(tensor.shape)
    expected = (3, *input_size)
    if len(shape) != 4 or any(dim not in (-1, want) for dim, want in zip(shape[1:], expected, strict=True)):
        raise ValueError(
            f"{onnx_path} input {tensor.name!r} has shape {shape}; expected (N, {', '.join(map(str, expected))})"
        )
    if shape[0] != -1 and (batch[0], batch[2]) != (shape[0], shape[0]):
        raise ValueError(
            f"{onnx_path} has a fixed batch of {shape[0]}; export it with a dynamic batch (export/export_onnx.py does)"
        )
    return tensor.name, network.get_output(0).name


def _check_strong_typing(trt, network, onnx_path: Path, precision: str) -> None:
    # Strongly typed: the engine computes in the types the graph carries, so the requested precision must be there.
    half = any(
        network.get_layer(i).get_output(j).dtype == trt.float16
        for i in range(network.num_layers)
        for j in range(network.get_layer(i).num_outputs)
    )
    if precision == "fp16" and not half:
        raise ValueError(
            f"TensorRT 11 builds strongly typed networks and {onnx_path} is FP32, so an 'fp16' engine would run in "
            f"FP32: convert the ONNX to FP16 first ({AUTOCAST_HINT}) or build with precision 'fp32'"
        )
    if precision == "fp32" and half:
        raise ValueError(f"{onnx_path} carries FP16 tensors; under TensorRT 11 build it with precision 'fp16'")


def _attach_timing_cache(config, path: Path) -> None:
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if config.set_timing_cache(cache, False):
        logger.info("timing cache %s: %s", path, "loaded" if data else "new")
        return
    # ignore_mismatch=False refuses a cache from another TensorRT version or GPU; start a fresh one instead.
    logger.warning("timing cache %s was made by another TensorRT or GPU; starting a new one", path)
    config.set_timing_cache(config.create_timing_cache(b""), False)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
