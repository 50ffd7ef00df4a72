"""Enrol a folder of people and name the faces in some photos.

Example:
    python samples/identify_photos.py --people people/ group.jpg street.jpg   # the shipped model; --model for another

``people/`` holds one folder per person (``people/Ada/1.jpg``, ...). The gallery is kept in
``people/gallery.sqlite3`` and updated incrementally on the next run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_facenet import Match, Recognizer, read_image
from edge_facenet.gallery import GALLERY_FILENAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Enrol a folder of people, then identify the faces in photos.")
    parser.add_argument("--model", type=Path, help="embedder ONNX (default: $EDGE_FACENET_MODEL or the package's)")
    parser.add_argument("--detector", type=Path, help="YuNet ONNX (default: $EDGE_FACENET_DETECTOR, cache, download)")
    parser.add_argument("--people", type=Path, required=True, help="folder of <name>/<image> files")
    parser.add_argument("--threshold", type=float, help="cosine match threshold (default: the model's)")
    parser.add_argument("photos", type=Path, nargs="+", help="photos to identify")
    args = parser.parse_args(argv)
    if not args.people.is_dir():  # checked before the gallery file would create the folder
        print(f"error: people folder not found: {args.people}", file=sys.stderr)
        return 1

    try:
        # 1. Enrol (or update) the gallery from the folder; failures are reported, never fatal.
        gallery_path = args.people / GALLERY_FILENAME
        recognizer = Recognizer(args.model, args.detector, gallery=gallery_path, threshold=args.threshold)
        gallery = recognizer.gallery
        report = gallery.enroll_folder(args.people, recognizer)
    except (FileNotFoundError, NotADirectoryError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"gallery: {len(gallery)} people, {gallery.count()} images "
        f"({len(report.added)} added, {len(report.unchanged)} unchanged, {len(report.failed)} not enrolled)"
    )
    for path, reason in report.failed:
        print(f"  not enrolled: {path.name}: {reason}")
    if recognizer.embedder.metadata.is_random:
        print("note: this model has RANDOM weights: it can only recognise the very photos it enrolled")

    # 2. Identify every face of every photo. Matching runs with no threshold so that an unknown face can show who
    #    it resembles most; the recogniser's threshold (the model's, or --threshold) then decides.
    try:
        limit = recognizer.match_threshold()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"threshold: {limit:.3f}")
    for path in args.photos:
        try:
            frame = read_image(path)
        except (OSError, ValueError):
            print(f"{path}: cannot read an image")
            continue
        try:
            matches = recognizer.identify(frame, threshold=-1.0)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        names = ", ".join(describe(m, limit) for m in matches) or "no face"
        print(f"{path.name}: {names}")
    gallery.close()
    return 0


def describe(match: Match, threshold: float) -> str:
    if match.name is not None and match.similarity >= threshold:
        return f"{match.name} ({match.similarity:.3f})"
    nearest = f", nearest {match.name}" if match.name else ""
    return f"unknown ({match.similarity:.3f}{nearest})"


if __name__ == "__main__":
    sys.exit(main())
