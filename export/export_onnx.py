"""Export an edge_facenet embedder to ONNX with its metadata inside.

Examples:
    python export/export_onnx.py --arch nn4_small2 --output nn4_small2.onnx
    python export/export_onnx.py --checkpoint runs/a/best.pt --output model.onnx --json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export an edge_facenet embedder to ONNX (opset 17, dynamic batch).")
    parser.add_argument("--arch", help="architecture (taken from the checkpoint when one is given)")
    parser.add_argument("--checkpoint", type=Path, help="edge_facenet checkpoint; without one the weights are random")
    parser.add_argument("--embedding-size", type=int, default=128, help="embedding length for a random model")
    parser.add_argument("--output", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--threshold", type=float, help="cosine match threshold to record (overrides the checkpoint's)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--seed", type=int, default=0, help="seed of a random initialisation and the parity inputs")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        import torch

        from edge_facenet.training import build_model, list_models
        from edge_facenet.training.checkpoint import load_checkpoint, model_from_checkpoint
        from edge_facenet.training.export import PARITY_TOLERANCE, export_onnx, metadata_for
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    try:
        if args.checkpoint:
            checkpoint = load_checkpoint(args.checkpoint)
            if args.arch and args.arch != checkpoint.arch:
                raise ValueError(f"--arch {args.arch} does not match the checkpoint's architecture {checkpoint.arch}")
            model = model_from_checkpoint(checkpoint)
            arch = checkpoint.arch
        else:
            if not args.arch:
                raise ValueError(f"give --arch (one of {', '.join(list_models())}) or --checkpoint")
            checkpoint = None
            torch.manual_seed(args.seed)
            model = build_model(args.arch, args.embedding_size)
            arch = args.arch
            print(
                f"WARNING: no --checkpoint given: {arch} is exported with RANDOM weights (seed {args.seed}). "
                "Its embeddings do not recognise anyone; use it only to test plumbing.",
                file=sys.stderr,
            )
        metadata = metadata_for(model, arch, checkpoint, threshold=args.threshold)
        result = export_onnx(model, args.output, metadata, opset=args.opset)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    if args.json:
        print(
            json.dumps(
                {
                    "output": str(result.path),
                    "sha256": result.sha256,
                    "max_abs_diff": result.max_abs_diff,
                    "tolerance": PARITY_TOLERANCE,
                    "parity_batches": list(result.parity_batches),
                    "metadata": result.metadata.to_props(),
                }
            )
        )
    else:
        print(f"wrote {result.path} (sha256 {result.sha256[:16]}...)")
        print(
            f"parity: max |onnxruntime - torch| = {result.max_abs_diff:.3g} on batches of "
            f"{' and '.join(map(str, result.parity_batches))} (limit {PARITY_TOLERANCE:g})"
        )
        for key, value in result.metadata.to_props().items():
            print(f"  {key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
