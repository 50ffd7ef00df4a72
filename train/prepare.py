"""Detect and align every photo of an identity-labelled folder into a training crops folder.

The crops are made exactly as the LFW evaluation makes its crops (the face nearest the image centre, aligned to the
embedder's template; the fixed centre crop where no face is found). Running it again resumes an interrupted run and
adds images that are new since.

Example:
    python train/prepare.py --images ../shared/data/lfw/images --out runs/crops_lfw
    python train/prepare.py --images ../shared/data/celeba299/images --out runs/crops_celeba --model nn4_small2.onnx
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

MAX_FAILURES_LISTED = 20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Make aligned training crops from images/<identity>/<image> folders.")
    parser.add_argument("--images", type=Path, required=True, help="folder of identity folders of photos")
    parser.add_argument("--out", type=Path, required=True, help="crops folder to write or resume")
    parser.add_argument("--detector", type=Path, help="YuNet ONNX (default: $EDGE_FACENET_DETECTOR, cache, download)")
    parser.add_argument("--model", type=Path, help="take the template and crop size from this embedder's metadata")
    parser.add_argument("--template", help="alignment template (default: the package's default template)")
    parser.add_argument("--size", type=int, help="side of the square crop in pixels (default 96)")
    parser.add_argument("--json", action="store_true", help="print one JSON object and no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    start = time.perf_counter()
    try:
        from edge_facenet import FaceAligner, FaceDetector, read_metadata
        from edge_facenet.templates import DEFAULT_TEMPLATE
        from edge_facenet.training.data import prepare_crops

        if args.model is not None and (args.template is not None or args.size is not None):
            raise ValueError("give either --model or --template/--size, not both: the model's metadata fixes both")
        if not args.images.is_dir():
            raise FileNotFoundError(f"--images folder not found: {args.images}")
        if args.model is not None:
            aligner = FaceAligner.from_metadata(read_metadata(args.model))
        else:
            size = args.size or 96
            aligner = FaceAligner(args.template or DEFAULT_TEMPLATE, (size, size))
        detector = FaceDetector(args.detector)
        report = prepare_crops(args.images, args.out, detector, aligner, progress=not args.json)
    except (ImportError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    seconds = time.perf_counter() - start
    if args.json:
        result = dataclasses.asdict(report)
        result["failed"] = [list(failure) for failure in report.failed]
        print(
            json.dumps(
                {**result, "template": aligner.template.name, "size": list(aligner.size), "seconds": round(seconds, 1)}
            )
        )
        return 0
    height, width = aligner.size
    print(f"{args.out}: {report.written + report.skipped_existing} crops of {height}x{width} ({aligner.template.name})")
    print(f"  written now      {report.written} ({report.written / seconds:.1f} images/s)")
    print(f"  kept from before {report.skipped_existing}")
    print(f"  detected         {report.detected}")
    print(f"  centre crops     {report.centre_crops} (no face found)")
    print(f"  unreadable       {len(report.failed)}")
    for source, reason in report.failed[:MAX_FAILURES_LISTED]:
        print(f"    {source}: {reason}")
    if len(report.failed) > MAX_FAILURES_LISTED:
        print(f"    ... and {len(report.failed) - MAX_FAILURES_LISTED} more (see {args.out / 'meta.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
