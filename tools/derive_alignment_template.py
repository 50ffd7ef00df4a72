"""Derive the five-point alignment template from LFW deep-funneled images.

Deep funneling already aligns every LFW image, so the mean position of the five YuNet landmarks inside a fixed
centre crop is a template under which a landmark-aligned crop and a centre crop of a funneled image look alike.
The crop is the box x 65-185, y 68-188 of the 250x250 images (the region the first training probe used).

Usage:
    python tools/derive_alignment_template.py --lfw-dir ../shared/data/lfw \
        --detector ../shared/models/face_detection_yunet_2023mar.onnx
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import cv2
import numpy as np

CROP_X0, CROP_Y0, CROP_SIZE = 65, 68, 120


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lfw-dir", type=Path, default=Path("../shared/data/lfw"))
    parser.add_argument("--detector", type=Path, default=Path("../shared/models/face_detection_yunet_2023mar.onnx"))
    parser.add_argument("--num-images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    paths = sorted((args.lfw_dir / "images").glob("*/*.jpg"))
    if not paths:
        print(f"error: no images under {args.lfw_dir / 'images'}", file=sys.stderr)
        return 2
    paths = random.Random(args.seed).sample(paths, min(args.num_images, len(paths)))
    detector = cv2.FaceDetectorYN.create(str(args.detector), "", (250, 250), 0.6, 0.3, 5000)

    points = []
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:
            continue
        detector.setInputSize((image.shape[1], image.shape[0]))
        _, faces = detector.detect(image)
        if faces is None:
            continue
        # The funneled face is the one nearest the image centre.
        centres = faces[:, 0:2] + faces[:, 2:4] / 2
        face = faces[np.argmin(np.linalg.norm(centres - 125.0, axis=1))]
        kps = face[4:14].reshape(5, 2)
        points.append((kps - [CROP_X0, CROP_Y0]) / CROP_SIZE)

    points = np.stack(points)
    template = np.median(points, axis=0)
    spread = np.median(np.abs(points - template), axis=0)

    # Make the template mirror-symmetric so that a flipped crop is again an aligned crop: average each point
    # with the mirror image of its partner (right eye <-> left eye, right mouth <-> left mouth, nose <-> itself).
    partner = [1, 0, 2, 4, 3]
    mirrored = template[partner] * [-1.0, 1.0] + [1.0, 0.0]
    symmetric = (template + mirrored) / 2

    print(f"{len(points)} of {len(paths)} images gave landmarks")
    print("order: right eye, left eye, nose tip, right mouth corner, left mouth corner; x, y as fractions of the crop")
    print("median:            ", json.dumps(np.round(template, 4).tolist()))
    print("median abs. dev.:  ", json.dumps(np.round(spread, 4).tolist()))
    print("symmetric template:", json.dumps(np.round(symmetric, 4).tolist()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
