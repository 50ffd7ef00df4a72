"""ONNX Runtime sessions with the runtime's defaults: CPU unless asked otherwise, quiet logs, chosen threads."""

from __future__ import annotations

from os import PathLike

import onnxruntime


def available_providers() -> list[str]:
    """The execution providers this ONNX Runtime build offers, e.g. ``["CPUExecutionProvider"]``."""
    return list(onnxruntime.get_available_providers())


def create_session(
    model: str | PathLike[str] | bytes,
    providers: list[str] | None = None,
    threads: int | None = None,
    disabled_optimizers: list[str] | None = None,
) -> onnxruntime.InferenceSession:
    """Open an ONNX Runtime session.

    Args:
        model: Path of an ONNX file, or its bytes.
        providers: Execution providers in order of preference; unavailable ones are an error, and the CPU provider is
            always appended as the fallback. Default: CPU only.
        threads: Intra-op threads; None lets ONNX Runtime use one per physical core.
        disabled_optimizers: Names of ONNX Runtime graph transformers to skip, e.g.
            ``["CommonSubexpressionElimination"]``.

    Raises:
        ValueError: When a requested provider is not available in this ONNX Runtime build, or the model is invalid.
    """
    requested = list(providers or ["CPUExecutionProvider"])
    missing = [p for p in requested if p not in available_providers()]
    if missing:
        raise ValueError(
            f"ONNX Runtime here has no {', '.join(missing)}; available: {', '.join(available_providers())}"
        )
    if "CPUExecutionProvider" not in requested:
        requested.append("CPUExecutionProvider")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # The detector and the embedder run back to back on the same few cores. With spinning on, the idle threads of
    # one session keep polling and take the cores from the other: identify() measured 26 ms with it, 15 ms without
    # (640x480, one face, 2 cores).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else str(model)
    try:
        return onnxruntime.InferenceSession(
            source, options, providers=requested, disabled_optimizers=disabled_optimizers or []
        )
    except Exception as error:  # onnxruntime raises its own exception types for invalid models
        name = "model bytes" if isinstance(model, bytes) else str(model)
        raise ValueError(f"ONNX Runtime cannot load {name}: {str(error).splitlines()[0]}") from None
