"""Calibrate an FP32 embedder into an INT8 Q/DQ ONNX model that ONNX Runtime (CPU) and TensorRT both run.

Examples:
    python calibration/calibrate.py --model nn4_small2.onnx --faces runs/crops_lfw --output nn4_small2_int8.onnx \\
        --exclude-folds 6-10 --people ../shared/data/lfw/people.txt
    python calibration/calibrate.py --model M.onnx --faces aligned_crops/ --output M_int8.onnx --method minmax

--faces is a crops folder from train/prepare.py (or a folder of aligned crop images, identity/image.png). Faces of the
people the model is evaluated on must not calibrate it: --exclude-folds drops the people of those LFW folds
(people.txt), --exclude-identities drops names listed in a file. The record beside the output
(<output>.calibration.json) lists every face with its hash and the activation ranges.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="FP32 embedder ONNX")
    parser.add_argument("--faces", type=Path, required=True, help="aligned crops: a train/prepare.py folder")
    parser.add_argument("--output", type=Path, required=True, help="INT8 Q/DQ ONNX to write")
    parser.add_argument(
        "--method",
        default="percentile",
        choices=["minmax", "entropy", "percentile"],
        help="activation ranges: observed min/max, KL divergence, or the 99.999th percentile (default)",
    )
    parser.add_argument("--num-faces", type=int, default=512, help="calibration faces (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the face draw (default 0)")
    parser.add_argument("--exclude-folds", help="LFW folds whose people are left out, e.g. 6-10 (needs --people)")
    parser.add_argument("--people", type=Path, help="LFW people.txt, for --exclude-folds")
    parser.add_argument("--exclude-identities", type=Path, help="file of identity names to leave out, one a line")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    start = time.perf_counter()
    try:
        from edge_facenet.evaluate import parse_folds
        from edge_facenet.lfw import read_people_folds
        from edge_facenet.metadata import read_metadata
        from edge_facenet.quantization.calibrate import calibrate, load_calibration_faces

        excluded: set[str] = set()
        if args.exclude_folds:
            if args.people is None:
                raise ValueError("--exclude-folds needs --people (LFW people.txt)")
            people = read_people_folds(args.people)
            folds = parse_folds(args.exclude_folds, set(people.values()), "--exclude-folds")
            excluded |= {name for name, fold in people.items() if fold in folds}
        if args.exclude_identities:
            if not args.exclude_identities.is_file():
                raise FileNotFoundError(f"--exclude-identities file not found: {args.exclude_identities}")
            excluded |= {line.strip() for line in args.exclude_identities.read_text().splitlines() if line.strip()}
        metadata = read_metadata(args.model)
        faces = load_calibration_faces(args.faces, metadata.input_size, args.num_faces, excluded, args.seed)
        result = calibrate(args.model, args.output, faces, args.method)
    except ImportError as error:
        print(f"error: {error}; install it with: pip install 'edge-facenet[calibrate]'", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    summary = {
        "output": str(result.path),
        "sha256": result.sha256,
        "record": str(result.record_path),
        "method": result.method.value,
        "faces": result.faces,
        "identities": len({face.identity for face in faces.faces}),
        "excluded_identities": len(excluded),
        "quantized_activations": len(result.ranges),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"wrote {result.path} (sha256 {result.sha256[:16]}..., {result.path.stat().st_size / 1e6:.1f} MB)")
    print(
        f"  {summary['method']} ranges of {summary['quantized_activations']} activations from {result.faces} faces "
        f"of {summary['identities']} identities ({len(excluded)} identities excluded) in {summary['seconds']} s"
    )
    print(f"  record (faces with hashes, ranges): {result.record_path}")
    print(f"  next: python calibration/lint.py {result.path}; python calibration/compare.py --int8 {result.path} ...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
