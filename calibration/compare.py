"""The INT8 accuracy gate: FP32 vs INT8 embeddings of the same aligned LFW faces, LFW accuracy of both, and speed.

Example:
    python calibration/compare.py --fp32 nn4_small2.onnx --int8 nn4_small2_int8.onnx \\
        --lfw-dir ../shared/data/lfw --folds 6-10

Gate: mean cosine >= 0.995 over at least 1000 faces, and an LFW accuracy drop of at most 0.5 points (aim: 0.3).
Measure on folds whose people neither trained nor calibrated the model: for the package's models, folds 6-10. When
the INT8 model's calibration record lies beside it, calibration faces of the measured people are counted and refused.
Speed: ONNX Runtime ms per face (Embedder.embed, preprocessing included) at batch 1 and 8, the models taking turns
call by call in this one run; the ratio is the figure to quote.

Exit status: 0 the gate passes, 1 it fails, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, required=True, help="FP32 embedder ONNX")
    parser.add_argument("--int8", type=Path, required=True, help="its INT8 Q/DQ model (calibration/calibrate.py)")
    parser.add_argument("--lfw-dir", type=Path, required=True, help="LFW folder with images/ and pairs.txt")
    parser.add_argument("--folds", default="1-10", help="LFW folds to measure, e.g. 6-10 (default 1-10)")
    parser.add_argument("--detector", type=Path, help="YuNet ONNX (default: $EDGE_FACENET_DETECTOR, cache, download)")
    parser.add_argument("--speed-repeats", type=int, default=100, help="timed calls per model and batch; 0 skips")
    parser.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: one per core)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    start = time.perf_counter()
    try:
        from edge_facenet.detector import FaceDetector
        from edge_facenet.embedder import Embedder
        from edge_facenet.evaluate import parse_folds
        from edge_facenet.lfw import read_pairs
        from edge_facenet.quantization.gate import AIM_ACCURACY_DROP, run_gate, speed_side_by_side

        pairs = read_pairs(args.lfw_dir / "pairs.txt")
        folds = parse_folds(args.folds, {p.fold for p in pairs})
        overlap = _calibration_overlap(args.int8, {p.left.split("/")[0] for p in pairs if p.fold in folds})
        if overlap:
            raise ValueError(
                f"{len(overlap)} people of folds {args.folds} calibrated {args.int8} (e.g. {sorted(overlap)[0]}): "
                "measure on other folds or calibrate without them"
            )
        fp32 = Embedder(args.fp32, backend="onnxruntime", precision="fp32", threads=args.threads)
        int8 = Embedder(args.int8, backend="onnxruntime", precision="int8", threads=args.threads)
        if int8.metadata.checkpoint_sha256 != fp32.metadata.checkpoint_sha256:
            raise ValueError(f"{args.int8} was not calibrated from {args.fp32}'s weights (checkpoints differ)")
        gate = run_gate(fp32, int8, args.lfw_dir, FaceDetector(args.detector), folds, progress=not args.json)
        speed = {}
        if args.speed_repeats > 0:
            crops = _some_crops(args.lfw_dir, fp32, args.detector)
            speed = speed_side_by_side({"fp32": fp32, "int8": int8}, crops, (1, 8), args.speed_repeats)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    drop = gate.accuracy_drop
    result = {
        "passed": gate.passed,
        "failures": gate.failures(),
        "folds": gate.folds,
        "faces": gate.agreement.faces,
        "cosine_mean": gate.agreement.mean,
        "cosine_p1": gate.agreement.p1,
        "cosine_min": gate.agreement.min,
        "fp32": gate.fp32.to_dict(),
        "int8": gate.int8.to_dict(),
        "accuracy_drop": drop,
        "threshold": gate.threshold,
        "at_threshold": {name: {"tar": tar, "far": far} for name, (tar, far) in gate.at_threshold.items()},
        "speed": {name: {str(b): v for b, v in by_batch.items()} for name, by_batch in speed.items()},
        "machine": f"{platform.processor() or platform.machine()}, {_cores()} cores",
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.json:
        print(json.dumps(result))
        return 0 if gate.passed else 1

    print(f"{args.int8.name} against {args.fp32.name}, LFW folds {args.folds} ({gate.fp32.pairs} pairs):")
    print(
        f"  cosine FP32 vs INT8  mean {gate.agreement.mean:.5f}  p1 {gate.agreement.p1:.5f}  "
        f"min {gate.agreement.min:.5f}  ({gate.agreement.faces} faces)"
    )
    for name, report in (("FP32", gate.fp32), ("INT8", gate.int8)):
        print(
            f"  {name} accuracy {report.accuracy:.4f} ± {report.accuracy_std:.4f}  VAL@1e-3 {report.val:.4f}  "
            f"AUC {report.auc:.4f}"
        )
    for name, (tar, far) in gate.at_threshold.items():
        print(f"  {name.upper()} at the model's threshold {gate.threshold:.3f}: TAR {tar:.4f}, FAR {far:.4f}")
    aim = "within" if drop <= AIM_ACCURACY_DROP else "outside"
    print(f"  accuracy drop {100 * drop:+.2f} points ({aim} the 0.3-point aim)")
    for batch in (1, 8):
        if speed:
            fp32_ms, int8_ms = speed["fp32"][batch]["ms_per_face"], speed["int8"][batch]["ms_per_face"]
            print(
                f"  batch {batch}: FP32 {fp32_ms:.2f} ms/face, INT8 {int8_ms:.2f} ms/face, "
                f"INT8 {fp32_ms / int8_ms:.2f}x faster"
            )
    print(f"  gate: {'PASS' if gate.passed else 'FAIL: ' + '; '.join(gate.failures())}")
    return 0 if gate.passed else 1


def _calibration_overlap(int8_path: Path, people: set[str]) -> set[str]:
    """People of the measured pairs among the INT8 model's calibration faces (empty without a record)."""
    from edge_facenet.quantization.calibrate import RECORD_SUFFIX

    record = int8_path.with_name(int8_path.name + RECORD_SUFFIX)
    if not record.is_file():
        return set()
    try:
        faces = json.loads(record.read_text())["faces"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{record} is not a calibration record") from None
    return people & {face["identity"] for face in faces}


def _some_crops(lfw_dir: Path, embedder, detector_path: Path | None):
    """Eight aligned LFW faces, to time the models on real input."""
    import cv2
    import numpy as np

    from edge_facenet.aligner import FaceAligner
    from edge_facenet.detector import FaceDetector, central_face
    from edge_facenet.lfw import IMAGES_FOLDER

    detector, aligner = FaceDetector(detector_path), FaceAligner.from_metadata(embedder.metadata)
    crops = []
    for path in sorted((lfw_dir / IMAGES_FOLDER).glob("*/*_0001.jpg"))[:8]:
        image = cv2.imread(str(path))
        face = central_face(detector.detect(image), image.shape[1], image.shape[0])
        crops.append(aligner.align(image, face.landmarks) if face else aligner.centre_crop(image))
    return np.stack(crops)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    sys.exit(main())
