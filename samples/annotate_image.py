"""Name the faces of one photo against a folder of people, and save the photo with a labelled box on each face.

Example:
    python samples/annotate_image.py --people people/ photo.jpg --output annotated.jpg

``people/`` holds one folder per person (``people/Ada/1.jpg``, ...); the gallery is kept in
``people/gallery.sqlite3`` and updated incrementally. Named faces get a green box, unknown ones a red box, each
labelled with the name (or "unknown") and the cosine similarity to the closest person.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from edge_facenet import Match, Recognizer, read_image
from edge_facenet.gallery import GALLERY_FILENAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Identify the faces of a photo and save it annotated.")
    parser.add_argument("--model", type=Path, help="embedder ONNX (default: $EDGE_FACENET_MODEL or the package's)")
    parser.add_argument("--detector", type=Path, help="YuNet ONNX (default: $EDGE_FACENET_DETECTOR, cache, download)")
    parser.add_argument("--people", type=Path, required=True, help="folder of <name>/<image> files")
    parser.add_argument("--threshold", type=float, help="cosine match threshold (default: the model's)")
    parser.add_argument("--output", type=Path, required=True, help="annotated image to write (.jpg, .png, ...)")
    parser.add_argument("photo", type=Path, help="the photo to identify")
    args = parser.parse_args(argv)

    # 1. Check the input before loading anything. read_image refuses missing, empty and incomplete files (where
    #    cv2.imread would return the decodable top of a truncated JPEG).
    try:
        photo = read_image(args.photo)
    except (OSError, ValueError):
        return fail(f"cannot read an image from {args.photo}")
    if not args.people.is_dir():
        return fail(f"people folder not found: {args.people}")
    if not cv2.haveImageWriter(str(args.output)):
        return fail(f"OpenCV cannot write {args.output.name!r}: give it an image extension such as .jpg or .png")

    # 2. Load the models and enrol (or update) the gallery from the people folder.
    try:
        gallery_path = args.people / GALLERY_FILENAME
        recognizer = Recognizer(args.model, args.detector, gallery=gallery_path, threshold=args.threshold)
        recognizer.gallery.enroll_folder(args.people, recognizer)
        recognizer.match_threshold()  # fails early when neither the model nor --threshold gives one
    except (OSError, ValueError) as error:
        return fail(str(error))

    # 3. Identify every face, print it and draw it.
    matches = recognizer.identify(photo)
    for index, match in enumerate(matches):
        x1, y1, x2, y2 = (round(float(v)) for v in match.bbox)
        print(f"face {index}: {match.name or 'unknown'} {match.similarity:.2f} at ({x1}, {y1}, {x2}, {y2})")
        draw(photo, match)

    # 4. Save; imwrite returns False (it does not raise) when it cannot write, e.g. into a missing folder.
    if not cv2.imwrite(str(args.output), photo):
        return fail(f"cannot write an image to {args.output}")
    print(f"{len(matches)} faces, {sum(m.name is not None for m in matches)} named -> {args.output}")
    return 0


def draw(image: np.ndarray, match: Match) -> None:
    """Draw a face's box and its "name 0.87" label onto the image, in place (BGR colours)."""
    x1, y1, x2, y2 = (round(float(v)) for v in match.bbox)
    colour = (0, 200, 0) if match.name else (0, 0, 230)
    label = f"{match.name or 'unknown'} {match.similarity:.2f}"
    scale = max(0.4, min(image.shape[:2]) / 800)
    thickness = max(1, round(2 * scale))
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
    (width, height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    top = max(0, y1 - height - baseline - 4)  # above the box, or inside it when the face touches the top
    cv2.rectangle(image, (x1, top), (x1 + width + 4, top + height + baseline + 4), colour, cv2.FILLED)
    cv2.putText(image, label, (x1 + 2, top + height + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness)


def fail(message: str) -> int:
    """Print one error line and return the exit status of bad input."""
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
