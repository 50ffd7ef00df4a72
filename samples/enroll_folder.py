"""Enrol a folder of people into a gallery file, and say what was added, kept and skipped.

Example:
    python samples/enroll_folder.py people/                                   # gallery: people/gallery.sqlite3
    python samples/enroll_folder.py people/ --gallery staff.sqlite3 --model nn4_small2.onnx

``people/`` holds one folder per person (``people/Ada/1.jpg``, ``people/Ada/2.jpg``, ``people/Grace/1.png``, ...).
Enrolment is incremental: a photo already in the gallery is recognised by its file hash and not embedded again, and
the photos of a person whose folder is gone are dropped. A gallery belongs to the model that filled it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from edge_facenet import Gallery, Recognizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Enrol people/<name>/<image> files into a gallery, incrementally.")
    parser.add_argument("--model", type=Path, help="embedder ONNX (default: $EDGE_FACENET_MODEL or the package's)")
    parser.add_argument("--detector", type=Path, help="YuNet ONNX (default: $EDGE_FACENET_DETECTOR, cache, download)")
    parser.add_argument("--gallery", type=Path, help="gallery file (default: PEOPLE/gallery.sqlite3)")
    parser.add_argument("people", type=Path, help="folder of <name>/<image> files")
    args = parser.parse_args(argv)
    if not args.people.is_dir():  # checked here so that a typo fails before the models load
        print(f"error: people folder not found: {args.people}", file=sys.stderr)
        return 1

    try:
        # 1. The recogniser detects, aligns and embeds the largest face of each photo.
        recognizer = Recognizer(args.model, args.detector)

        # 2. Bring the gallery in line with the folder; photos that cannot be enrolled are reported, never fatal.
        logging.getLogger("edge_facenet.gallery").setLevel(logging.ERROR)  # its warnings repeat the report below
        gallery, report = Gallery.from_folder(args.people, recognizer, path=args.gallery)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    # 3. The report: what was embedded, what was already there, what was dropped and what was skipped, and why.
    root = args.people.resolve()
    print(
        f"enrolled {args.people}: {len(report.added)} images added, {len(report.unchanged)} unchanged, "
        f"{len(report.removed)} removed, {len(report.failed)} skipped"
    )
    for path, reason in report.failed:
        print(f"  skipped {path.relative_to(root)}: {reason}")

    # 4. The identities now in the gallery, with how many photos each has.
    with gallery:
        print(f"gallery {gallery.path}: {len(gallery)} people, {gallery.count()} images")
        for name in gallery.names():
            print(f"  {name}: {gallery.count(name)} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
