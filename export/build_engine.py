"""Build a native TensorRT engine from an edge_facenet ONNX embedder, on the device that will run it.

Examples:
    python export/build_engine.py --onnx nn4_small2.onnx --output nn4_small2.engine
    python export/build_engine.py --onnx nn4_small2_int8.onnx --output nn4_small2_int8.engine --int8
    python export/build_engine.py --onnx m.onnx --output m.engine --fp32 --batch 1,4,16 --timing-cache trt.cache --json

An engine runs only under the TensorRT release and on the GPU architecture that built it, so build it on the
target device. Precision defaults to fp16, what a Jetson wants; --int8 needs a Q/DQ model from
calibration/calibrate.py; --fp32 keeps full precision. The sidecar <output>.json records how the engine was built,
and the runtime refuses an engine whose sidecar names another TensorRT or GPU.

JetPack 6 (6.1 and 6.2 ship TensorRT 10.3 and CUDA 12.6): TensorRT's Python bindings come with JetPack for the
system Python, so make a virtual environment with --system-site-packages. Add CUDA bindings with
pip install 'cuda-python>=12.6,<13' (cuda-python 13 needs a CUDA 13 driver), or use pycuda.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

UNAVAILABLE = (
    "error: TensorRT is not available here ({reason}); engines are built on the target device: "
    "see README 'TensorRT engines on Jetson'"
)


def parse_batch(text: str) -> tuple[int, int, int]:
    """Parse ``MIN,OPT,MAX`` (e.g. ``1,8,32``) into a validated batch range; ValueError with one line if bad."""
    from edge_facenet.trt.sidecar import check_batch

    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 3 or not all(part.isdigit() for part in parts):
        raise ValueError(f"--batch must be MIN,OPT,MAX with three whole numbers, e.g. 1,8,32; got {text!r}")
    return check_batch(tuple(int(part) for part in parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True, help="edge_facenet embedder ONNX (dynamic batch)")
    parser.add_argument("--output", type=Path, required=True, help="engine file to write (sidecar: <output>.json)")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="FP16 (default)")
    precision.add_argument("--int8", dest="precision", action="store_const", const="int8", help="INT8 Q/DQ model")
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32", help="full precision")
    parser.add_argument("--batch", default="1,8,32", help="optimisation profile MIN,OPT,MAX (default 1,8,32)")
    parser.add_argument("--workspace", type=int, default=1024, help="builder workspace limit in MiB (default 1024)")
    parser.add_argument("--timing-cache", type=Path, help="TensorRT timing cache to load (if present) and save")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    precision = args.precision or "fp16"

    # Inputs are checked before TensorRT is touched, so mistakes show on any machine.
    try:
        batch = parse_batch(args.batch)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.workspace < 1:
        print(f"error: --workspace must be at least 1 MiB, got {args.workspace}", file=sys.stderr)
        return 2
    if not args.onnx.is_file():
        print(f"error: ONNX model not found: {args.onnx}", file=sys.stderr)
        return 2

    from edge_facenet.trt.build import build_engine, tensorrt_unavailable_reason
    from edge_facenet.trt.sidecar import sidecar_path

    reason = tensorrt_unavailable_reason()
    if reason is not None:
        print(UNAVAILABLE.format(reason=reason), file=sys.stderr)
        return 2

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        info = build_engine(args.onnx, args.output, precision, batch, args.workspace, args.timing_cache)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1

    sidecar = sidecar_path(args.output)
    if args.json:
        print(
            json.dumps(
                {
                    "engine": str(args.output),
                    "sidecar": str(sidecar),
                    "precision": info.precision,
                    "tensorrt_version": info.tensorrt_version,
                    "gpu": info.gpu_name,
                    "compute_capability": info.compute_capability,
                    "batch": list(info.batch),
                    "onnx_sha256": info.onnx_sha256,
                }
            )
        )
    else:
        print(f"wrote {args.output}")
        print(f"  precision: {info.precision}, batch {info.batch[0]}..{info.batch[2]} (tuned for {info.batch[1]})")
        print(f"  TensorRT {info.tensorrt_version} on {info.gpu_name}, compute capability {info.compute_capability}")
        print(f"  sidecar: {sidecar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
