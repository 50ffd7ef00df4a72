"""Identify every face in a folder of photos (sub-folders too) and write one CSV row per face.

Example:
    python samples/images_to_csv.py --people people/ photos/ --output faces.csv

``people/`` holds one folder per person (``people/Ada/1.jpg``, ...); the gallery is kept in
``people/gallery.sqlite3``. Columns: image (relative to the photo folder), face (0, 1, ... best detection first),
x1, y1, x2, y2 (pixels), det_score, name (empty for an unknown face), similarity (to the closest person) and error.
An image that cannot be read gets one row with only its path and the error; it does not stop the run.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from edge_facenet import Recognizer, read_image
from edge_facenet.gallery import GALLERY_FILENAME, IMAGE_EXTENSIONS

COLUMNS = ["image", "face", "x1", "y1", "x2", "y2", "det_score", "name", "similarity", "error"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Identify the faces of a folder of photos into a CSV file.")
    parser.add_argument("--model", type=Path, help="embedder ONNX (default: $EDGE_FACENET_MODEL or the package's)")
    parser.add_argument("--detector", type=Path, help="YuNet ONNX (default: $EDGE_FACENET_DETECTOR, cache, download)")
    parser.add_argument("--people", type=Path, required=True, help="folder of <name>/<image> files")
    parser.add_argument("--threshold", type=float, help="cosine match threshold (default: the model's)")
    parser.add_argument("--output", type=Path, required=True, help="CSV file to write")
    parser.add_argument("photos", type=Path, help="folder of photos, searched recursively")
    args = parser.parse_args(argv)
    for folder in (args.photos, args.people):
        if not folder.is_dir():
            print(f"error: folder not found: {folder}", file=sys.stderr)
            return 1

    # 1. Load the models and enrol (or update) the gallery from the people folder.
    try:
        gallery_path = args.people / GALLERY_FILENAME
        recognizer = Recognizer(args.model, args.detector, gallery=gallery_path, threshold=args.threshold)
        recognizer.gallery.enroll_folder(args.people, recognizer)
        recognizer.match_threshold()  # fails early when neither the model nor --threshold gives one
        output = args.output.open("w", newline="", encoding="utf-8")
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    # 2. Every image file under the folder, in a stable order.
    images = sorted(p for p in args.photos.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

    # 3. One row per face; a row with an error for an image that cannot be read, none for an image without faces.
    faces = named = unreadable = faceless = 0
    with output:
        writer = csv.writer(output)
        writer.writerow(COLUMNS)
        for path in images:
            image_name = path.relative_to(args.photos).as_posix()
            try:
                frame = read_image(path)
            except (OSError, ValueError):
                writer.writerow([image_name] + [""] * (len(COLUMNS) - 2) + ["cannot read an image"])
                unreadable += 1
                continue
            matches = recognizer.identify(frame)
            for index, match in enumerate(matches):
                box = [f"{float(v):.1f}" for v in match.bbox]
                scores = [f"{match.det_score:.4f}", match.name or "", f"{match.similarity:.4f}"]
                writer.writerow([image_name, index, *box, *scores, ""])
            faces += len(matches)
            named += sum(match.name is not None for match in matches)
            faceless += not matches

    # 4. A summary; the CSV holds the details.
    print(
        f"{len(images)} images ({unreadable} unreadable, {faceless} without a face), "
        f"{faces} faces, {named} named -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
